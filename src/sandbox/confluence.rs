//! Confluence Data Center emulator: `/rest/api/user`, `/rest/api/group`,
//! `/rest/api/admin/user` and `/rest/api/admin/group` and the PUT/DELETE membership
//! calls with Confluence's statuses, bodies, paging and quirks (reference §2 and the
//! §9 checklist: lowercase userName, 402/409, idempotent 204s, 202 delete, no e-mail
//! unless expanded, bad PAT served as anonymous). In-memory; never in production.
// Emulator answers travel as `Err(Response)`; their size does not matter off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::atlassian::{
    body_json, decode_seg, mutate, num, param, seed_directory, snapshot, str_field, BadCredentials,
    Caller, Gate, SeedDirectory,
};
use super::http::{empty, json, query_pairs, serve_shared, Running};

/// One Confluence user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfluenceUser {
    pub key: String,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub active: bool,
}

/// Everything the emulator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfluenceState {
    /// Users by username (Confluence usernames are lowercase).
    pub users: BTreeMap<String, ConfluenceUser>,
    /// Groups by name, members by username.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Licensed seats; creating beyond this answers 402.
    pub licence_seats: usize,
    next_id: u64,
}

impl ConfluenceState {
    /// Adds a user directly (seeding).
    pub fn insert_user(&mut self, username: &str, email: &str, full_name: &str) {
        self.next_id += 1;
        self.users.insert(
            username.to_string(),
            ConfluenceUser {
                key: format!("4028d6768b{:08x}", self.next_id),
                username: username.to_string(),
                email: email.to_string(),
                full_name: full_name.to_string(),
                active: true,
            },
        );
    }

    /// Adds a membership directly (seeding); creates the group if needed.
    pub fn insert_member(&mut self, group: &str, username: &str) {
        self.groups
            .entry(group.to_string())
            .or_default()
            .insert(username.to_string());
    }
}

impl SeedDirectory for ConfluenceState {
    fn seed_user(&mut self, name: &str, email: &str, display: &str) {
        self.insert_user(name, email, display);
    }

    fn seed_group(&mut self, group: &str) {
        self.groups.entry(group.to_string()).or_default();
    }

    fn seed_member(&mut self, group: &str, member: &str) {
        self.insert_member(group, member);
    }
}

/// Seed data.
#[derive(Debug, Clone)]
pub struct ConfluenceSeed {
    /// Basic-auth accounts `(username, password)`; each is also created as a user.
    pub basic: Vec<(String, String)>,
    /// Personal access tokens `(token, username)`.
    pub bearer: Vec<(String, String)>,
    /// Accounts with the admin permission user management needs.
    pub admins: Vec<String>,
    /// `(username, email, display name)`.
    pub users: Vec<(String, String, String)>,
    /// `(group, member usernames)`.
    pub groups: Vec<(String, Vec<String>)>,
    /// Licensed seats; creating beyond them is refused like the product does.
    pub licence_seats: usize,
}

impl ConfluenceSeed {
    /// Adds the users and groups of a shared [`Fixture`](crate::sandbox::atlassian::Fixture).
    pub fn with_fixture(mut self, fixture: &crate::sandbox::atlassian::Fixture) -> Self {
        fixture.extend_into(&mut self.users, &mut self.groups);
        self
    }
}

impl Default for ConfluenceSeed {
    fn default() -> Self {
        ConfluenceSeed {
            basic: vec![("usher-bot".into(), "bot-password".into())],
            bearer: vec![("bot-pat".into(), "usher-bot".into())],
            admins: vec!["usher-bot".into()],
            users: vec![],
            groups: vec![("confluence-users".into(), vec![])],
            licence_seats: 10_000,
        }
    }
}

/// A running Confluence emulator.
#[derive(Debug)]
pub struct ConfluenceEmulator {
    state: Mutex<ConfluenceState>,
    /// Credentials, faults, rate limit and garbling.
    pub gate: Gate,
    admins: Vec<String>,
}

/// Largest `limit` the emulated server serves.
const MAX_LIMIT: usize = 200;

impl ConfluenceEmulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(seed: ConfluenceSeed) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        seed: ConfluenceSeed,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let mut state = ConfluenceState {
            licence_seats: seed.licence_seats,
            ..ConfluenceState::default()
        };
        seed_directory(&mut state, &seed.basic, &seed.users, &seed.groups);
        let emu = Arc::new(ConfluenceEmulator {
            state: Mutex::new(state),
            gate: Gate::from_seed(&seed.basic, &seed.bearer, BadCredentials::BearerAsAnonymous),
            admins: seed.admins,
        });
        let running =
            serve_shared(addr, &emu, |e, req| async move { e.respond(req).await }).await?;
        Ok((emu, running))
    }

    /// A snapshot of the state.
    pub fn state(&self) -> ConfluenceState {
        snapshot(&self.state)
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ConfluenceState) -> R) -> Option<R> {
        mutate(&self.state, f)
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        let caller = match self.gate.admit(&req, error).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let (who, admin) = match &caller {
            Caller::User(u) => (u.clone(), self.admins.contains(u)),
            Caller::Anonymous => ("anonymous".to_string(), false),
        };
        let is_write = req.method() != Method::GET;
        let mut resp = if caller == Caller::Anonymous && is_write {
            error(
                StatusCode::UNAUTHORIZED,
                "This request requires authentication.",
            )
        } else if !admin && is_write {
            error(
                StatusCode::FORBIDDEN,
                "User is not permitted to perform this operation.",
            )
        } else {
            self.route(&req)
        };
        if let Ok(v) = HeaderValue::from_str(&who) {
            resp.headers_mut().insert("x-ausername", v);
        }
        resp.headers_mut()
            .insert("x-seraph-loginreason", HeaderValue::from_static("OK"));
        self.gate.finish(resp)
    }

    fn route(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let Some(rest) = req.uri().path().strip_prefix("/rest/api/") else {
            return error(StatusCode::NOT_FOUND, "Not found");
        };
        let segs: Vec<String> = rest.split('/').map(decode_seg).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let q = query_pairs(req);
        let truncate = self.gate.faults.truncate_pages();
        let Ok(mut s) = self.state.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let expand = param(&q, "expand").unwrap_or_default();
        match (req.method().clone(), segs.as_slice()) {
            (Method::GET, ["user"]) => {
                let found = match (param(&q, "username"), param(&q, "key")) {
                    (Some(u), _) => s.users.get(&u),
                    (None, Some(k)) => s.users.values().find(|x| x.key == k),
                    _ => None,
                };
                match found {
                    Some(u) => json(StatusCode::OK, &person(u, &expand)),
                    None => error(StatusCode::NOT_FOUND, "No user found"),
                }
            }
            (Method::GET, ["user", "list"]) => {
                let all: Vec<Value> = s.users.values().map(|u| person(u, &expand)).collect();
                page(&q, all, "/rest/api/user/list", truncate)
            }
            (Method::GET, ["user", "memberof"]) => {
                let Some(u) = param(&q, "username").filter(|u| s.users.contains_key(u)) else {
                    return error(StatusCode::NOT_FOUND, "No user found");
                };
                let all: Vec<Value> = s
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(&u))
                    .map(|(g, _)| group_json(g))
                    .collect();
                page(&q, all, "/rest/api/user/memberof", false)
            }
            (Method::GET, ["group"]) => {
                let all: Vec<Value> = s.groups.keys().map(|g| group_json(g)).collect();
                page(&q, all, "/rest/api/group", truncate)
            }
            (Method::GET, ["group", g, "member"]) => {
                let Some(members) = s.groups.get(*g) else {
                    return error(StatusCode::NOT_FOUND, "No group found");
                };
                let all: Vec<Value> = members
                    .iter()
                    .filter_map(|m| s.users.get(m))
                    .map(|u| person(u, &expand))
                    .collect();
                page(&q, all, &format!("/rest/api/group/{g}/member"), truncate)
            }
            (Method::POST, ["admin", "user"]) => match body_json(req, error) {
                Ok(b) => create_user(&mut s, &b),
                Err(r) => r,
            },
            (Method::PUT, ["admin", "user", u]) => match body_json(req, error) {
                Ok(b) => {
                    let Some(user) = s.users.get_mut(*u) else {
                        return error(StatusCode::NOT_FOUND, "No user found");
                    };
                    if let Some(e) = b.get("email").and_then(Value::as_str) {
                        if !e.contains('@') {
                            return error(StatusCode::BAD_REQUEST, "Invalid email address");
                        }
                        user.email = e.to_string();
                    }
                    if let Some(f) = b.get("fullName").and_then(Value::as_str) {
                        user.full_name = f.to_string();
                    }
                    empty(StatusCode::NO_CONTENT)
                }
                Err(r) => r,
            },
            (Method::DELETE, ["admin", "user", u]) => {
                if s.users.remove(*u).is_none() {
                    return error(StatusCode::NOT_FOUND, "No user found");
                }
                for m in s.groups.values_mut() {
                    m.remove(*u);
                }
                json(
                    StatusCode::ACCEPTED,
                    &json!({"id": "task-1", "name": {"key": "delete.user"},
                            "links": {"status": "/rest/api/longtask/task-1"}}),
                )
            }
            (Method::PUT, ["admin", "user", u, action @ ("disable" | "enable")]) => {
                let Some(user) = s.users.get_mut(*u) else {
                    return error(StatusCode::NOT_FOUND, "No user found");
                };
                user.active = *action == "enable";
                empty(StatusCode::NO_CONTENT)
            }
            (Method::POST, ["admin", "group"]) => match body_json(req, error) {
                Ok(b) => {
                    let Some(name) = b
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                    else {
                        return error(StatusCode::BAD_REQUEST, "Group name is required");
                    };
                    if s.groups.contains_key(name) {
                        return error(StatusCode::CONFLICT, "Group already exists");
                    }
                    s.groups.insert(name.to_string(), BTreeSet::new());
                    json(StatusCode::CREATED, &group_json(name))
                }
                Err(r) => r,
            },
            (Method::DELETE, ["admin", "group", g]) => {
                if s.groups.remove(*g).is_none() {
                    return error(StatusCode::NOT_FOUND, "No group found");
                }
                empty(StatusCode::NO_CONTENT)
            }
            (m @ (Method::PUT | Method::DELETE), ["user", u, "group", g]) => {
                if !s.users.contains_key(*u) {
                    return error(StatusCode::NOT_FOUND, "No user found");
                }
                let Some(members) = s.groups.get_mut(*g) else {
                    return error(StatusCode::NOT_FOUND, "No group found");
                };
                if m == Method::PUT {
                    members.insert(u.to_string());
                } else {
                    members.remove(*u);
                }
                empty(StatusCode::NO_CONTENT)
            }
            _ => error(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}

/// Confluence's error body.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(
        status,
        &json!({"statusCode": status.as_u16(),
                "data": {"authorized": status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                         "valid": false, "errors": [], "successful": false},
                "message": message}),
    )
}

fn group_json(name: &str) -> Value {
    json!({"type": "group", "name": name, "_links": {"self": format!("/rest/api/group/{name}")}})
}

/// A Person; e-mail only with `expand=details.personal`, status only with `expand=status`.
fn person(u: &ConfluenceUser, expand: &str) -> Value {
    let mut v = json!({"type": "known", "username": u.username, "userKey": u.key,
        "profilePicture": {"path": "/images/icons/profilepics/default.png", "width": 48, "height": 48, "isDefault": true},
        "displayName": u.full_name, "_links": {"base": "", "context": "", "self": format!("/rest/api/user?key={}", u.key)}});
    if expand.contains("details.personal") {
        v["details"] = json!({"personal": {"email": u.email}});
    }
    if expand.contains("status") {
        v["status"] = json!(if u.active { "Active" } else { "Deactivated" });
    }
    v
}

fn page(q: &[(String, String)], all: Vec<Value>, path: &str, truncate: bool) -> Response<Bytes> {
    let start = num(q, "start", 0);
    let limit = num(q, "limit", MAX_LIMIT).clamp(1, MAX_LIMIT);
    let total = all.len();
    let take = if truncate { limit / 2 } else { limit };
    let results: Vec<Value> = all.into_iter().skip(start).take(take).collect();
    let mut links = json!({"base": "", "context": "", "self": path});
    if !truncate && start + limit < total {
        links["next"] = json!(format!("{path}?start={}&limit={limit}", start + limit));
    }
    json(
        StatusCode::OK,
        &json!({"results": results.clone(), "start": start, "limit": limit, "size": results.len(), "_links": links}),
    )
}

fn create_user(s: &mut ConfluenceState, b: &Value) -> Response<Bytes> {
    let Some(name) = b.get("userName").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "userName is required");
    };
    let bad = name.is_empty()
        || name != name.to_lowercase()
        || name
            .chars()
            .any(|c| c.is_whitespace() || "\\,+<>'\"".contains(c))
        || name == "anonymous";
    if bad {
        return error(
            StatusCode::BAD_REQUEST,
            "Username must be lowercase and must not contain whitespace or any of \\ , + < > ' \"",
        );
    }
    let has_password = b
        .get("password")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty());
    let notify = b
        .get("notifyViaEmail")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !has_password && !notify {
        return error(
            StatusCode::BAD_REQUEST,
            "Either password or notifyViaEmail is required",
        );
    }
    if s.users.contains_key(name) {
        return error(StatusCode::CONFLICT, "User already exists");
    }
    if s.users.values().filter(|u| u.active).count() >= s.licence_seats {
        return error(StatusCode::PAYMENT_REQUIRED, "License limit exceeded");
    }
    let email = str_field(b, "email");
    let full = b.get("fullName").and_then(Value::as_str).unwrap_or(name);
    s.insert_user(name, email, full);
    let key = s.users.get(name).map(|u| u.key.clone()).unwrap_or_default();
    json(StatusCode::CREATED, &json!({"userKey": key}))
}
