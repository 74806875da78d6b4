//! The emulator's resource operations: list with Atlassian's single-`eq` filter and
//! 100-per-page limit, create with 409 on duplicates, full replace (PUT), the
//! read-only `groups` of a user and attribute projection. JSON in, answers out.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{error, members, not_found, stamp, table, table_mut, ScimState, LIST, MAX_PAGE, USER};
use crate::sandbox::atlassian::{num, param};
use crate::sandbox::http::json;

pub(super) fn list_of(resources: Vec<Value>) -> Response<Bytes> {
    json(
        StatusCode::OK,
        &json!({"schemas": [LIST], "totalResults": resources.len(), "startIndex": 1,
                "itemsPerPage": resources.len(), "Resources": resources}),
    )
}

/// Adds a user's read-only `groups` (direct memberships), as Atlassian returns them.
pub(super) fn with_groups(s: &ScimState, v: &Value) -> Value {
    let Some(id) = v["id"].as_str().filter(|_| v["userName"].is_string()) else {
        return v.clone();
    };
    let groups: Vec<Value> = s
        .groups
        .values()
        .filter(|g| members(g).iter().any(|m| m == id))
        .map(|g| {
            json!({"value": g["id"], "display": g["displayName"], "type": "direct",
                        "$ref": format!("/Groups/{}", g["id"].as_str().unwrap_or_default())})
        })
        .collect();
    let mut out = v.clone();
    if !groups.is_empty() {
        out["groups"] = json!(groups);
    }
    out
}

/// Applies `attributes` / `excludedAttributes` (top-level names only).
pub(super) fn project(v: &Value, q: &[(String, String)]) -> Value {
    let split = |k: &str| -> Vec<String> {
        param(q, k)
            .map(|a| {
                a.split(',')
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (only, except) = (split("attributes"), split("excludedAttributes"));
    let Some(o) = v.as_object() else {
        return v.clone();
    };
    let keep = |k: &str| {
        let k = k.to_lowercase();
        if ["id", "schemas", "meta"].contains(&k.as_str()) {
            return true;
        }
        let named = |list: &[String]| {
            list.iter().any(|a| {
                a == &k || a.starts_with(&format!("{k}.")) || a.ends_with(&format!(":{k}"))
            })
        };
        (only.is_empty() || named(&only)) && !except.iter().any(|a| a == &k)
    };
    Value::Object(
        o.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Parses Atlassian's only filter form: `attr eq "value"`.
pub(super) fn parse_filter(f: &str) -> Option<(String, String)> {
    let (attr, rest) = f.trim().split_once(char::is_whitespace)?;
    let (op, value) = rest.trim().split_once(char::is_whitespace)?;
    if !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let value = value.trim();
    let value = value.strip_prefix('"')?.strip_suffix('"')?;
    if value.contains('"') {
        return None;
    }
    Some((attr.to_lowercase(), value.to_string()))
}

pub(super) fn list(
    s: &ScimState,
    kind: &str,
    q: &[(String, String)],
    truncate: bool,
) -> Response<Bytes> {
    let filter = match param(q, "filter") {
        None => None,
        Some(f) => match parse_filter(&f) {
            Some(pair) => Some(pair),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("invalidFilter"),
                    "Only a single 'eq' filter is supported",
                );
            }
        },
    };
    let allowed: &[&str] = if kind == "Users" {
        &["username", "externalid"]
    } else {
        &["displayname", "externalid"]
    };
    if let Some((attr, _)) = &filter {
        if !allowed.contains(&attr.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                &format!("Filtering on '{attr}' is not supported"),
            );
        }
    }
    let all: Vec<&Value> = table(s, kind)
        .values()
        .filter(|v| match &filter {
            None => true,
            Some((attr, want)) => v
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.to_lowercase() == *attr))
                .and_then(|(_, x)| x.as_str())
                .is_some_and(|x| {
                    if attr == "username" {
                        x.eq_ignore_ascii_case(want)
                    } else {
                        x == want
                    }
                }),
        })
        .collect();
    let start = num(q, "startIndex", 1).max(1);
    let count = num(q, "count", MAX_PAGE).min(MAX_PAGE);
    let take = if truncate { count / 2 } else { count };
    let page: Vec<Value> = all
        .iter()
        .skip(start - 1)
        .take(take)
        .map(|v| project(&with_groups(s, v), q))
        .collect();
    json(
        StatusCode::OK,
        &json!({"schemas": [LIST], "totalResults": all.len(), "startIndex": start,
                "itemsPerPage": page.len(), "Resources": page}),
    )
}

pub(super) fn has_schema(b: &Value, schema: &str) -> bool {
    b["schemas"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(schema)))
}

/// The non-empty name attribute a new resource must carry (`userName`,
/// `displayName`); `Err` is SCIM's 400 `invalidValue` "`attr` is required".
fn required_name(b: &Value, attr: &str) -> Result<String, Response<Bytes>> {
    b[attr]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("{attr} is required"),
            )
        })
}

/// SCIM's 409 `uniqueness` for a create whose name is taken.
fn already_exists(kind: &str, attr: &str, name: &str) -> Response<Bytes> {
    error(
        StatusCode::CONFLICT,
        Some("uniqueness"),
        &format!("{kind} with {attr} {name} already exists"),
    )
}

pub(super) fn create_user(s: &mut ScimState, mut b: Value) -> Response<Bytes> {
    let name = match required_name(&b, "userName") {
        Ok(n) => n,
        Err(r) => return r,
    };
    if !has_schema(&b, USER) {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "schemas must contain the User schema",
        );
    }
    if s.user_by_name(&name).is_some() {
        return already_exists("User", "userName", &name);
    }
    if b.get("active").is_none() {
        b["active"] = json!(true);
    }
    strip_read_only(&mut b);
    let id = s.new_id();
    stamp(&mut b, &id, "User");
    s.users.insert(id, b.clone());
    json(StatusCode::CREATED, &b)
}

pub(super) fn create_group(s: &mut ScimState, mut b: Value) -> Response<Bytes> {
    let name = match required_name(&b, "displayName") {
        Ok(n) => n,
        Err(r) => return r,
    };
    if s.group_by_name(&name).is_some() {
        return already_exists("Group", "displayName", &name);
    }
    strip_read_only(&mut b);
    if let Err(r) = check_members(s, &b) {
        return r;
    }
    let id = s.new_id();
    stamp(&mut b, &id, "Group");
    s.groups.insert(id, b.clone());
    json(StatusCode::CREATED, &b)
}

pub(super) fn check_members(s: &ScimState, g: &Value) -> Result<(), Response<Bytes>> {
    for id in members(g) {
        if !s.users.contains_key(&id) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("Member {id} does not exist"),
            ));
        }
    }
    Ok(())
}

pub(super) fn strip_read_only(b: &mut Value) {
    if let Some(o) = b.as_object_mut() {
        o.remove("id");
        o.remove("meta");
        o.remove("groups");
    }
}

pub(super) fn replace(s: &mut ScimState, kind: &str, id: &str, mut b: Value) -> Response<Bytes> {
    let Some(current) = table(s, kind).get(id).cloned() else {
        return not_found(kind, id);
    };
    strip_read_only(&mut b);
    if kind == "Users" {
        let Some(name) = b["userName"].as_str() else {
            return error(
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                "userName is required",
            );
        };
        let clash = s
            .user_by_name(name)
            .is_some_and(|u| u["id"].as_str() != Some(id));
        if clash {
            return error(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "userName already in use",
            );
        }
        if b.get("active").is_none() {
            b["active"] = json!(true);
        }
    } else {
        if b["displayName"].as_str() != current["displayName"].as_str() {
            return error(
                StatusCode::BAD_REQUEST,
                Some("mutability"),
                "Renaming a synced group is not supported",
            );
        }
        if let Err(r) = check_members(s, &b) {
            return r;
        }
    }
    b["meta"] = current["meta"].clone();
    stamp(&mut b, id, if kind == "Users" { "User" } else { "Group" });
    table_mut(s, kind).insert(id.to_string(), b.clone());
    json(StatusCode::OK, &b)
}
