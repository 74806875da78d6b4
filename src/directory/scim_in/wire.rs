//! The SCIM 2.0 wire vocabulary of the inbound server (RFC 7643/7644): schema URNs,
//! the `Error` response (RFC 7644 §3.12), `ListResponse`, `meta`, ETags and the
//! discovery documents. Pure data shaping; no HTTP and no storage here.

use serde_json::{json, Map, Value};

/// Core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension (Okta and Entra ID send department, manager, ...).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// `ListResponse` message.
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// `Error` message.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// `PatchOp` message.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `SearchRequest` message.
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Service provider configuration schema.
pub const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// Resource type schema.
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// Schema schema.
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The media type of every SCIM response.
pub const CONTENT_TYPE: &str = "application/scim+json";

/// Most resources one list page returns (`filter.maxResults`); also the default `count`.
pub const MAX_RESULTS: usize = 1000;

/// Largest request body accepted (bytes); larger gets 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// The two resource kinds the server stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl Kind {
    /// The resource type name (`meta.resourceType`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// The endpoint segment (`Users`, `Groups`).
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    /// The core schema URN.
    pub fn schema(self) -> &'static str {
        match self {
            Kind::User => USER,
            Kind::Group => GROUP,
        }
    }

    /// Extension schemas a resource of this kind may carry.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Kind::User => &[ENTERPRISE],
            Kind::Group => &[],
        }
    }
}

/// `scimType` values of RFC 7644 §3.12 that usher answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
}

impl ScimType {
    fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
        }
    }
}

/// A SCIM error answer: HTTP status, optional `scimType`, and a detail for the client
/// (never a secret, never an internal path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM {status}: {detail}")]
pub struct ScimError {
    /// HTTP status code.
    pub status: u16,
    /// RFC 7644 §3.12 error type, when one applies.
    pub scim_type: Option<ScimType>,
    /// What is wrong and how to fix it.
    pub detail: String,
}

impl ScimError {
    /// An error with a status and detail.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// A 400 with a `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// 404 for a resource or endpoint that does not exist.
    pub fn not_found(what: &str) -> Self {
        ScimError::new(404, format!("{what} not found"))
    }

    /// The `Error` message body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(o)) = (self.scim_type, v.as_object_mut()) {
            o.insert("scimType".into(), Value::String(t.as_str().into()));
        }
        v
    }
}

/// A weak ETag for a resource version (`W/"7"`).
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header value names `version` (or is `*`).
pub fn etag_matches(header: &str, version: u64) -> bool {
    let want = etag(version);
    let strong = format!("\"{version}\"");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == want || t == strong)
}

/// A `ListResponse` of already rendered resources.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// `/ServiceProviderConfig` for a server whose base URL is `base`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC],
        "documentationUri": "https://github.com/usher-proxy/usher#inbound-scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The [[idp]] scim_token, sent as Authorization: Bearer <token>",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        }
    })
}

/// One `/ResourceTypes/{name}` document.
pub fn resource_type(kind: Kind, base: &str) -> Value {
    let extensions: Vec<Value> = kind
        .extensions()
        .iter()
        .map(|s| json!({"schema": s, "required": false}))
        .collect();
    let mut v = json!({
        "schemas": [RESOURCE_TYPE],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": match kind { Kind::User => "User Account", Kind::Group => "Group" },
        "schema": kind.schema(),
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", kind.name()),
        }
    });
    if !extensions.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.insert("schemaExtensions".into(), Value::Array(extensions));
        }
    }
    v
}

/// The `/Schemas` documents (RFC 7643 §8.7), each with its `meta`.
pub fn schemas(base: &str) -> Vec<Value> {
    super::schema::catalogue()
        .documents()
        .iter()
        .map(|doc| {
            let mut doc = doc.clone();
            let id = doc
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(o) = doc.as_object_mut() {
                let mut meta = Map::new();
                meta.insert("resourceType".into(), "Schema".into());
                meta.insert("location".into(), format!("{base}/Schemas/{id}").into());
                o.insert("meta".into(), Value::Object(meta));
            }
            doc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_string_status_and_scim_type() {
        let e = ScimError::bad(ScimType::InvalidFilter, "bad filter");
        let b = e.body();
        assert_eq!(b["status"], "400");
        assert_eq!(b["scimType"], "invalidFilter");
        assert_eq!(b["schemas"][0], ERROR);
        assert!(ScimError::not_found("User 1")
            .body()
            .get("scimType")
            .is_none());
    }

    #[test]
    fn etags_are_weak_and_matched_in_lists_and_wildcards() {
        assert_eq!(etag(3), "W/\"3\"");
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("W/\"1\", W/\"3\"", 3));
        assert!(etag_matches("*", 9));
        assert!(etag_matches("\"3\"", 3));
        assert!(!etag_matches("W/\"2\"", 3));
    }

    #[test]
    fn list_response_counts_the_page() {
        let l = list_response(5, 2, vec![json!({"id": "a"})]);
        assert_eq!(l["totalResults"], 5);
        assert_eq!(l["itemsPerPage"], 1);
        assert_eq!(l["startIndex"], 2);
    }

    #[test]
    fn discovery_documents_name_their_locations() {
        let rt = resource_type(Kind::User, "http://x/scim");
        assert_eq!(rt["schemaExtensions"][0]["schema"], ENTERPRISE);
        assert_eq!(rt["meta"]["location"], "http://x/scim/ResourceTypes/User");
        assert!(resource_type(Kind::Group, "b")
            .get("schemaExtensions")
            .is_none());
        let names: Vec<String> = schemas("b")
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        for n in [
            "User",
            "Group",
            "Schema",
            "ResourceType",
            "ServiceProviderConfig",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        assert_eq!(service_provider_config("b")["etag"]["supported"], true);
    }
}
