//! Jira emulator endpoint handlers: one function per REST call, each taking the
//! locked state and the request's query/body and returning Jira's exact answer.
//! Routing, auth and faults live in `mod.rs`.

use std::collections::BTreeSet;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{JiraComponent, JiraProject, JiraState, JiraUser};
use crate::sandbox::atlassian::{num, param};
use crate::sandbox::http::{empty, json};

/// Jira's ErrorCollection body.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(status, &json!({"errorMessages": [message], "errors": {}}))
}

pub(super) fn field_error(field: &str, message: &str) -> Response<Bytes> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"errorMessages": [], "errors": {field: message}}),
    )
}

pub(super) fn user_json(s: &JiraState, u: &JiraUser) -> Value {
    let groups = s.groups.values().filter(|m| m.contains(&u.key)).count();
    json!({
        "self": format!("/rest/api/2/user?username={}", u.name),
        "key": u.key, "name": u.name, "emailAddress": u.email,
        "avatarUrls": {"48x48": "", "24x24": "", "16x16": "", "32x32": ""},
        "displayName": u.display_name, "active": u.active, "deleted": false,
        "timeZone": "UTC", "locale": "en_US",
        "groups": {"size": groups, "items": []},
        "applicationRoles": {"size": 0, "items": []},
        "expand": "groups,applicationRoles"
    })
}

/// A list item (`/group/member`, `/user/search`, `/user/list`): the plain UserJson
/// without the `groups`/`applicationRoles` expansions (atlassian.md §1.2), so a
/// page costs O(page) rather than O(page × groups).
fn member_json(u: &JiraUser) -> Value {
    json!({
        "self": format!("/rest/api/2/user?username={}", u.name),
        "key": u.key, "name": u.name, "emailAddress": u.email,
        "avatarUrls": {"48x48": "", "24x24": "", "16x16": "", "32x32": ""},
        "displayName": u.display_name, "active": u.active, "timeZone": "UTC"
    })
}

pub(super) fn find<'a>(s: &'a JiraState, q: &[(String, String)]) -> Option<&'a JiraUser> {
    if let Some(name) = param(q, "username") {
        return s.user(&name);
    }
    let key = param(q, "key")?;
    s.user_by_key(&key)
}

pub(super) fn get_user(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
    match find(s, q) {
        Some(u) => {
            let mut v = user_json(s, u);
            if param(q, "expand").is_some_and(|e| e.contains("groups")) {
                let items: Vec<Value> = s
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(&u.key))
                    .map(|(g, _)| json!({"name": g, "self": format!("/rest/api/2/group?groupname={g}")}))
                    .collect();
                v["groups"]["items"] = json!(items);
            }
            json(StatusCode::OK, &v)
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!(
                "The user named '{}' does not exist",
                param(q, "username").or(param(q, "key")).unwrap_or_default()
            ),
        ),
    }
}

pub(super) fn str_field<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str)
}

pub(super) fn create_user(s: &mut JiraState, b: &Value) -> Response<Bytes> {
    let Some(name) = str_field(b, "name").filter(|n| !n.trim().is_empty()) else {
        return field_error("username", "You must specify a username.");
    };
    let Some(email) = str_field(b, "emailAddress").filter(|e| e.contains('@')) else {
        return field_error("email", "You must specify a valid email address.");
    };
    if s.user(name).is_some() {
        return field_error("username", "A user with that username already exists.");
    }
    let display = str_field(b, "displayName").unwrap_or(name).to_string();
    s.insert_user(name, email, &display, true);
    let Some(u) = s.user(name).cloned() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "CreateException");
    };
    let mut resp = json(StatusCode::CREATED, &user_json(s, &u));
    if let Ok(v) = http::HeaderValue::from_str(&format!("/rest/api/2/user?username={}", u.name)) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// `active` may come as a JSON bool or, from python clients, the string "false".
pub(super) fn active_field(b: &Value) -> Option<bool> {
    match b.get("active")? {
        Value::Bool(v) => Some(*v),
        Value::String(v) => v.parse().ok(),
        _ => None,
    }
}

pub(super) fn update_user(
    s: &mut JiraState,
    q: &[(String, String)],
    b: &Value,
    honours_active: bool,
) -> Response<Bytes> {
    let Some(current) = find(s, q).cloned() else {
        return error(StatusCode::NOT_FOUND, "The user does not exist.");
    };
    let mut next = current.clone();
    if let Some(e) = str_field(b, "emailAddress") {
        if !e.contains('@') || e.len() > 255 {
            return field_error("emailAddress", "You must specify a valid email address.");
        }
        next.email = e.to_string();
    }
    if let Some(d) = str_field(b, "displayName") {
        if d.len() > 255 {
            return field_error(
                "displayName",
                "The full name must not exceed 255 characters.",
            );
        }
        next.display_name = d.to_string();
    }
    if let Some(n) = str_field(b, "name") {
        if !n.eq_ignore_ascii_case(&current.name) && s.user(n).is_some() {
            return field_error("username", "A user with that username already exists.");
        }
        next.name = n.to_string();
    }
    if honours_active {
        if let Some(a) = active_field(b) {
            if !a && current.active {
                let lead_of = s
                    .projects
                    .values()
                    .find(|p| p.lead.eq_ignore_ascii_case(&current.name));
                if let Some(p) = lead_of {
                    return field_error(
                        "active",
                        &format!(
                            "The user '{}' is the project lead of '{}' and cannot be deactivated.",
                            current.name, p.key
                        ),
                    );
                }
            }
            next.active = a;
        }
    }
    if next == current {
        return error(
            StatusCode::BAD_REQUEST,
            "error.no.value.found.to.be.changed",
        );
    }
    s.users.remove(&current.name.to_lowercase());
    if !next.name.eq(&current.name) {
        for p in s.projects.values_mut() {
            if p.lead.eq_ignore_ascii_case(&current.name) {
                p.lead = next.name.clone();
            }
        }
    }
    s.index_key(&next.key, &next.name);
    s.users.insert(next.name.to_lowercase(), next.clone());
    json(StatusCode::OK, &user_json(s, &next))
}

pub(super) fn matches(u: &JiraUser, needle: &str) -> bool {
    if needle == "." {
        return true;
    }
    let n = needle.to_lowercase();
    u.name.to_lowercase().starts_with(&n)
        || u.email.to_lowercase().starts_with(&n)
        || u.display_name.to_lowercase().starts_with(&n)
        || u.display_name
            .to_lowercase()
            .split_whitespace()
            .any(|w| w.starts_with(&n))
}

pub(super) fn search_users(
    s: &JiraState,
    q: &[(String, String)],
    truncate: bool,
) -> Response<Bytes> {
    let Some(needle) = param(q, "username") else {
        return error(
            StatusCode::BAD_REQUEST,
            "The username query parameter was not provided",
        );
    };
    let active = param(q, "includeActive").is_none_or(|v| v == "true");
    let inactive = param(q, "includeInactive").is_some_and(|v| v == "true");
    let start = num(q, "startAt", 0);
    let max = num(q, "maxResults", 50).min(1000);
    let max = if truncate { max / 2 } else { max };
    let list: Vec<Value> = s
        .users
        .values()
        .filter(|u| (u.active && active) || (!u.active && inactive))
        .filter(|u| matches(u, &needle))
        .skip(start)
        .take(max)
        .map(member_json)
        .collect();
    json(StatusCode::OK, &Value::Array(list))
}

pub(super) fn list_users(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let start: usize = param(q, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let max = num(q, "maxResults", 100).clamp(1, 1000);
    let values: Vec<Value> = s
        .users
        .values()
        .skip(start)
        .take(max)
        .map(member_json)
        .collect();
    let is_last = start + values.len() >= s.users.len();
    let mut body = json!({"values": values, "isLast": is_last, "maxResults": max, "self": "/rest/api/2/user/list"});
    if !is_last {
        body["nextCursor"] = json!((start + max).to_string());
        body["nextPage"] = json!(format!("/rest/api/2/user/list?cursor={}", start + max));
    }
    json(StatusCode::OK, &body)
}

pub(super) fn group_bean(s: &JiraState, g: &str) -> Value {
    let size = s.groups.get(g).map(BTreeSet::len).unwrap_or(0);
    json!({"name": g, "self": format!("/rest/api/2/group?groupname={g}"),
           "users": {"backingListSize": size, "callback": {}, "items": [], "maxResults": 50, "pagingCallback": {}, "size": size.min(50)}})
}

pub(super) fn create_group(s: &mut JiraState, b: &Value) -> Response<Bytes> {
    let Some(name) = str_field(b, "name").filter(|n| !n.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "You must specify a group name.");
    };
    if s.groups.keys().any(|g| g.eq_ignore_ascii_case(name)) {
        return error(
            StatusCode::BAD_REQUEST,
            "A group or user with this name already exists.",
        );
    }
    s.groups.insert(name.to_string(), BTreeSet::new());
    let mut resp = json(StatusCode::CREATED, &group_bean(s, name));
    if let Ok(v) = http::HeaderValue::from_str(&format!("/rest/api/2/group?groupname={name}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

pub(super) fn group_members(
    s: &JiraState,
    q: &[(String, String)],
    truncate: bool,
) -> Response<Bytes> {
    let Some(g) = param(q, "groupname").filter(|g| s.groups.contains_key(g)) else {
        return error(StatusCode::NOT_FOUND, "The group does not exist.");
    };
    let inactive = param(q, "includeInactiveUsers").is_some_and(|v| v == "true");
    let start = num(q, "startAt", 0);
    let max = num(q, "maxResults", 50).clamp(1, 50);
    // Members in username order, as Jira lists them.
    let mut all: Vec<&JiraUser> = s
        .groups
        .get(&g)
        .map(|keys| keys.iter().filter_map(|k| s.user_by_key(k)).collect())
        .unwrap_or_default();
    all.retain(|u| inactive || u.active);
    all.sort_by_cached_key(|u| u.name.to_lowercase());
    let take = if truncate { max / 2 } else { max };
    let values: Vec<Value> = all
        .iter()
        .skip(start)
        .take(take)
        .map(|u| member_json(u))
        .collect();
    let is_last = truncate || start + max >= all.len();
    let mut body = json!({"self": format!("/rest/api/2/group/member?groupname={g}"), "maxResults": max,
        "startAt": start, "total": all.len(), "isLast": is_last, "values": values});
    if !is_last {
        body["nextPage"] = json!(format!(
            "/rest/api/2/group/member?groupname={g}&startAt={}",
            start + max
        ));
    }
    json(StatusCode::OK, &body)
}

pub(super) fn add_member(s: &mut JiraState, q: &[(String, String)], b: &Value) -> Response<Bytes> {
    let Some(g) = param(q, "groupname").filter(|g| !g.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "Group name must not be empty.");
    };
    if !s.groups.contains_key(&g) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Group '{g}' does not exist."),
        );
    }
    let Some(u) = str_field(b, "name").and_then(|n| s.user(n)).cloned() else {
        return error(StatusCode::NOT_FOUND, "The user does not exist.");
    };
    let members = s.groups.entry(g.clone()).or_default();
    if !members.insert(u.key.clone()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Cannot add user. '{}' is already a member of '{g}'", u.name),
        );
    }
    json(StatusCode::CREATED, &group_bean(s, &g))
}

pub(super) fn remove_member(s: &mut JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let g = param(q, "groupname").unwrap_or_default();
    if !s.groups.contains_key(&g) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Group '{g}' does not exist."),
        );
    }
    let Some(u) = param(q, "username").and_then(|n| s.user(&n)).cloned() else {
        return error(StatusCode::NOT_FOUND, "The user does not exist.");
    };
    let members = s.groups.entry(g.clone()).or_default();
    if !members.remove(&u.key) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Cannot remove user. '{}' is not a member of '{g}'", u.name),
        );
    }
    empty(StatusCode::OK)
}

pub(super) fn group_picker(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let query = param(q, "query").unwrap_or_default().to_lowercase();
    let max = num(q, "maxResults", 20);
    let all: Vec<&String> = s
        .groups
        .keys()
        .filter(|g| g.to_lowercase().contains(&query))
        .collect();
    let groups: Vec<Value> = all
        .iter()
        .take(max)
        .map(|g| json!({"name": g, "html": g, "labels": []}))
        .collect();
    json(
        StatusCode::OK,
        &json!({"header": format!("Showing {} of {} matching groups", groups.len(), all.len()), "total": all.len(), "groups": groups}),
    )
}

pub(super) fn lead_json(s: &JiraState, name: &str) -> Value {
    match s.user(name) {
        Some(u) => {
            json!({"name": u.name, "key": u.key, "displayName": u.display_name, "active": u.active})
        }
        None => json!({"name": name}),
    }
}

pub(super) fn project_json(s: &JiraState, p: &JiraProject) -> Value {
    json!({"key": p.key, "id": p.key, "name": p.key, "lead": lead_json(s, &p.lead), "assigneeType": "PROJECT_LEAD"})
}

pub(super) fn component_json(s: &JiraState, c: &JiraComponent) -> Value {
    let mut v = json!({"id": c.id.to_string(), "name": c.name, "project": c.project, "assigneeType": "COMPONENT_LEAD"});
    if let Some(lead) = &c.lead {
        v["lead"] = lead_json(s, lead);
        v["leadUserName"] = json!(lead);
    }
    v
}

pub(super) fn set_project_lead(s: &mut JiraState, key: &str, b: &Value) -> Response<Bytes> {
    let lead = str_field(b, "lead").map(str::to_string);
    if let Some(l) = &lead {
        if s.user(l).is_none_or(|u| !u.active) {
            return field_error("projectLead", "You must specify a valid project lead.");
        }
    }
    let Some(p) = s.projects.get_mut(key) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No project could be found with key '{key}'."),
        );
    };
    if let Some(l) = lead {
        p.lead = l;
    }
    let p = p.clone();
    json(StatusCode::OK, &project_json(s, &p))
}

pub(super) fn set_component_lead(s: &mut JiraState, id: &str, b: &Value) -> Response<Bytes> {
    let lead = str_field(b, "leadUserName").map(str::to_string);
    if let Some(l) = &lead {
        if s.user(l).is_none() {
            return field_error("leadUserName", "The user does not exist.");
        }
    }
    let Some(c) = id
        .parse()
        .ok()
        .and_then(|id: u64| s.components.get_mut(&id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("The component with id {id} does not exist."),
        );
    };
    if lead.is_some() {
        c.lead = lead;
    }
    let c = c.clone();
    json(StatusCode::OK, &component_json(s, &c))
}

/// DELETE /user: 204; a project lead cannot be deleted (400).
pub(super) fn delete_user(s: &mut JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let Some(u) = find(s, q).cloned() else {
        return error(StatusCode::NOT_FOUND, "The user does not exist.");
    };
    if let Some(p) = s
        .projects
        .values()
        .find(|p| p.lead.eq_ignore_ascii_case(&u.name))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Cannot delete user '{}' because they are the lead of project '{}'.",
                u.name, p.key
            ),
        );
    }
    s.users.remove(&u.name.to_lowercase());
    for members in s.groups.values_mut() {
        members.remove(&u.key);
    }
    empty(StatusCode::NO_CONTENT)
}

/// DELETE /group?groupname=[&swapGroup=]: 200 with an empty body.
pub(super) fn delete_group(s: &mut JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let g = param(q, "groupname").unwrap_or_default();
    if let Some(swap) = param(q, "swapGroup") {
        if !s.groups.contains_key(&swap) || swap == g {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The swap group '{swap}' is not valid."),
            );
        }
    }
    if s.groups.remove(&g).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Group '{g}' does not exist."),
        );
    }
    empty(StatusCode::OK)
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The demo upstream page: the identity headers the proxy set (`X-Forwarded-User`,
/// `-Email`, `-Groups`) and the Jira account and groups provisioning produced.
pub(super) fn whoami_page(s: &JiraState, headers: &http::HeaderMap) -> String {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let user = header("x-forwarded-user");
    let mut body = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Jira (usher sandbox)</title></head><body><h1>Jira (usher sandbox)</h1>");
    if user.is_empty() {
        body.push_str(
            "<p>No identity header: you reached Jira without signing in through usher.</p>",
        );
    } else {
        body.push_str(&format!(
            "<p>Signed in as <b>{}</b> ({}).</p><p>Groups from the proxy: {}</p>",
            escape(&user),
            escape(&header("x-forwarded-email")),
            escape(&header("x-forwarded-groups"))
        ));
        match s.user(&user) {
            Some(u) => {
                let groups: Vec<String> = s
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(&u.key))
                    .map(|(g, _)| escape(g))
                    .collect();
                body.push_str(&format!(
                    "<p>Jira account: {} &lt;{}&gt;, {}.</p><p>Jira groups: {}</p>",
                    escape(&u.display_name),
                    escape(&u.email),
                    if u.active { "active" } else { "deactivated" },
                    if groups.is_empty() {
                        "(none)".to_string()
                    } else {
                        groups.join(", ")
                    }
                ));
            }
            None => body.push_str("<p>No Jira account with this username.</p>"),
        }
    }
    body.push_str("</body></html>");
    body
}
