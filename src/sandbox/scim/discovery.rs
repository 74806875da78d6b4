//! The SCIM discovery documents of the emulated Atlassian directory:
//! ServiceProviderConfig, ResourceTypes and Schemas (what Atlassian supports:
//! PATCH and filter yes; bulk, sort, etag, change-password no). Pure data.

use serde_json::{json, Value};

use super::{GROUP, MAX_PAGE, USER};

pub(super) fn service_provider_config() -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://developer.atlassian.com/cloud/admin/user-provisioning/rest/intro/",
        "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE}, "changePassword": {"supported": false},
        "sort": {"supported": false}, "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
            "description": "Authentication scheme using the directory API key", "primary": true}],
        "meta": {"resourceType": "ServiceProviderConfig", "location": "/ServiceProviderConfig"}})
}

pub(super) fn resource_type(name: &str) -> Value {
    let (endpoint, schema) = if name == "User" {
        ("/Users", USER)
    } else {
        ("/Groups", GROUP)
    };
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": name, "name": name,
           "endpoint": endpoint, "schema": schema,
           "meta": {"resourceType": "ResourceType", "location": format!("/ResourceTypes/{name}")}})
}

pub(super) fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    sub: Vec<Value>,
) -> Value {
    let mut a = json!({"name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": false, "mutability": mutability, "returned": "default",
        "uniqueness": if name == "userName" { "server" } else { "none" }});
    if !sub.is_empty() {
        a["subAttributes"] = json!(sub);
    }
    a
}

pub(super) fn schema_user() -> Value {
    let s = |n: &str| attr(n, "string", false, false, "readWrite", vec![]);
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": USER, "name": "User",
        "description": "User Account",
        "attributes": [
            attr("userName", "string", false, true, "readWrite", vec![]),
            attr("name", "complex", false, false, "readWrite", vec![s("formatted"), s("familyName"), s("givenName")]),
            s("displayName"), s("nickName"), s("title"), s("preferredLanguage"), s("timezone"),
            attr("active", "boolean", false, false, "readWrite", vec![]),
            attr("emails", "complex", true, false, "readWrite", vec![s("value"), s("type"),
                attr("primary", "boolean", false, false, "readWrite", vec![])]),
            attr("groups", "complex", true, false, "readOnly", vec![s("value"), s("display")]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{USER}")}})
}

pub(super) fn schema_group() -> Value {
    let s = |n: &str| attr(n, "string", false, false, "immutable", vec![]);
    // Members are users only: Atlassian directories have no nested groups.
    let mut member_ref = attr("$ref", "reference", false, false, "immutable", vec![]);
    member_ref["referenceTypes"] = json!(["User"]);
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": GROUP, "name": "Group",
        "description": "Group",
        "attributes": [
            attr("displayName", "string", false, true, "readWrite", vec![]),
            attr("members", "complex", true, false, "readWrite", vec![s("value"), member_ref, s("display"), s("type")]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/Schemas/{GROUP}")}})
}
