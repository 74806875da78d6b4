//! Jira Data Center emulator: the REST v2 user, group, membership, project-lead and
//! component-lead endpoints with Jira's status codes, bodies, paging and quirks
//! (reference/atlassian.md §1 and the §9 checklist). In-memory, seeded, inspectable;
//! not an issue tracker, and never part of a production `usher serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::atlassian::{body_json, num, param, BadCredentials, Caller, Gate};
use super::http::{empty, json, query_pairs, serve, Handler, Running};

/// One Jira user as the emulator stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraUser {
    /// Stable user key (`JIRAUSER10100`); survives renames.
    pub key: String,
    pub name: String,
    pub email: String,
    pub display_name: String,
    pub active: bool,
}

/// A project and its lead (by username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraProject {
    pub key: String,
    pub lead: String,
}

/// A component and its optional lead (by username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraComponent {
    pub id: u64,
    pub project: String,
    pub name: String,
    pub lead: Option<String>,
}

/// Everything the emulator knows; `JiraEmulator::state` returns a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JiraState {
    /// Users by lowercase username (Jira usernames are case-insensitive).
    pub users: BTreeMap<String, JiraUser>,
    /// Groups by name, members by user key.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    pub projects: BTreeMap<String, JiraProject>,
    pub components: BTreeMap<u64, JiraComponent>,
    next_id: u64,
}

impl JiraState {
    /// The user with this username (any case).
    pub fn user(&self, name: &str) -> Option<&JiraUser> {
        self.users.get(&name.to_lowercase())
    }

    /// Member usernames of a group (sorted).
    pub fn members(&self, group: &str) -> BTreeSet<String> {
        let keys = self.groups.get(group).cloned().unwrap_or_default();
        self.users
            .values()
            .filter(|u| keys.contains(&u.key))
            .map(|u| u.name.clone())
            .collect()
    }

    /// Adds a user directly (seeding); returns its key.
    pub fn insert_user(
        &mut self,
        name: &str,
        email: &str,
        display_name: &str,
        active: bool,
    ) -> String {
        self.next_id += 1;
        let key = format!("JIRAUSER{}", 10_000 + self.next_id);
        self.users.insert(
            name.to_lowercase(),
            JiraUser {
                key: key.clone(),
                name: name.to_string(),
                email: email.to_string(),
                display_name: display_name.to_string(),
                active,
            },
        );
        key
    }

    /// Adds a membership directly (seeding); creates the group if needed.
    pub fn insert_member(&mut self, group: &str, name: &str) {
        let key = self.user(name).map(|u| u.key.clone());
        let g = self.groups.entry(group.to_string()).or_default();
        if let Some(key) = key {
            g.insert(key);
        }
    }
}

/// Seed data and behaviour switches.
#[derive(Debug, Clone)]
pub struct JiraSeed {
    /// Basic-auth accounts `(username, password)`; each is also created as a user.
    pub basic: Vec<(String, String)>,
    /// Personal access tokens `(token, username)`.
    pub bearer: Vec<(String, String)>,
    /// Accounts holding the Jira Administrators permission.
    pub admins: Vec<String>,
    /// `(username, email, display name)`.
    pub users: Vec<(String, String, String)>,
    /// `(group, members)`.
    pub groups: Vec<(String, Vec<String>)>,
    /// `(project key, lead username)`.
    pub projects: Vec<(String, String)>,
    /// `(component id, project key, name, lead)`.
    pub components: Vec<(u64, String, String, Option<String>)>,
    /// Emulate Jira >= 8.3 (`active` honoured in PUT /user).
    pub honours_active: bool,
    /// Emulate Jira Software 10 (GET /group removed -> 404).
    pub v10: bool,
}

impl Default for JiraSeed {
    fn default() -> Self {
        JiraSeed {
            basic: vec![("usher-bot".into(), "bot-password".into())],
            bearer: vec![("bot-pat".into(), "usher-bot".into())],
            admins: vec!["usher-bot".into()],
            users: vec![(
                "jira-admin".into(),
                "jira-admin@example.com".into(),
                "Jira Admin".into(),
            )],
            groups: vec![("jira-software-users".into(), vec![])],
            projects: vec![],
            components: vec![],
            honours_active: true,
            v10: true,
        }
    }
}

/// A running Jira emulator.
#[derive(Debug)]
pub struct JiraEmulator {
    state: Mutex<JiraState>,
    /// Credentials, faults, rate limit, garbling.
    pub gate: Gate,
    admins: Vec<String>,
    honours_active: bool,
    v10: bool,
}

impl JiraEmulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(seed: JiraSeed) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        seed: JiraSeed,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let mut state = JiraState::default();
        for (name, _) in &seed.basic {
            state.insert_user(name, &format!("{name}@example.com"), name, true);
        }
        for (name, email, display) in &seed.users {
            state.insert_user(name, email, display, true);
        }
        for (group, members) in &seed.groups {
            state.groups.entry(group.clone()).or_default();
            for m in members {
                state.insert_member(group, m);
            }
        }
        for (key, lead) in &seed.projects {
            state.projects.insert(
                key.clone(),
                JiraProject {
                    key: key.clone(),
                    lead: lead.clone(),
                },
            );
        }
        for (id, project, name, lead) in &seed.components {
            state.components.insert(
                *id,
                JiraComponent {
                    id: *id,
                    project: project.clone(),
                    name: name.clone(),
                    lead: lead.clone(),
                },
            );
        }
        let basic: Vec<(&str, &str)> = seed
            .basic
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        let bearer: Vec<(&str, &str)> = seed
            .bearer
            .iter()
            .map(|(t, u)| (t.as_str(), u.as_str()))
            .collect();
        let emu = Arc::new(JiraEmulator {
            state: Mutex::new(state),
            gate: Gate::new(&basic, &bearer, BadCredentials::Reject),
            admins: seed.admins.clone(),
            honours_active: seed.honours_active,
            v10: seed.v10,
        });
        let e = emu.clone();
        let handler: Handler = Arc::new(move |req| {
            let e = e.clone();
            Box::pin(async move { e.respond(req).await })
        });
        let running = serve(addr, handler).await?;
        Ok((emu, running))
    }

    /// A snapshot of the state.
    pub fn state(&self) -> JiraState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut JiraState) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        let caller = match self.gate.admit(&req, error).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let resp = match caller {
            Caller::Anonymous => error(
                StatusCode::UNAUTHORIZED,
                "You are not authenticated. Authentication required to perform this operation.",
            ),
            Caller::User(u) if !self.admins.contains(&u) => error(
                StatusCode::FORBIDDEN,
                "You do not have the permission to manage users and groups.",
            ),
            Caller::User(_) => self.route(&req),
        };
        self.gate.finish(resp)
    }

    fn route(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path();
        let rest = path
            .strip_prefix("/rest/api/2")
            .or_else(|| path.strip_prefix("/rest/api/latest"));
        let Some(rest) = rest else {
            return error(StatusCode::NOT_FOUND, "null for uri");
        };
        let q = query_pairs(req);
        let truncate = self.gate.faults.truncate_pages();
        let Ok(mut s) = self.state.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let m = req.method().clone();
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (m, segs.as_slice()) {
            (Method::GET, ["user"]) => get_user(&s, &q),
            (Method::POST, ["user"]) => match body_json(req, error) {
                Ok(b) => create_user(&mut s, &b),
                Err(r) => r,
            },
            (Method::PUT, ["user"]) => match body_json(req, error) {
                Ok(b) => update_user(&mut s, &q, &b, self.honours_active),
                Err(r) => r,
            },
            (Method::GET, ["user", "search"]) => search_users(&s, &q, truncate),
            (Method::GET, ["user", "list"]) => list_users(&s, &q),
            (Method::GET, ["group"]) if self.v10 => error(StatusCode::NOT_FOUND, "null for uri"),
            (Method::GET, ["group"]) => {
                match param(&q, "groupname").filter(|g| s.groups.contains_key(g)) {
                    Some(g) => json(StatusCode::OK, &group_bean(&s, &g)),
                    None => error(StatusCode::NOT_FOUND, "The group does not exist."),
                }
            }
            (Method::POST, ["group"]) => match body_json(req, error) {
                Ok(b) => create_group(&mut s, &b),
                Err(r) => r,
            },
            (Method::GET, ["group", "member"]) => group_members(&s, &q, truncate),
            (Method::POST, ["group", "user"]) => match body_json(req, error) {
                Ok(b) => add_member(&mut s, &q, &b),
                Err(r) => r,
            },
            (Method::DELETE, ["group", "user"]) => remove_member(&mut s, &q),
            (Method::GET, ["groups", "picker"]) => group_picker(&s, &q),
            (Method::GET, ["project"]) => json(
                StatusCode::OK,
                &Value::Array(s.projects.values().map(|p| project_json(&s, p)).collect()),
            ),
            (Method::GET, ["project", key, "components"]) => {
                if !s.projects.contains_key(*key) {
                    return error(
                        StatusCode::NOT_FOUND,
                        &format!("No project could be found with key '{key}'."),
                    );
                }
                let list: Vec<Value> = s
                    .components
                    .values()
                    .filter(|c| c.project == *key)
                    .map(|c| component_json(&s, c))
                    .collect();
                json(StatusCode::OK, &Value::Array(list))
            }
            (Method::PUT, ["project", key]) => match body_json(req, error) {
                Ok(b) => set_project_lead(&mut s, key, &b),
                Err(r) => r,
            },
            (Method::PUT, ["component", id]) => match body_json(req, error) {
                Ok(b) => set_component_lead(&mut s, id, &b),
                Err(r) => r,
            },
            _ => error(StatusCode::NOT_FOUND, "null for uri"),
        }
    }
}

/// Jira's ErrorCollection body.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(status, &json!({"errorMessages": [message], "errors": {}}))
}

fn field_error(field: &str, message: &str) -> Response<Bytes> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"errorMessages": [], "errors": {field: message}}),
    )
}

fn user_json(s: &JiraState, u: &JiraUser) -> Value {
    let groups: Vec<Value> = s
        .groups
        .iter()
        .filter(|(_, m)| m.contains(&u.key))
        .map(|(g, _)| json!({"name": g, "self": format!("/rest/api/2/group?groupname={g}")}))
        .collect();
    json!({
        "self": format!("/rest/api/2/user?username={}", u.name),
        "key": u.key, "name": u.name, "emailAddress": u.email,
        "avatarUrls": {"48x48": "", "24x24": "", "16x16": "", "32x32": ""},
        "displayName": u.display_name, "active": u.active, "deleted": false,
        "timeZone": "UTC", "locale": "en_US",
        "groups": {"size": groups.len(), "items": []},
        "applicationRoles": {"size": 0, "items": []},
        "expand": "groups,applicationRoles"
    })
}

fn find<'a>(s: &'a JiraState, q: &[(String, String)]) -> Option<&'a JiraUser> {
    if let Some(name) = param(q, "username") {
        return s.user(&name);
    }
    let key = param(q, "key")?;
    s.users.values().find(|u| u.key == key)
}

fn get_user(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
    match find(s, q) {
        Some(u) => json(StatusCode::OK, &user_json(s, u)),
        None => error(
            StatusCode::NOT_FOUND,
            &format!(
                "The user named '{}' does not exist",
                param(q, "username").or(param(q, "key")).unwrap_or_default()
            ),
        ),
    }
}

fn str_field<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str)
}

fn create_user(s: &mut JiraState, b: &Value) -> Response<Bytes> {
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
fn active_field(b: &Value) -> Option<bool> {
    match b.get("active")? {
        Value::Bool(v) => Some(*v),
        Value::String(v) => v.parse().ok(),
        _ => None,
    }
}

fn update_user(
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
    s.users.insert(next.name.to_lowercase(), next.clone());
    json(StatusCode::OK, &user_json(s, &next))
}

fn matches(u: &JiraUser, needle: &str) -> bool {
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

fn search_users(s: &JiraState, q: &[(String, String)], truncate: bool) -> Response<Bytes> {
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
        .map(|u| user_json(s, u))
        .collect();
    json(StatusCode::OK, &Value::Array(list))
}

fn list_users(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
    let start: usize = param(q, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let max = num(q, "maxResults", 100).clamp(1, 1000);
    let values: Vec<Value> = s
        .users
        .values()
        .skip(start)
        .take(max)
        .map(|u| user_json(s, u))
        .collect();
    let is_last = start + values.len() >= s.users.len();
    let mut body = json!({"values": values, "isLast": is_last, "maxResults": max, "self": "/rest/api/2/user/list"});
    if !is_last {
        body["nextCursor"] = json!((start + max).to_string());
        body["nextPage"] = json!(format!("/rest/api/2/user/list?cursor={}", start + max));
    }
    json(StatusCode::OK, &body)
}

fn group_bean(s: &JiraState, g: &str) -> Value {
    let size = s.groups.get(g).map(BTreeSet::len).unwrap_or(0);
    json!({"name": g, "self": format!("/rest/api/2/group?groupname={g}"),
           "users": {"backingListSize": size, "callback": {}, "items": [], "maxResults": 50, "pagingCallback": {}, "size": size.min(50)}})
}

fn create_group(s: &mut JiraState, b: &Value) -> Response<Bytes> {
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

fn group_members(s: &JiraState, q: &[(String, String)], truncate: bool) -> Response<Bytes> {
    let Some(g) = param(q, "groupname").filter(|g| s.groups.contains_key(g)) else {
        return error(StatusCode::NOT_FOUND, "The group does not exist.");
    };
    let inactive = param(q, "includeInactiveUsers").is_some_and(|v| v == "true");
    let start = num(q, "startAt", 0);
    let max = num(q, "maxResults", 50).clamp(1, 50);
    let keys = s.groups.get(&g).cloned().unwrap_or_default();
    let all: Vec<&JiraUser> = s
        .users
        .values()
        .filter(|u| keys.contains(&u.key) && (inactive || u.active))
        .collect();
    let take = if truncate { max / 2 } else { max };
    let values: Vec<Value> = all
        .iter()
        .skip(start)
        .take(take)
        .map(|u| user_json(s, u))
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

fn add_member(s: &mut JiraState, q: &[(String, String)], b: &Value) -> Response<Bytes> {
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

fn remove_member(s: &mut JiraState, q: &[(String, String)]) -> Response<Bytes> {
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

fn group_picker(s: &JiraState, q: &[(String, String)]) -> Response<Bytes> {
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

fn lead_json(s: &JiraState, name: &str) -> Value {
    match s.user(name) {
        Some(u) => {
            json!({"name": u.name, "key": u.key, "displayName": u.display_name, "active": u.active})
        }
        None => json!({"name": name}),
    }
}

fn project_json(s: &JiraState, p: &JiraProject) -> Value {
    json!({"key": p.key, "id": p.key, "name": p.key, "lead": lead_json(s, &p.lead), "assigneeType": "PROJECT_LEAD"})
}

fn component_json(s: &JiraState, c: &JiraComponent) -> Value {
    let mut v = json!({"id": c.id.to_string(), "name": c.name, "project": c.project, "assigneeType": "COMPONENT_LEAD"});
    if let Some(lead) = &c.lead {
        v["lead"] = lead_json(s, lead);
        v["leadUserName"] = json!(lead);
    }
    v
}

fn set_project_lead(s: &mut JiraState, key: &str, b: &Value) -> Response<Bytes> {
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

fn set_component_lead(s: &mut JiraState, id: &str, b: &Value) -> Response<Bytes> {
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
