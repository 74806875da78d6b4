//! The attribute catalogue of the inbound SCIM server: the RFC 7643 §8.7 schema
//! documents (schemas.json) parsed once, and the normalisation every stored resource
//! goes through (canonical attribute names, booleans from "True"/"False" strings,
//! server-owned and write-only attributes dropped). Pure; knows nothing of HTTP.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::wire::{Kind, ENTERPRISE, GROUP, USER};

/// One attribute (or sub-attribute) definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDef {
    /// Canonical spelling (`userName`).
    pub name: String,
    /// `string`, `boolean`, `complex`, `reference`, ...
    pub kind: String,
    pub multi: bool,
    /// `readWrite`, `readOnly`, `writeOnly`, `immutable`.
    pub mutability: String,
    /// `always`, `never`, `default`, `request`.
    pub returned: String,
    pub case_exact: bool,
    pub sub: Vec<AttrDef>,
}

impl AttrDef {
    fn from_json(v: &Value) -> Option<AttrDef> {
        let s = |k: &str, d: &str| v.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
        Some(AttrDef {
            name: v.get("name")?.as_str()?.to_string(),
            kind: s("type", "string"),
            multi: v
                .get("multiValued")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            mutability: s("mutability", "readWrite"),
            returned: s("returned", "default"),
            case_exact: v.get("caseExact").and_then(Value::as_bool).unwrap_or(false),
            sub: v
                .get("subAttributes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(AttrDef::from_json).collect())
                .unwrap_or_default(),
        })
    }

    /// A sub-attribute by name, any letter case.
    pub fn sub_attr(&self, name: &str) -> Option<&AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Never sent back to a client (`password`).
    pub fn never_returned(&self) -> bool {
        self.returned == "never"
    }
}

/// Every schema document plus the attribute definitions by schema URN.
#[derive(Debug, Default)]
pub struct Catalogue {
    documents: Vec<Value>,
    attrs: Vec<(String, Vec<AttrDef>)>,
}

static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();

/// The catalogue built from the bundled RFC 7643 schema documents.
pub fn catalogue() -> &'static Catalogue {
    CATALOGUE.get_or_init(|| {
        let docs: Vec<Value> = match serde_json::from_str(include_str!("schemas.json")) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the bundled SCIM schemas do not parse");
                Vec::new()
            }
        };
        let attrs = docs
            .iter()
            .filter_map(|d| {
                let id = d.get("id")?.as_str()?.to_string();
                let list = d
                    .get("attributes")?
                    .as_array()?
                    .iter()
                    .filter_map(AttrDef::from_json)
                    .collect();
                Some((id, list))
            })
            .collect();
        Catalogue {
            documents: docs,
            attrs,
        }
    })
}

impl Catalogue {
    /// The schema documents as published at `/Schemas`.
    pub fn documents(&self) -> &[Value] {
        &self.documents
    }

    /// The attributes of one schema URN.
    pub fn schema(&self, urn: &str) -> &[AttrDef] {
        self.attrs
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(urn))
            .map(|(_, a)| a.as_slice())
            .unwrap_or(&[])
    }

    /// An attribute of `kind` by (optional schema URN, name), any letter case. The
    /// common attributes `id` and `externalId` are known too.
    pub fn attr(&self, kind: Kind, urn: Option<&str>, name: &str) -> Option<&AttrDef> {
        let urn = urn.unwrap_or(kind.schema());
        self.schema(urn)
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The canonical spelling of an extension URN of `kind`, if it is one.
    pub fn extension(&self, kind: Kind, urn: &str) -> Option<&'static str> {
        kind.extensions()
            .iter()
            .copied()
            .find(|e| e.eq_ignore_ascii_case(urn))
    }
}

/// Whether string comparisons on this attribute path are case-exact (RFC 7643 §2.2):
/// `id` and `externalId` are, and whatever the schema marks `caseExact`.
pub fn case_exact(kind: Kind, urn: Option<&str>, name: &str, sub: Option<&str>) -> bool {
    if urn.is_none() && (name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("externalId"))
    {
        return true;
    }
    let Some(def) = catalogue().attr(kind, urn, name) else {
        return false;
    };
    match sub {
        Some(s) => def.sub_attr(s).is_some_and(|d| d.case_exact),
        None => def.case_exact,
    }
}

fn coerce(def: &AttrDef, v: Value) -> Value {
    match (&*def.kind, v) {
        ("boolean", Value::String(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        ("boolean", Value::String(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        ("complex", Value::Object(o)) => Value::Object(normalize_attrs(&def.sub, o, false)),
        ("complex", Value::Array(items)) if def.multi => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Value::Object(o) => Value::Object(normalize_attrs(&def.sub, o, false)),
                    other => other,
                })
                .filter(|i| !unassigned(i))
                .collect(),
        ),
        (_, v) => v,
    }
}

/// Null, an empty list or an empty object: "unassigned" (RFC 7643 §2.5).
pub fn unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn normalize_attrs(defs: &[AttrDef], input: Map<String, Value>, top: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in input {
        if unassigned(&v) {
            continue;
        }
        let Some(def) = defs.iter().find(|d| d.name.eq_ignore_ascii_case(&k)) else {
            if !top {
                // Unknown sub-attributes are dropped, like unknown attributes.
                tracing::debug!(attribute = %k, "ignoring an unknown SCIM sub-attribute");
            }
            continue;
        };
        // Server-owned and never-returned values are not kept (usher stores no passwords).
        if def.mutability == "readOnly" || def.never_returned() {
            continue;
        }
        let v = coerce(def, v);
        if !unassigned(&v) {
            out.insert(def.name.clone(), v);
        }
    }
    out
}

/// A client-sent resource reduced to what usher stores: canonical attribute names,
/// known attributes only (core, `externalId`, known extensions), no `id`, `meta`,
/// read-only or write-only values, no unassigned values. `schemas` is recomputed.
pub fn normalize(kind: Kind, input: Map<String, Value>) -> Map<String, Value> {
    let cat = catalogue();
    let core = cat.schema(kind.schema());
    let mut out = Map::new();
    let mut core_in = Map::new();
    for (k, v) in input {
        if k.eq_ignore_ascii_case("externalId") {
            if let Value::String(s) = v {
                if !s.is_empty() {
                    out.insert("externalId".into(), Value::String(s));
                }
            }
            continue;
        }
        if let Some(ext) = cat.extension(kind, &k) {
            if let Value::Object(o) = v {
                let n = normalize_attrs(cat.schema(ext), o, false);
                if !n.is_empty() {
                    out.insert(ext.to_string(), Value::Object(n));
                }
            }
            continue;
        }
        core_in.insert(k, v);
    }
    for (k, v) in normalize_attrs(core, core_in, true) {
        out.insert(k, v);
    }
    out
}

/// The `schemas` list of a stored resource: the core URN plus each extension present.
pub fn schemas_of(kind: Kind, attrs: &Map<String, Value>) -> Vec<Value> {
    let mut v = vec![Value::String(kind.schema().into())];
    for e in kind.extensions() {
        if attrs.contains_key(*e) {
            v.push(Value::String((*e).into()));
        }
    }
    v
}

/// The known core schema URNs (for paths written with a full URN prefix).
pub fn core_urn(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(USER) || urn.eq_ignore_ascii_case(GROUP)
}

/// Whether `urn` is the enterprise extension (any case).
pub fn is_enterprise(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(ENTERPRISE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bundled_schemas_parse_with_user_group_and_enterprise() {
        let c = catalogue();
        assert_eq!(c.documents().len(), 6);
        assert!(c.attr(Kind::User, None, "USERNAME").is_some());
        assert!(c.attr(Kind::Group, None, "members").is_some());
        assert!(c.attr(Kind::User, Some(ENTERPRISE), "department").is_some());
        assert!(case_exact(Kind::User, None, "externalId", None));
        assert!(!case_exact(Kind::User, None, "userName", None));
    }

    #[test]
    fn normalize_canonicalises_names_coerces_booleans_and_drops_server_owned() {
        let input = json!({
            "USERNAME": "ann@example.com",
            "Active": "False",
            "id": "forged",
            "meta": {"version": "x"},
            "password": "secret",
            "groups": [{"value": "g"}],
            "emails": [{"VALUE": "ann@example.com", "Primary": "true"}, {}],
            "name": {"givenname": "Ann", "nonsense": 1},
            "externalId": "ext-1",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "R&D"},
            "unknownThing": 1,
            "nickName": null
        });
        let Value::Object(o) = input else { panic!() };
        let n = normalize(Kind::User, o);
        assert_eq!(
            Value::Object(n.clone()),
            json!({
                "userName": "ann@example.com",
                "active": false,
                "emails": [{"value": "ann@example.com", "primary": true}],
                "name": {"givenName": "Ann"},
                "externalId": "ext-1",
                ENTERPRISE: {"department": "R&D"}
            })
        );
        assert_eq!(
            schemas_of(Kind::User, &n),
            vec![json!(USER), json!(ENTERPRISE)]
        );
    }
}
