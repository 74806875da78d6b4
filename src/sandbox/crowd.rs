//! Crowd emulator: `/rest/usermanagement/1` users, groups, direct memberships and
//! search, with Crowd's statuses and `{reason,message}` errors (reference §4 and the
//! §9 checklist: application Basic auth, JSON only when asked for, full-object PUT
//! whose `name` must match, 201 + Location with no body, CWD-4433 empty-200 for an
//! unknown user's groups, and the application's allowed remote addresses).
// Emulator answers travel as `Err(Response)`; their size does not matter off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::atlassian::{
    body_json, mutate, num, param, seed_directory, snapshot, str_field, BadCredentials, Caller,
    Gate, SeedDirectory,
};
use super::http::{empty, json, query_pairs, serve_shared, PeerAddr, Running};

/// One Crowd user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrowdUser {
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub email: String,
    pub active: bool,
    pub key: String,
}

/// Everything the emulator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrowdState {
    /// Users by lowercase name.
    pub users: BTreeMap<String, CrowdUser>,
    /// Groups by name, members by lowercase user name.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
}

impl CrowdState {
    /// Adds a user directly (seeding).
    pub fn insert_user(&mut self, name: &str, email: &str, display: &str) {
        self.next_id += 1;
        let (first, last) = display.split_once(' ').unwrap_or((display, ""));
        self.users.insert(
            name.to_lowercase(),
            CrowdUser {
                name: name.to_string(),
                first_name: first.to_string(),
                last_name: last.to_string(),
                display_name: display.to_string(),
                email: email.to_string(),
                active: true,
                key: format!("32769:{}", self.next_id),
            },
        );
    }

    /// Adds a membership directly (seeding); creates the group if needed.
    pub fn insert_member(&mut self, group: &str, name: &str) {
        self.groups
            .entry(group.to_string())
            .or_default()
            .insert(name.to_lowercase());
    }
}

impl SeedDirectory for CrowdState {
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

/// Seed data: `applications` are `(application name, application password)`.
#[derive(Debug, Clone)]
pub struct CrowdSeed {
    /// Crowd applications `(name, application password)` allowed to call.
    pub applications: Vec<(String, String)>,
    /// `(username, email, display name)`.
    pub users: Vec<(String, String, String)>,
    /// `(group, member usernames)`.
    pub groups: Vec<(String, Vec<String>)>,
    /// Addresses the application may call from (Crowd's "remote addresses").
    pub allowed_addresses: Vec<ipnet::IpNet>,
}

impl CrowdSeed {
    /// Adds the users and groups of a shared [`Fixture`](crate::sandbox::atlassian::Fixture).
    pub fn with_fixture(mut self, fixture: &crate::sandbox::atlassian::Fixture) -> Self {
        fixture.extend_into(&mut self.users, &mut self.groups);
        self
    }
}

impl Default for CrowdSeed {
    fn default() -> Self {
        CrowdSeed {
            applications: vec![("usher".into(), "app-password".into())],
            users: vec![],
            groups: vec![("crowd-users".into(), vec![])],
            allowed_addresses: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

/// A running Crowd emulator.
#[derive(Debug)]
pub struct CrowdEmulator {
    state: Mutex<CrowdState>,
    allowed: Vec<ipnet::IpNet>,
    /// Credentials, faults, rate limit and garbling.
    pub gate: Gate,
}

const MAX_RESULTS: usize = 1000;

impl CrowdEmulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(seed: CrowdSeed) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        seed: CrowdSeed,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let mut state = CrowdState::default();
        seed_directory(&mut state, &[], &seed.users, &seed.groups);
        let emu = Arc::new(CrowdEmulator {
            state: Mutex::new(state),
            allowed: seed.allowed_addresses.clone(),
            gate: Gate::from_seed(&seed.applications, &[], BadCredentials::Reject),
        });
        let running =
            serve_shared(addr, &emu, |e, req| async move { e.respond(req).await }).await?;
        Ok((emu, running))
    }

    /// A snapshot of the state.
    pub fn state(&self) -> CrowdState {
        snapshot(&self.state)
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut CrowdState) -> R) -> Option<R> {
        mutate(&self.state, f)
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        let resp = match self.gate.admit(&req, error_status).await {
            Err(resp) => return resp,
            Ok(Caller::Anonymous) => error(
                StatusCode::UNAUTHORIZED,
                "APPLICATION_ACCESS_DENIED",
                "Application failed to authenticate",
            ),
            Ok(Caller::User(app)) => {
                let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
                match peer {
                    Some(ip) if !self.allowed.iter().any(|n| n.contains(&ip)) => error(
                        StatusCode::FORBIDDEN,
                        "APPLICATION_ACCESS_DENIED",
                        &format!("Client with address \"{ip}\" is forbidden from making requests to the application, {app}."),
                    ),
                    _ => self.route(&req),
                }
            }
        };
        let wants_json = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json"));
        // Without `Accept: application/json` Crowd answers XML.
        let resp = if wants_json || resp.body().is_empty() {
            resp
        } else {
            let mut r = Response::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><user/>",
            ));
            *r.status_mut() = resp.status();
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            r
        };
        self.gate.finish(resp)
    }

    fn route(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path();
        let path = path.strip_prefix("/crowd").unwrap_or(path);
        let Some(rest) = path
            .strip_prefix("/rest/usermanagement/1/")
            .or_else(|| path.strip_prefix("/rest/usermanagement/latest/"))
        else {
            return error(StatusCode::NOT_FOUND, "ILLEGAL_ARGUMENT", "Not found");
        };
        let q = query_pairs(req);
        let truncate = self.gate.faults.truncate_pages();
        let Ok(mut s) = self.state.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "OPERATION_FAILED",
                "state poisoned",
            );
        };
        let username = param(&q, "username").unwrap_or_default();
        let groupname = param(&q, "groupname").unwrap_or_default();
        match (req.method().clone(), rest) {
            (Method::GET, "user") => match s.users.get(&username.to_lowercase()) {
                Some(u) => json(StatusCode::OK, &user_json(u)),
                None => user_not_found(&username),
            },
            (Method::POST, "user") => match body_json(req, error_status) {
                Ok(b) => create_user(&mut s, &b),
                Err(r) => r,
            },
            (Method::PUT, "user") => match body_json(req, error_status) {
                Ok(b) => replace_user(&mut s, &username, &b),
                Err(r) => r,
            },
            (Method::DELETE, "user") => {
                if s.users.remove(&username.to_lowercase()).is_none() {
                    return user_not_found(&username);
                }
                for m in s.groups.values_mut() {
                    m.remove(&username.to_lowercase());
                }
                empty(StatusCode::NO_CONTENT)
            }
            (Method::GET, "user/group/direct") => {
                // CWD-4433: an unknown user gets 200 with an empty list, not 404.
                let groups: Vec<Value> = s
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(&username.to_lowercase()))
                    .map(|(g, _)| json!({"link": link("group", g), "name": g}))
                    .collect();
                json(
                    StatusCode::OK,
                    &json!({"expand": "group", "groups": window(&q, groups, truncate)}),
                )
            }
            (Method::POST, "user/group/direct") => {
                let g = req_name(req);
                add_membership(&mut s, &g, &username, true)
            }
            (Method::POST, "group/user/direct") => {
                let u = req_name(req);
                add_membership(&mut s, &groupname, &u, false)
            }
            (Method::DELETE, "user/group/direct" | "group/user/direct") => {
                let removed = s
                    .groups
                    .get_mut(&groupname)
                    .is_some_and(|m| m.remove(&username.to_lowercase()));
                if removed {
                    empty(StatusCode::NO_CONTENT)
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        "MEMBERSHIP_NOT_FOUND",
                        &format!(
                            "The user <{username}> is not a direct member of group <{groupname}>"
                        ),
                    )
                }
            }
            (Method::GET, "group/user/direct") => {
                let Some(members) = s.groups.get(&groupname) else {
                    return group_not_found(&groupname);
                };
                let users: Vec<Value> = members
                    .iter()
                    .filter_map(|m| s.users.get(m))
                    .map(|u| json!({"link": link("user", &u.name), "name": u.name}))
                    .collect();
                json(
                    StatusCode::OK,
                    &json!({"expand": "user", "users": window(&q, users, truncate)}),
                )
            }
            (Method::GET, "group") => match s.groups.get(&groupname) {
                Some(_) => json(StatusCode::OK, &group_json(&groupname)),
                None => group_not_found(&groupname),
            },
            (Method::POST, "group") => match body_json(req, error_status) {
                Ok(b) => {
                    let Some(name) = b
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                    else {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_GROUP",
                            "A group name is required",
                        );
                    };
                    if s.groups.contains_key(name) {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_GROUP",
                            &format!("Group <{name}> already exists"),
                        );
                    }
                    s.groups.insert(name.to_string(), BTreeSet::new());
                    created(&link("group", name))
                }
                Err(r) => r,
            },
            (Method::DELETE, "group") => match s.groups.remove(&groupname) {
                Some(_) => empty(StatusCode::NO_CONTENT),
                None => group_not_found(&groupname),
            },
            (Method::GET, "search") => search(&s, &q, truncate),
            _ => error(StatusCode::NOT_FOUND, "ILLEGAL_ARGUMENT", "Not found"),
        }
    }
}

/// Crowd's error body.
pub fn error(status: StatusCode, reason: &str, message: &str) -> Response<Bytes> {
    json(status, &json!({"reason": reason, "message": message}))
}

fn error_status(status: StatusCode, message: &str) -> Response<Bytes> {
    let reason = match status {
        StatusCode::UNAUTHORIZED => "APPLICATION_ACCESS_DENIED",
        StatusCode::BAD_REQUEST => "ILLEGAL_ARGUMENT",
        _ => "OPERATION_FAILED",
    };
    error(status, reason, message)
}

fn user_not_found(name: &str) -> Response<Bytes> {
    missing(StatusCode::NOT_FOUND, "User", name)
}

fn group_not_found(name: &str) -> Response<Bytes> {
    missing(StatusCode::NOT_FOUND, "Group", name)
}

/// Crowd's `USER_NOT_FOUND` / `GROUP_NOT_FOUND` error for `kind` ("User" or "Group"):
/// 404 when the path names it, 400 when the body does.
fn missing(status: StatusCode, kind: &str, name: &str) -> Response<Bytes> {
    error(
        status,
        &format!("{}_NOT_FOUND", kind.to_uppercase()),
        &format!("{kind} <{name}> does not exist"),
    )
}

fn link(kind: &str, name: &str) -> Value {
    let key = if kind == "user" {
        "username"
    } else {
        "groupname"
    };
    json!({"href": format!("/crowd/rest/usermanagement/1/{kind}?{key}={name}"), "rel": "self"})
}

fn created(link: &Value) -> Response<Bytes> {
    let mut r = empty(StatusCode::CREATED);
    if let Some(v) = link["href"]
        .as_str()
        .and_then(|h| HeaderValue::from_str(h).ok())
    {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

fn user_json(u: &CrowdUser) -> Value {
    json!({"expand": "attributes", "link": link("user", &u.name), "name": u.name,
           "first-name": u.first_name, "last-name": u.last_name, "display-name": u.display_name,
           "email": u.email, "password": {"link": {"href": "", "rel": "edit"}},
           "key": u.key, "active": u.active})
}

fn group_json(name: &str) -> Value {
    json!({"link": link("group", name), "name": name, "description": "", "type": "GROUP", "active": true,
           "attributes": {"link": link("group", name), "attributes": []}})
}

fn req_name(req: &Request<Bytes>) -> String {
    serde_json::from_slice::<Value>(req.body())
        .ok()
        .and_then(|b| b.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn window(q: &[(String, String)], all: Vec<Value>, truncate: bool) -> Vec<Value> {
    let start = num(q, "start-index", 0);
    let max = num(q, "max-results", MAX_RESULTS).clamp(1, MAX_RESULTS);
    let take = if truncate { max / 2 } else { max };
    all.into_iter().skip(start).take(take).collect()
}

fn text(b: &Value, k: &str) -> String {
    str_field(b, k).to_string()
}

fn create_user(s: &mut CrowdState, b: &Value) -> Response<Bytes> {
    let name = text(b, "name");
    if name.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_USER",
            "User name must not be empty",
        );
    }
    if b.pointer("/password/value")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_CREDENTIAL",
            "Password must not be empty",
        );
    }
    if s.users.contains_key(&name.to_lowercase()) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_USER",
            &format!("User <{name}> already exists"),
        );
    }
    s.next_id += 1;
    s.users.insert(
        name.to_lowercase(),
        CrowdUser {
            name: name.clone(),
            first_name: text(b, "first-name"),
            last_name: text(b, "last-name"),
            display_name: text(b, "display-name"),
            email: text(b, "email"),
            active: b.get("active").and_then(Value::as_bool).unwrap_or(false),
            key: format!("32769:{}", s.next_id),
        },
    );
    created(&link("user", &name))
}

/// PUT replaces the whole user: fields left out become empty.
fn replace_user(s: &mut CrowdState, username: &str, b: &Value) -> Response<Bytes> {
    if !text(b, "name").eq_ignore_ascii_case(username) {
        return error(
            StatusCode::BAD_REQUEST,
            "ILLEGAL_ARGUMENT",
            "The user name in the body does not match the username parameter",
        );
    }
    let Some(u) = s.users.get_mut(&username.to_lowercase()) else {
        return user_not_found(username);
    };
    u.first_name = text(b, "first-name");
    u.last_name = text(b, "last-name");
    u.display_name = text(b, "display-name");
    u.email = text(b, "email");
    u.active = b.get("active").and_then(Value::as_bool).unwrap_or(false);
    empty(StatusCode::NO_CONTENT)
}

fn add_membership(s: &mut CrowdState, group: &str, user: &str, user_side: bool) -> Response<Bytes> {
    let user_known = s.users.contains_key(&user.to_lowercase());
    let group_known = s.groups.contains_key(group);
    // The entity named in the body is a 400 when missing; the one in the path a 404.
    match (user_known, group_known, user_side) {
        (false, _, true) => return user_not_found(user),
        (_, false, true) => return missing(StatusCode::BAD_REQUEST, "Group", group),
        (_, false, false) => return group_not_found(group),
        (false, _, false) => return missing(StatusCode::BAD_REQUEST, "User", user),
        _ => {}
    }
    let inserted = s
        .groups
        .get_mut(group)
        .is_some_and(|m| m.insert(user.to_lowercase()));
    if !inserted {
        return error(
            StatusCode::CONFLICT,
            "MEMBERSHIP_ALREADY_EXISTS",
            &format!("User <{user}> is already a direct member of <{group}>"),
        );
    }
    created(&link("group", group))
}

/// `restriction` supports `name="x"`, `email="x"` and empty (all); `expand=user` gives
/// full user objects, otherwise names only.
fn search(s: &CrowdState, q: &[(String, String)], truncate: bool) -> Response<Bytes> {
    let restriction = param(q, "restriction").unwrap_or_default();
    let cond = restriction.split_once('=').map(|(k, v)| {
        (
            k.trim().to_lowercase(),
            v.trim().trim_matches('"').to_lowercase(),
        )
    });
    let expand = param(q, "expand").unwrap_or_default();
    match param(q, "entity-type").as_deref() {
        Some("user") => {
            let users: Vec<Value> = s
                .users
                .values()
                .filter(|u| match &cond {
                    None => true,
                    Some((k, v)) if k == "email" => u.email.to_lowercase() == *v,
                    Some((k, v)) if k == "name" => u.name.to_lowercase() == *v,
                    Some(_) => false,
                })
                .map(|u| {
                    if expand.contains("user") {
                        user_json(u)
                    } else {
                        json!({"link": link("user", &u.name), "name": u.name})
                    }
                })
                .collect();
            json(
                StatusCode::OK,
                &json!({"expand": "user", "users": window(q, users, truncate)}),
            )
        }
        Some("group") => {
            let groups: Vec<Value> = s
                .groups
                .keys()
                .filter(|g| match &cond {
                    None => true,
                    Some((k, v)) if k == "name" => g.to_lowercase() == *v,
                    Some(_) => false,
                })
                .map(|g| json!({"link": link("group", g), "name": g}))
                .collect();
            json(
                StatusCode::OK,
                &json!({"expand": "group", "groups": window(q, groups, truncate)}),
            )
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "ILLEGAL_ARGUMENT",
            "entity-type must be user or group",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_entities_answer_in_crowds_error_shape() {
        let body = |r: &Response<Bytes>| serde_json::from_slice::<Value>(r.body()).unwrap();
        let r = missing(StatusCode::BAD_REQUEST, "Group", "g1");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body(&r),
            json!({"reason": "GROUP_NOT_FOUND", "message": "Group <g1> does not exist"})
        );
        let r = user_not_found("Ann");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body(&r),
            json!({"reason": "USER_NOT_FOUND", "message": "User <Ann> does not exist"})
        );
    }
}
