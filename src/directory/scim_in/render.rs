//! What a client sees of a stored resource: the rendered JSON (`id`, `schemas`,
//! `meta`, a user's read-only `groups`), the list/query parameters (`filter`,
//! `startIndex`, `count`, `attributes`, `excludedAttributes`) and the projection they
//! ask for. Pure; no HTTP and no storage.

use serde_json::{Map, Value};

use std::collections::HashMap;

use super::filter::{AttrPath, Filter};
use super::schema::schemas_of;
use super::source::group_ref;
use super::store::{member_ids, IdpResources, StoredResource};
use super::wire::{etag, Kind, ScimError, ScimType, MAX_RESULTS};

/// Parsed list/query parameters.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) filter: Option<String>,
    pub(crate) start: usize,
    pub(crate) count: usize,
    pub(crate) attributes: Vec<AttrPath>,
    pub(crate) excluded: Vec<AttrPath>,
}

fn paths(list: &str) -> Result<Vec<AttrPath>, ScimError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| AttrPath::parse(s).map_err(|e| ScimError::bad(ScimType::InvalidPath, e)))
        .collect()
}

impl Query {
    pub(crate) fn from_pairs<'a>(
        pairs: impl Iterator<Item = (String, Value)> + 'a,
    ) -> Result<Query, ScimError> {
        let mut q = Query {
            start: 1,
            count: MAX_RESULTS,
            ..Query::default()
        };
        let num = |v: &Value| -> Option<i64> {
            match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let text = |v: &Value| -> String {
            match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            }
        };
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "filter" => q.filter = Some(text(&v)).filter(|f| !f.trim().is_empty()),
                "startindex" => q.start = num(&v).unwrap_or(1).max(1) as usize,
                "count" => {
                    q.count =
                        (num(&v).unwrap_or(MAX_RESULTS as i64).max(0) as usize).min(MAX_RESULTS)
                }
                "attributes" => q.attributes = paths(&text(&v))?,
                "excludedattributes" => q.excluded = paths(&text(&v))?,
                _ => {}
            }
        }
        Ok(q)
    }

    pub(crate) fn from_uri(query: Option<&str>) -> Result<Query, ScimError> {
        let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())));
        Query::from_pairs(pairs)
    }
}

/// Keeps only the requested attributes (plus `id`, `schemas`, `meta`) or drops the
/// excluded ones (never `id` or `schemas`).
pub(crate) fn project(res: Map<String, Value>, q: &Query) -> Map<String, Value> {
    let mut res = res;
    if !q.attributes.is_empty() {
        let mut out = Map::new();
        for k in ["id", "schemas", "meta"] {
            if let Some(v) = res.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        for p in &q.attributes {
            copy_path(&res, &mut out, p);
        }
        res = out;
    }
    for p in &q.excluded {
        if p.urn.is_none()
            && (p.name.eq_ignore_ascii_case("id") || p.name.eq_ignore_ascii_case("schemas"))
        {
            continue;
        }
        remove_path(&mut res, p);
    }
    res
}

fn key_ci(o: &Map<String, Value>, name: &str) -> Option<String> {
    o.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, p: &AttrPath) {
    let (src, dst) = match &p.urn {
        Some(u) => {
            let Some(Value::Object(src)) = key_ci(from, u).and_then(|k| from.get(&k)) else {
                return;
            };
            if p.name.is_empty() {
                to.insert(u.clone(), Value::Object(src.clone()));
                return;
            }
            let slot = to
                .entry(u.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match slot.as_object_mut() {
                Some(dst) => (src, dst),
                None => return,
            }
        }
        None => (from, &mut *to),
    };
    let Some(k) = key_ci(src, &p.name) else {
        return;
    };
    let Some(v) = src.get(&k) else { return };
    let picked = match (&p.sub, v) {
        (None, v) => v.clone(),
        (Some(s), Value::Object(o)) => {
            let mut m = dst
                .get(&k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(sk) = key_ci(o, s) {
                if let Some(x) = o.get(&sk) {
                    m.insert(sk, x.clone());
                }
            }
            Value::Object(m)
        }
        (Some(s), Value::Array(items)) => Value::Array(
            items
                .iter()
                .filter_map(Value::as_object)
                .map(|o| {
                    let mut m = Map::new();
                    if let Some(sk) = key_ci(o, s) {
                        if let Some(x) = o.get(&sk) {
                            m.insert(sk, x.clone());
                        }
                    }
                    Value::Object(m)
                })
                .collect(),
        ),
        (Some(_), _) => return,
    };
    dst.insert(k, picked);
}

fn remove_path(res: &mut Map<String, Value>, p: &AttrPath) {
    let target = match &p.urn {
        Some(u) => {
            let Some(k) = key_ci(res, u) else { return };
            if p.name.is_empty() {
                res.remove(&k);
                return;
            }
            match res.get_mut(&k).and_then(Value::as_object_mut) {
                Some(o) => o,
                None => return,
            }
        }
        None => res,
    };
    let Some(k) = key_ci(target, &p.name) else {
        return;
    };
    match &p.sub {
        None => {
            target.remove(&k);
        }
        Some(s) => match target.get_mut(&k) {
            Some(Value::Object(o)) => {
                if let Some(sk) = key_ci(o, s) {
                    o.remove(&sk);
                }
            }
            Some(Value::Array(items)) => {
                for o in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(sk) = key_ci(o, s) {
                        o.remove(&sk);
                    }
                }
            }
            _ => {}
        },
    }
}

/// Member id -> the groups listing it directly (for users' read-only `groups`).
pub(crate) fn groups_by_member(data: &IdpResources) -> HashMap<String, Vec<&StoredResource>> {
    let mut out: HashMap<String, Vec<&StoredResource>> = HashMap::new();
    for g in data.groups.values() {
        for m in member_ids(g) {
            out.entry(m).or_default().push(g);
        }
    }
    out
}

/// Whether a filter can be decided on the stored attributes alone (it names none of
/// the server-made `id`, `meta`, `groups`, `schemas`), so nothing has to be rendered.
pub(crate) fn decidable_on_attrs(f: &Filter) -> bool {
    f.paths().iter().all(|p| {
        p.urn.is_some()
            || !["id", "meta", "groups", "schemas"]
                .iter()
                .any(|n| p.name.eq_ignore_ascii_case(n))
    })
}

/// A stored resource as the client sees it: attributes + `id`, `schemas`, `meta`,
/// and for users the read-only `groups` (direct memberships).
pub(crate) fn render(
    kind: Kind,
    r: &StoredResource,
    base: &str,
    groups: &[&StoredResource],
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("schemas".into(), Value::Array(schemas_of(kind, &r.attrs)));
    out.insert("id".into(), Value::String(r.id.clone()));
    for (k, v) in &r.attrs {
        out.insert(k.clone(), v.clone());
    }
    if kind == Kind::User && !groups.is_empty() {
        let groups: Vec<Value> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "value": g.id,
                    "$ref": format!("{base}/Groups/{}", g.id),
                    "display": group_ref(g).name,
                    "type": "direct",
                })
            })
            .collect();
        out.insert("groups".into(), Value::Array(groups));
    }
    out.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": kind.name(),
            "created": r.created,
            "lastModified": r.modified,
            "location": format!("{base}/{}/{}", kind.endpoint(), r.id),
            "version": etag(r.version),
        }),
    );
    out
}
