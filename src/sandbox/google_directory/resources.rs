//! The emulator's resource bodies (User, Group, Member, list envelopes) in the
//! shapes of the discovery document, and the membership walks behind
//! `includeDerivedMembership` and `hasMember`. Pure functions over [`Data`].

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use serde_json::{json, Map, Value};

use super::{Data, Who};

pub(super) fn etag(parts: &[&str]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("\"sandbox{:016x}/{:08x}\"", h.finish(), parts.len())
}

pub(super) fn envelope(kind: &str, key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(kind));
    obj.insert(
        "etag".into(),
        json!(etag(&[kind, next.as_deref().unwrap_or("")])),
    );
    if !items.is_empty() {
        obj.insert(key.into(), Value::Array(items));
    }
    if let Some(n) = next {
        obj.insert("nextPageToken".into(), json!(n));
    }
    Value::Object(obj)
}

pub(super) fn who_matches(data: &Data, who: Who, key: &str) -> bool {
    match who {
        Who::User(u) => data.user(key) == Some(u),
        Who::Group(g) => data.group(key) == Some(g),
        Who::Customer => key == data.customer_id,
    }
}

/// Groups reachable below `gi` through nesting (cycle-safe).
pub(super) fn reachable_groups(data: &Data, gi: u32) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![gi];
    while let Some(g) = stack.pop() {
        for r in &data.groups[g as usize].rows {
            if let Who::Group(c) = r.who {
                if seen.insert(c) {
                    stack.push(c);
                }
            }
        }
    }
    seen
}

/// Users in `gi` directly or through nested groups.
pub(super) fn derived_users(data: &Data, gi: u32) -> BTreeSet<u32> {
    let mut groups = reachable_groups(data, gi);
    groups.insert(gi);
    groups
        .into_iter()
        .flat_map(|g| data.groups[g as usize].rows.iter())
        .filter_map(|r| {
            if let Who::User(u) = r.who {
                Some(u)
            } else {
                None
            }
        })
        .collect()
}

pub(super) fn user_json(data: &Data, u: u32) -> Value {
    let u = &data.users[u as usize];
    let full = format!("{} {}", u.given_name, u.family_name);
    let mut emails = vec![json!({"address": u.primary_email, "primary": true})];
    emails.extend(u.aliases.iter().map(|a| json!({"address": a})));
    let mut obj = Map::new();
    obj.insert("kind".into(), json!("admin#directory#user"));
    obj.insert("id".into(), json!(u.id));
    obj.insert(
        "etag".into(),
        json!(etag(&[
            &u.id,
            &u.primary_email,
            if u.suspended { "s" } else { "" }
        ])),
    );
    obj.insert("primaryEmail".into(), json!(u.primary_email));
    obj.insert(
        "name".into(),
        json!({"givenName": u.given_name, "familyName": u.family_name, "fullName": full}),
    );
    obj.insert("isAdmin".into(), json!(u.is_admin));
    obj.insert("isDelegatedAdmin".into(), json!(false));
    obj.insert("lastLoginTime".into(), json!("1970-01-01T00:00:00.000Z"));
    obj.insert("creationTime".into(), json!("2024-01-15T09:30:00.000Z"));
    obj.insert("agreedToTerms".into(), json!(true));
    obj.insert("suspended".into(), json!(u.suspended));
    if u.suspended {
        obj.insert("suspensionReason".into(), json!("ADMIN"));
    }
    obj.insert("archived".into(), json!(u.archived));
    obj.insert("changePasswordAtNextLogin".into(), json!(false));
    obj.insert("ipWhitelisted".into(), json!(false));
    obj.insert("emails".into(), Value::Array(emails));
    if !u.aliases.is_empty() {
        obj.insert("aliases".into(), json!(u.aliases));
    }
    obj.insert("customerId".into(), json!(data.customer_id));
    obj.insert("orgUnitPath".into(), json!(u.org_unit_path));
    obj.insert("isMailboxSetup".into(), json!(true));
    obj.insert("isEnrolledIn2Sv".into(), json!(false));
    obj.insert("isEnforcedIn2Sv".into(), json!(false));
    obj.insert("includeInGlobalAddressList".into(), json!(true));
    Value::Object(obj)
}

pub(super) fn group_json(data: &Data, g: u32) -> Value {
    let g = &data.groups[g as usize];
    let mut obj = Map::new();
    obj.insert("kind".into(), json!("admin#directory#group"));
    obj.insert("id".into(), json!(g.id));
    obj.insert("etag".into(), json!(etag(&[&g.id, &g.email])));
    obj.insert("email".into(), json!(g.email));
    obj.insert("name".into(), json!(g.name));
    obj.insert("description".into(), json!(g.description));
    obj.insert("directMembersCount".into(), json!(g.rows.len().to_string()));
    obj.insert("adminCreated".into(), json!(true));
    if !g.aliases.is_empty() {
        obj.insert("aliases".into(), json!(g.aliases));
    }
    Value::Object(obj)
}

pub(super) fn member_json(data: &Data, who: Who, role: &str) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!("admin#directory#member"));
    let (id, email, kind, status) = match who {
        Who::User(u) => {
            let u = &data.users[u as usize];
            let status = if u.archived {
                "ARCHIVED"
            } else if u.suspended {
                "SUSPENDED"
            } else {
                "ACTIVE"
            };
            (
                u.id.as_str(),
                Some(u.primary_email.as_str()),
                "USER",
                Some(status),
            )
        }
        Who::Group(g) => {
            let g = &data.groups[g as usize];
            (
                g.id.as_str(),
                Some(g.email.as_str()),
                "GROUP",
                Some("ACTIVE"),
            )
        }
        Who::Customer => (data.customer_id.as_str(), None, "CUSTOMER", None),
    };
    obj.insert("etag".into(), json!(etag(&[id, role])));
    obj.insert("id".into(), json!(id));
    if let Some(e) = email {
        obj.insert("email".into(), json!(e));
    }
    obj.insert("role".into(), json!(role));
    obj.insert("type".into(), json!(kind));
    if let Some(s) = status {
        obj.insert("status".into(), json!(s));
    }
    Value::Object(obj)
}
