//! Tests of `patch.rs` (split out to keep the module small).

use super::patch::*;
use super::schema;
use super::wire::{Kind, ScimError, ScimType, PATCH_OP};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => unreachable!(),
    }
}

fn patch(kind: Kind, start: Value, ops: Value) -> Result<Value, ScimError> {
    let mut res = schema::normalize(kind, obj(start));
    let ops = parse_request(&json!({"schemas": [PATCH_OP], "Operations": ops}))?;
    apply(kind, &mut res, &ops)?;
    Ok(Value::Object(res))
}

#[test]
fn replace_active_with_an_entra_style_string_and_op_case() {
    let out = patch(
        Kind::User,
        json!({"userName": "a", "active": true}),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .unwrap();
    assert_eq!(out["active"], false);
}

#[test]
fn replace_without_path_okta_style() {
    let out = patch(
        Kind::User,
        json!({"userName": "a", "active": true, "name": {"givenName": "A", "familyName": "B"}}),
        json!([{"op": "replace", "value": {"active": false, "name.givenName": "Z", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}}]),
    )
    .unwrap();
    assert_eq!(out["active"], false);
    assert_eq!(out["name"], json!({"givenName": "Z", "familyName": "B"}));
    assert_eq!(out[super::wire::ENTERPRISE]["department"], "Ops");
}

#[test]
fn group_members_add_remove_by_filter_and_by_entra_value_list() {
    let start = json!({"displayName": "eng", "members": [{"value": "u1"}]});
    let out = patch(
        Kind::Group,
        start.clone(),
        json!([{"op": "add", "path": "members", "value": [{"value": "u2"}, {"value": "u1"}]}]),
    )
    .unwrap();
    assert_eq!(out["members"], json!([{"value": "u1"}, {"value": "u2"}]));
    let out = patch(
        Kind::Group,
        out,
        json!([{"op": "remove", "path": "members[value eq \"u1\"]"}]),
    )
    .unwrap();
    assert_eq!(out["members"], json!([{"value": "u2"}]));
    let out = patch(
        Kind::Group,
        out,
        json!([{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}]),
    )
    .unwrap();
    assert!(out.get("members").is_none(), "{out}");
    let err = patch(
        Kind::Group,
        start,
        json!([{"op": "remove", "path": "members[value eq \"zz\"]"}]),
    )
    .unwrap_err();
    assert_eq!(err.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn filtered_sub_attribute_paths_update_or_create_the_element() {
    let start = json!({"userName": "a", "emails": [{"value": "a@w.example", "type": "work", "primary": true}]});
    let out = patch(
        Kind::User,
        start,
        json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@w.example"},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "b@h.example"}
        ]),
    )
    .unwrap();
    assert_eq!(
        out["emails"],
        json!([{"value": "b@w.example", "type": "work", "primary": true}, {"type": "home", "value": "b@h.example"}])
    );
}

#[test]
fn add_of_a_primary_value_clears_the_other_primary() {
    let out = patch(
        Kind::User,
        json!({"userName": "a", "emails": [{"value": "x@e", "primary": true}]}),
        json!([{"op": "add", "path": "emails", "value": [{"value": "y@e", "primary": true}]}]),
    )
    .unwrap();
    assert_eq!(
        out["emails"],
        json!([{"value": "x@e", "primary": false}, {"value": "y@e", "primary": true}])
    );
}

#[test]
fn the_whole_extension_can_be_added_with_its_schemas_key() {
    let out = patch(
        Kind::User,
        json!({"userName": "a"}),
        json!([{"op": "add", "path": super::wire::ENTERPRISE,
                "value": {"schemas": [super::wire::ENTERPRISE], "department": "D", "manager": {"value": "m"}}}]),
    )
    .unwrap();
    assert_eq!(
        out[super::wire::ENTERPRISE],
        json!({"department": "D", "manager": {"value": "m"}})
    );
}

#[test]
fn remove_whole_attributes_sub_attributes_and_the_extension() {
    let out = patch(
        Kind::User,
        json!({"userName": "a", "title": "t", "name": {"givenName": "G", "familyName": "F"},
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}}),
        json!([
            {"op": "remove", "path": "title"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}
        ]),
    )
    .unwrap();
    assert_eq!(out, json!({"userName": "a", "name": {"familyName": "F"}}));
}

#[test]
fn bad_requests_are_scim_errors_and_leave_the_resource_alone() {
    let cases = [
        (json!({"Operations": []}), ScimType::InvalidSyntax),
        (
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "move", "path": "x"}]}),
            ScimType::InvalidSyntax,
        ),
        (
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]}),
            ScimType::NoTarget,
        ),
        (
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "a[b"}]}),
            ScimType::InvalidPath,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            parse_request(&body).unwrap_err().scim_type,
            Some(want),
            "{body}"
        );
    }
    let mut res = obj(json!({"userName": "a"}));
    let ops = parse_request(&json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "x"},
        {"op": "replace", "path": "id", "value": "forged"}
    ]}))
    .unwrap();
    let err = apply(Kind::User, &mut res, &ops).unwrap_err();
    assert_eq!(err.scim_type, Some(ScimType::Mutability));
    assert_eq!(Value::Object(res), json!({"userName": "a"}));
    let ops = parse_request(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "nosuch", "value": 1}]})).unwrap();
    assert_eq!(
        apply(Kind::User, &mut obj(json!({})), &ops)
            .unwrap_err()
            .scim_type,
        Some(ScimType::InvalidPath)
    );
}
