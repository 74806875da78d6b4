//! SCIM PATCH (RFC 7644 §3.5.2): parsing a `PatchOp` message and applying its
//! `add` / `replace` / `remove` operations to a stored resource, with value-path
//! filters (`emails[type eq "work"].value`) and the common IdP habits (op names in
//! any case, `"False"` strings, Entra's `remove members` with a value list, Entra's
//! `add` to a filtered path that matches nothing yet). Pure; no storage, no HTTP.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, CompareOp, Filter};
use super::schema::{self, catalogue, AttrDef};
use super::wire::{Kind, ScimError, ScimType, PATCH_OP};

/// One PATCH operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// A PATCH target: an attribute path, an optional value filter and the
/// sub-attribute after the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub_after: Option<String>,
}

impl PatchPath {
    /// Parses `members`, `name.givenName`, `emails[type eq "work"].value`, URN paths.
    pub fn parse(text: &str) -> Result<PatchPath, String> {
        let text = text.trim();
        match (text.find('['), text.rfind(']')) {
            (Some(open), Some(close)) if close > open => {
                let attr = AttrPath::parse(&text[..open])?;
                if attr.sub.is_some() {
                    return Err(format!("{text:?}: a filter must follow the attribute"));
                }
                let filter = filter::parse(&text[open + 1..close])?;
                let rest = &text[close + 1..];
                let sub_after = match rest.strip_prefix('.') {
                    Some(s) if !s.is_empty() => Some(s.to_string()),
                    None if rest.is_empty() => None,
                    _ => return Err(format!("{text:?}: unexpected {rest:?} after the filter")),
                };
                Ok(PatchPath {
                    attr,
                    filter: Some(filter),
                    sub_after,
                })
            }
            (None, None) => Ok(PatchPath {
                attr: AttrPath::parse(text)?,
                filter: None,
                sub_after: None,
            }),
            _ => Err(format!("{text:?}: unbalanced brackets")),
        }
    }
}

/// One parsed operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: Op,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail)
}

/// Parses a `PatchOp` request body (`Operations` in any letter case).
pub fn parse_request(body: &Value) -> Result<Vec<PatchOperation>, ScimError> {
    let Some(o) = body.as_object() else {
        return Err(invalid("the PATCH body is not a JSON object"));
    };
    let schemas_ok = filter::get_ci(o, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !schemas_ok {
        return Err(invalid(format!(
            "the PATCH body must list {PATCH_OP} in schemas"
        )));
    }
    let ops = filter::get_ci(o, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("the PATCH body has no Operations list"))?;
    ops.iter()
        .map(|op| {
            let op = op
                .as_object()
                .ok_or_else(|| invalid("an operation is not an object"))?;
            let kind = match filter::get_ci(op, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => Op::Add,
                Some("remove") => Op::Remove,
                Some("replace") => Op::Replace,
                other => {
                    return Err(invalid(format!(
                        "unknown op {other:?}; use add, remove or replace"
                    )))
                }
            };
            let path = match filter::get_ci(op, "path") {
                Some(Value::String(p)) if !p.trim().is_empty() => Some(
                    PatchPath::parse(p).map_err(|e| ScimError::bad(ScimType::InvalidPath, e))?,
                ),
                Some(Value::String(_)) | Some(Value::Null) | None => None,
                Some(_) => {
                    return Err(ScimError::bad(
                        ScimType::InvalidPath,
                        "path is not a string",
                    ))
                }
            };
            let value = filter::get_ci(op, "value").cloned();
            if kind == Op::Remove && path.is_none() {
                return Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"));
            }
            if kind != Op::Remove && value.is_none() {
                return Err(invalid("add and replace need a value"));
            }
            Ok(PatchOperation {
                op: kind,
                path,
                value,
            })
        })
        .collect()
}

/// The definition and canonical name of a path's attribute; `externalId` included.
fn def_of(kind: Kind, p: &AttrPath) -> Result<AttrDef, ScimError> {
    if p.urn.is_none() && p.name.eq_ignore_ascii_case("externalId") {
        return Ok(AttrDef {
            name: "externalId".into(),
            kind: "string".into(),
            multi: false,
            mutability: "readWrite".into(),
            returned: "default".into(),
            case_exact: true,
            sub: Vec::new(),
        });
    }
    if p.urn.is_none()
        && ["id", "meta", "schemas"]
            .iter()
            .any(|n| p.name.eq_ignore_ascii_case(n))
    {
        return Err(ScimError::bad(
            ScimType::Mutability,
            format!("{} is set by the server", p.name),
        ));
    }
    let def = catalogue()
        .attr(kind, p.urn.as_deref(), &p.name)
        .cloned()
        .ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidPath,
                format!("{} has no attribute {:?}", kind.name(), p.name),
            )
        })?;
    if def.mutability == "readOnly" {
        return Err(ScimError::bad(
            ScimType::Mutability,
            format!("{} is read-only", def.name),
        ));
    }
    Ok(def)
}

/// The object holding a path's attribute (the resource, or its extension object).
fn container<'a>(
    res: &'a mut Map<String, Value>,
    urn: Option<&str>,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    match urn {
        None => Ok(res),
        Some(u) => {
            let slot = res
                .entry(u.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            slot.as_object_mut().ok_or_else(|| {
                ScimError::bad(ScimType::InvalidPath, "the extension is not an object")
            })
        }
    }
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
    }
}

fn set_primary_unique(items: &mut [Value], keep: usize) {
    for (i, item) in items.iter_mut().enumerate() {
        if i != keep {
            if let Some(o) = item.as_object_mut() {
                if o.get("primary") == Some(&Value::Bool(true)) {
                    o.insert("primary".into(), Value::Bool(false));
                }
            }
        }
    }
}

fn merge(into: &mut Map<String, Value>, from: Value) -> Result<(), ScimError> {
    let Value::Object(from) = from else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "a complex attribute needs an object value",
        ));
    };
    for (k, v) in from {
        into.insert(k, v);
    }
    Ok(())
}

/// Applies one operation whose path has no filter.
fn apply_plain(
    kind: Kind,
    res: &mut Map<String, Value>,
    op: Op,
    p: &AttrPath,
    value: Option<Value>,
) -> Result<(), ScimError> {
    if p.name.is_empty() {
        // The whole extension object.
        let urn = p.urn.clone().unwrap_or_default();
        return match (op, value) {
            (Op::Remove, _) => {
                res.remove(&urn);
                Ok(())
            }
            (_, Some(Value::Object(o))) => {
                for (k, v) in o {
                    if k.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let sub = AttrPath {
                        urn: Some(urn.clone()),
                        name: k,
                        sub: None,
                    };
                    apply_plain(kind, res, op, &sub, Some(v))?;
                }
                Ok(())
            }
            _ => Err(ScimError::bad(
                ScimType::InvalidValue,
                "an extension needs an object value",
            )),
        };
    }
    let def = def_of(kind, p)?;
    let c = container(res, p.urn.as_deref())?;
    let key = def.name.clone();
    if let Some(sub) = &p.sub {
        let sub_def = def.sub_attr(sub).ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidPath,
                format!("{} has no sub-attribute {sub:?}", def.name),
            )
        })?;
        let sub_key = sub_def.name.clone();
        let apply_to = |o: &mut Map<String, Value>| match (&value, op) {
            (_, Op::Remove) => {
                o.remove(&sub_key);
            }
            (Some(v), _) => {
                o.insert(sub_key.clone(), v.clone());
            }
            (None, _) => {}
        };
        match c.get_mut(&key) {
            Some(Value::Array(items)) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(apply_to),
            Some(Value::Object(o)) => apply_to(o),
            _ if op == Op::Remove => {}
            _ if def.multi => {
                return Err(ScimError::bad(
                    ScimType::NoTarget,
                    format!("{} has no values to set {sub} on", def.name),
                ))
            }
            _ => {
                let mut o = Map::new();
                apply_to(&mut o);
                c.insert(key, Value::Object(o));
            }
        }
        return Ok(());
    }
    match op {
        Op::Remove => {
            match (value, c.get_mut(&key)) {
                // Entra ID: remove the listed values only (members by `value`).
                (Some(v), Some(Value::Array(items))) if def.multi => {
                    let gone: Vec<Value> = as_list(v)
                        .into_iter()
                        .filter_map(|x| match x {
                            Value::Object(o) => filter::get_ci(&o, "value").cloned(),
                            other => Some(other),
                        })
                        .collect();
                    items.retain(|i| {
                        let val = i.as_object().and_then(|o| filter::get_ci(o, "value"));
                        !val.is_some_and(|val| gone.contains(val))
                    });
                }
                _ => {
                    c.remove(&key);
                }
            }
        }
        Op::Add if def.multi => {
            let Some(v) = value else { return Ok(()) };
            let slot = c.entry(key).or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                for new in as_list(v) {
                    if !items.contains(&new) {
                        let primary = new.get("primary") == Some(&Value::Bool(true));
                        items.push(new);
                        if primary {
                            let last = items.len() - 1;
                            set_primary_unique(items, last);
                        }
                    }
                }
            }
        }
        Op::Replace if def.multi => {
            if let Some(v) = value {
                c.insert(key, Value::Array(as_list(v)));
            }
        }
        Op::Add | Op::Replace if def.kind == "complex" => {
            let Some(v) = value else { return Ok(()) };
            let slot = c.entry(key).or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(o) => merge(o, v)?,
                other => *other = v,
            }
        }
        Op::Add | Op::Replace => {
            if let Some(v) = value {
                c.insert(key, v);
            }
        }
    }
    Ok(())
}

/// Equality constraints `sub eq "literal"` of a filter (joined by `and`), used to
/// create the element an `add`/`replace` on a filtered path asks for.
fn equalities(f: &Filter, out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub.is_none() && path.urn.is_none() => {
            out.insert(path.name.clone(), value.clone());
            true
        }
        Filter::And(a, b) => equalities(a, out) && equalities(b, out),
        _ => false,
    }
}

fn apply_filtered(
    kind: Kind,
    res: &mut Map<String, Value>,
    op: Op,
    p: &PatchPath,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let def = def_of(kind, &p.attr)?;
    if !def.multi {
        return Err(ScimError::bad(
            ScimType::InvalidPath,
            format!("{} is not multi-valued", def.name),
        ));
    }
    let Some(filter) = &p.filter else {
        return Ok(());
    };
    let ce =
        |urn: Option<&str>, name: &str, sub: Option<&str>| schema::case_exact(kind, urn, name, sub);
    let parent = AttrPath {
        urn: p.attr.urn.clone(),
        name: def.name.clone(),
        sub: None,
    };
    let c = container(res, p.attr.urn.as_deref())?;
    let items = match c.get_mut(&def.name) {
        Some(Value::Array(items)) => items,
        _ => {
            c.insert(def.name.clone(), Value::Array(Vec::new()));
            match c.get_mut(&def.name) {
                Some(Value::Array(items)) => items,
                _ => return Ok(()),
            }
        }
    };
    let wrapped = Filter::ValuePath {
        path: parent,
        filter: Box::new(filter.clone()),
    };
    let hits: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            let mut one = Map::new();
            one.insert(def.name.clone(), Value::Array(vec![(*e).clone()]));
            let mut root = Map::new();
            let target = match &p.attr.urn {
                Some(u) => {
                    root.insert(u.clone(), Value::Object(one));
                    root
                }
                None => one,
            };
            wrapped.matches(&target, &ce)
        })
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        if op == Op::Remove {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("no value of {} matches the filter", def.name),
            ));
        }
        let mut fresh = Map::new();
        if !equalities(filter, &mut fresh) {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("no value of {} matches the filter", def.name),
            ));
        }
        match (&p.sub_after, value) {
            (Some(s), Some(v)) => {
                fresh.insert(s.clone(), v);
            }
            (None, Some(Value::Object(o))) => fresh.extend(o),
            _ => {}
        }
        items.push(Value::Object(fresh));
        return Ok(());
    }
    if op == Op::Remove && p.sub_after.is_none() {
        let mut i = 0;
        items.retain(|_| {
            let keep = !hits.contains(&i);
            i += 1;
            keep
        });
        return Ok(());
    }
    for &i in &hits {
        let Some(item) = items.get_mut(i) else {
            continue;
        };
        match (&p.sub_after, op, &value) {
            (Some(s), Op::Remove, _) => {
                if let Some(o) = item.as_object_mut() {
                    let k = o.keys().find(|k| k.eq_ignore_ascii_case(s)).cloned();
                    if let Some(k) = k {
                        o.remove(&k);
                    }
                }
            }
            (Some(s), _, Some(v)) => {
                if let Some(o) = item.as_object_mut() {
                    o.insert(s.clone(), v.clone());
                }
            }
            (None, Op::Replace, Some(v)) => *item = v.clone(),
            (None, Op::Add, Some(v)) => {
                if let Some(o) = item.as_object_mut() {
                    merge(o, v.clone())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies the operations in order to `res` (a stored resource's attributes) and
/// normalises the result. Any failing operation fails the whole PATCH; `res` is
/// then unchanged.
pub fn apply(
    kind: Kind,
    res: &mut Map<String, Value>,
    ops: &[PatchOperation],
) -> Result<(), ScimError> {
    let mut work = res.clone();
    for op in ops {
        match &op.path {
            None => {
                let Some(Value::Object(o)) = op.value.clone() else {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        "an operation without a path needs an object value",
                    ));
                };
                for (k, v) in o {
                    if ["schemas", "id", "meta"]
                        .iter()
                        .any(|n| k.eq_ignore_ascii_case(n))
                    {
                        continue;
                    }
                    let p = PatchPath::parse(&k)
                        .map_err(|e| ScimError::bad(ScimType::InvalidPath, e))?;
                    match p.filter {
                        Some(_) => apply_filtered(kind, &mut work, op.op, &p, Some(v))?,
                        None => apply_plain(kind, &mut work, op.op, &p.attr, Some(v))?,
                    }
                }
            }
            Some(p) if p.filter.is_some() => {
                apply_filtered(kind, &mut work, op.op, p, op.value.clone())?
            }
            Some(p) => apply_plain(kind, &mut work, op.op, &p.attr, op.value.clone())?,
        }
    }
    *res = schema::normalize(kind, work);
    Ok(())
}
