//! SCIM PATCH (RFC 7644 §3.5.2) for the emulator: add/replace/remove on attributes,
//! `a.b` sub-attributes and `members[value eq "id"]`, with Atlassian's refusal to
//! rename a synced group. Works on the JSON resource; no I/O.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{
    check_members, error, has_schema, not_found, parse_filter, stamp, table, table_mut, ScimState,
    PATCH,
};
use crate::sandbox::http::json;

/// PATCH (RFC 7644 §3.5.2): add/replace/remove on top-level attributes, `a.b`
/// sub-attributes, and `members[value eq "id"]`; operations key in any case.
pub(super) fn patch(s: &mut ScimState, kind: &str, id: &str, b: &Value) -> Response<Bytes> {
    let Some(mut v) = table(s, kind).get(id).cloned() else {
        return not_found(kind, id);
    };
    if !has_schema(b, PATCH) {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "schemas must be the PatchOp schema",
        );
    }
    let ops = b
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("operations")))
        .and_then(|(_, ops)| ops.as_array())
        .cloned()
        .unwrap_or_default();
    if ops.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "Operations is required",
        );
    }
    for op in &ops {
        let name = op["op"].as_str().unwrap_or_default().to_lowercase();
        let path = op["path"].as_str().map(str::to_string);
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        let result = match (name.as_str(), path) {
            ("add" | "replace", None) => match value.as_object() {
                Some(o) => {
                    for (k, x) in o {
                        set_attr(&mut v, k, x.clone(), name == "add");
                    }
                    Ok(())
                }
                None => Err("a patch without a path needs an object value"),
            },
            ("add" | "replace", Some(p)) => {
                set_attr(&mut v, &p, value, name == "add");
                Ok(())
            }
            ("remove", Some(p)) => remove_attr(&mut v, &p),
            ("remove", None) => Err("remove needs a path"),
            _ => Err("op must be add, replace or remove"),
        };
        if let Err(e) = result {
            let scim_type = if name == "remove" {
                "noTarget"
            } else {
                "invalidValue"
            };
            return error(StatusCode::BAD_REQUEST, Some(scim_type), e);
        }
    }
    if kind == "Groups" {
        if v["displayName"]
            != table(s, kind)
                .get(id)
                .map(|g| g["displayName"].clone())
                .unwrap_or_default()
        {
            return error(
                StatusCode::BAD_REQUEST,
                Some("mutability"),
                "Renaming a synced group is not supported",
            );
        }
        if let Err(r) = check_members(s, &v) {
            return r;
        }
        dedupe_members(&mut v);
    }
    stamp(&mut v, id, if kind == "Users" { "User" } else { "Group" });
    table_mut(s, kind).insert(id.to_string(), v.clone());
    json(StatusCode::OK, &v)
}

fn dedupe_members(g: &mut Value) {
    if let Some(a) = g.get_mut("members").and_then(Value::as_array_mut) {
        let mut seen = std::collections::BTreeSet::new();
        a.retain(|m| seen.insert(m["value"].as_str().unwrap_or_default().to_string()));
    }
}

/// Finds the actual key for a case-insensitive attribute name.
fn key_of(o: &Map<String, Value>, name: &str) -> String {
    o.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn set_attr(v: &mut Value, path: &str, value: Value, add: bool) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    if let Some((parent, child)) = path.split_once('.').filter(|_| !path.contains(':')) {
        let pk = key_of(o, parent);
        let entry = o.entry(pk).or_insert_with(|| json!({}));
        if let Some(po) = entry.as_object_mut() {
            let ck = key_of(po, child);
            po.insert(ck, value);
        }
        return;
    }
    let k = key_of(o, path);
    match (add, o.get_mut(&k), value) {
        (true, Some(Value::Array(existing)), Value::Array(more)) => existing.extend(more),
        (_, _, value) => {
            o.insert(k, value);
        }
    }
}

fn remove_attr(v: &mut Value, path: &str) -> Result<(), &'static str> {
    let Some(o) = v.as_object_mut() else {
        return Err("not an object");
    };
    if let Some((attr, rest)) = path.split_once('[') {
        let filter = rest.trim_end_matches(']');
        let (fa, want) = parse_filter(filter).ok_or("unsupported filter in path")?;
        let k = key_of(o, attr);
        if let Some(a) = o.get_mut(&k).and_then(Value::as_array_mut) {
            a.retain(|m| {
                m.as_object()
                    .and_then(|mo| mo.iter().find(|(mk, _)| mk.to_lowercase() == fa))
                    .and_then(|(_, x)| x.as_str())
                    != Some(want.as_str())
            });
        }
        return Ok(());
    }
    if let Some((parent, child)) = path.split_once('.') {
        let pk = key_of(o, parent);
        if let Some(po) = o.get_mut(&pk).and_then(Value::as_object_mut) {
            let ck = key_of(po, child);
            po.remove(&ck);
        }
        return Ok(());
    }
    let k = key_of(o, path);
    o.remove(&k);
    Ok(())
}
