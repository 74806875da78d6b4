//! Bitbucket Data Center emulator: `/rest/api/1.0/admin/{users,groups,permissions}`
//! with Bitbucket's statuses, `{start,limit,isLastPage,nextPageStart}` paging, the
//! `{context,itemName}` shapes and its error body (reference §3 and the §9 checklist:
//! create by query params -> 204, create group -> 200, 409 duplicates, no deactivation;
//! sign-in needs LICENSED_USER directly or through a group). In-memory; never in production.
// Emulator answers travel as `Err(Response)`; their size does not matter off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::atlassian::{
    body_json, mutate, num, param, seed_directory, snapshot, str_field, BadCredentials, Caller,
    Gate, SeedDirectory,
};
use super::http::{empty, json, query_pairs, serve_shared, Running};

/// The group every new user joins when `addToDefaultGroup` is true; it holds LICENSED_USER.
pub const DEFAULT_GROUP: &str = "stash-users";

/// One Bitbucket user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitbucketUser {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub display_name: String,
    /// Directory flag; read-only over REST.
    pub active: bool,
}

/// Everything the emulator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitbucketState {
    /// Users by lowercase name.
    pub users: BTreeMap<String, BitbucketUser>,
    /// Groups by name, members by lowercase user name.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Global permissions granted directly to users (lowercase name -> permission).
    pub user_permissions: BTreeMap<String, String>,
    /// Global permissions granted to groups.
    pub group_permissions: BTreeMap<String, String>,
    /// Licensed users allowed; creating beyond answers 403.
    pub licence_seats: usize,
    next_id: u64,
}

impl BitbucketState {
    /// Adds a user directly (seeding).
    pub fn insert_user(&mut self, name: &str, email: &str, display: &str) {
        self.next_id += 1;
        self.users.insert(
            name.to_lowercase(),
            BitbucketUser {
                id: 100 + self.next_id,
                name: name.to_string(),
                email: email.to_string(),
                display_name: display.to_string(),
                active: true,
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

impl SeedDirectory for BitbucketState {
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

impl BitbucketState {
    /// Whether the user holds any global permission, directly or through a group:
    /// without one Bitbucket does not let them sign in.
    pub fn can_sign_in(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.user_permissions.contains_key(&name)
            || self
                .groups
                .iter()
                .any(|(g, m)| m.contains(&name) && self.group_permissions.contains_key(g))
    }

    /// Groups the user is a direct member of.
    pub fn groups_of(&self, name: &str) -> BTreeSet<String> {
        let name = name.to_lowercase();
        self.groups
            .iter()
            .filter(|(_, m)| m.contains(&name))
            .map(|(g, _)| g.clone())
            .collect()
    }
}

/// Seed data.
#[derive(Debug, Clone)]
pub struct BitbucketSeed {
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

impl BitbucketSeed {
    /// Adds the users and groups of a shared [`Fixture`](crate::sandbox::atlassian::Fixture).
    pub fn with_fixture(mut self, fixture: &crate::sandbox::atlassian::Fixture) -> Self {
        fixture.extend_into(&mut self.users, &mut self.groups);
        self
    }
}

impl Default for BitbucketSeed {
    fn default() -> Self {
        BitbucketSeed {
            basic: vec![("usher-bot".into(), "bot-password".into())],
            bearer: vec![("bot-pat".into(), "usher-bot".into())],
            admins: vec!["usher-bot".into()],
            users: vec![],
            groups: vec![(DEFAULT_GROUP.into(), vec![])],
            licence_seats: 10_000,
        }
    }
}

/// A running Bitbucket emulator.
#[derive(Debug)]
pub struct BitbucketEmulator {
    state: Mutex<BitbucketState>,
    /// Credentials, faults, rate limit and garbling.
    pub gate: Gate,
    admins: Vec<String>,
}

const MAX_LIMIT: usize = 1000;

impl BitbucketEmulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(seed: BitbucketSeed) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        seed: BitbucketSeed,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let mut state = BitbucketState {
            licence_seats: seed.licence_seats,
            ..BitbucketState::default()
        };
        state
            .group_permissions
            .insert(DEFAULT_GROUP.into(), "LICENSED_USER".into());
        for a in &seed.admins {
            state
                .user_permissions
                .insert(a.to_lowercase(), "SYS_ADMIN".into());
        }
        seed_directory(&mut state, &seed.basic, &seed.users, &seed.groups);
        let emu = Arc::new(BitbucketEmulator {
            state: Mutex::new(state),
            gate: Gate::from_seed(&seed.basic, &seed.bearer, BadCredentials::Reject),
            admins: seed.admins,
        });
        let running =
            serve_shared(addr, &emu, |e, req| async move { e.respond(req).await }).await?;
        Ok((emu, running))
    }

    /// A snapshot of the state.
    pub fn state(&self) -> BitbucketState {
        snapshot(&self.state)
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut BitbucketState) -> R) -> Option<R> {
        mutate(&self.state, f)
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        let resp = match self.gate.admit(&req, error).await {
            Err(resp) => return resp,
            Ok(Caller::Anonymous) => error(
                StatusCode::UNAUTHORIZED,
                "Authentication failed. Please check your credentials and try again.",
            ),
            Ok(Caller::User(u)) if !self.admins.contains(&u) => error(
                StatusCode::FORBIDDEN,
                "You are not permitted to access this resource",
            ),
            Ok(Caller::User(_)) => self.route(&req),
        };
        self.gate.finish(resp)
    }

    fn route(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path();
        let Some(rest) = path
            .strip_prefix("/rest/api/1.0/admin/")
            .or_else(|| path.strip_prefix("/rest/api/latest/admin/"))
        else {
            return error(StatusCode::NOT_FOUND, "Not found");
        };
        let q = query_pairs(req);
        let truncate = self.gate.faults.truncate_pages();
        let Ok(mut s) = self.state.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned");
        };
        let filter = param(&q, "filter").unwrap_or_default().to_lowercase();
        let m = req.method().clone();
        match (m, rest) {
            (Method::GET, "users") => {
                let all: Vec<Value> = s
                    .users
                    .values()
                    .filter(|u| {
                        u.name.to_lowercase().contains(&filter)
                            || u.display_name.to_lowercase().contains(&filter)
                            || u.email.to_lowercase().contains(&filter)
                    })
                    .map(user_json)
                    .collect();
                page(&q, all, truncate)
            }
            (Method::POST, "users") => create_user(&mut s, &q),
            (Method::PUT, "users") => match body_json(req, error) {
                Ok(b) => {
                    let name = str_field(&b, "name").to_lowercase();
                    let Some(u) = s.users.get_mut(&name) else {
                        return no_such_user(&name);
                    };
                    if let Some(d) = b.get("displayName").and_then(Value::as_str) {
                        u.display_name = d.to_string();
                    }
                    if let Some(e) = b.get("email").and_then(Value::as_str) {
                        if !e.contains('@') {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "The e-mail address is invalid.",
                            );
                        }
                        u.email = e.to_string();
                    }
                    json(StatusCode::OK, &user_json(u))
                }
                Err(r) => r,
            },
            (Method::POST, "users/rename") => match body_json(req, error) {
                Ok(b) => {
                    let old = str_field(&b, "name").to_lowercase();
                    let new = str_field(&b, "newName").to_string();
                    if new.is_empty() || s.users.contains_key(&new.to_lowercase()) {
                        return error(StatusCode::BAD_REQUEST, "The new name is empty or taken.");
                    }
                    let Some(mut u) = s.users.remove(&old) else {
                        return no_such_user(&old);
                    };
                    u.name = new.clone();
                    let key = new.to_lowercase();
                    for m in s.groups.values_mut() {
                        if m.remove(&old) {
                            m.insert(key.clone());
                        }
                    }
                    if let Some(p) = s.user_permissions.remove(&old) {
                        s.user_permissions.insert(key.clone(), p);
                    }
                    let body = user_json(&u);
                    s.users.insert(key, u);
                    json(StatusCode::OK, &body)
                }
                Err(r) => r,
            },
            (Method::POST, "users/add-groups") => match body_json(req, error) {
                Ok(b) => {
                    let user = str_field(&b, "user").to_lowercase();
                    let groups: Vec<String> = b
                        .get("groups")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|g| g.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    if !s.users.contains_key(&user) {
                        return no_such_user(&user);
                    }
                    if let Some(g) = groups.iter().find(|g| !s.groups.contains_key(*g)) {
                        return no_such_group(g);
                    }
                    for g in groups {
                        s.insert_member(&g, &user);
                    }
                    empty(StatusCode::OK)
                }
                Err(r) => r,
            },
            // `{context,itemName}` means (user, group) under users/ and (group, user)
            // under groups/; all but users/remove-group are deprecated since 2.10, still served.
            (
                Method::POST,
                path @ ("users/remove-group" | "users/add-group" | "groups/add-user"
                | "groups/remove-user"),
            ) => match body_json(req, error) {
                Ok(b) => {
                    let context = str_field(&b, "context");
                    let item = str_field(&b, "itemName");
                    let (user, group) = if path.starts_with("users/") {
                        (context, item)
                    } else {
                        (item, context)
                    };
                    let user = user.to_lowercase();
                    if !s.users.contains_key(&user) {
                        return no_such_user(&user);
                    }
                    let Some(m) = s.groups.get_mut(group) else {
                        return no_such_group(group);
                    };
                    if path.contains("/remove-") {
                        m.remove(&user);
                    } else {
                        m.insert(user);
                    }
                    empty(StatusCode::OK)
                }
                Err(r) => r,
            },
            (Method::GET, "users/more-members") => {
                let user = param(&q, "context").unwrap_or_default();
                page(&q, group_page(s.groups_of(&user), &filter), truncate)
            }
            (Method::GET, "groups") => page(&q, group_page(s.groups.keys(), &filter), truncate),
            (Method::POST, "groups") => {
                let Some(name) = param(&q, "name").filter(|n| !n.is_empty()) else {
                    return error(StatusCode::BAD_REQUEST, "A group name is required.");
                };
                if s.groups.contains_key(&name) {
                    return error(
                        StatusCode::CONFLICT,
                        &format!("A group named '{name}' already exists."),
                    );
                }
                s.groups.insert(name.clone(), BTreeSet::new());
                json(StatusCode::OK, &json!({"name": name, "deletable": true}))
            }
            (Method::GET, "groups/more-members") => {
                let group = param(&q, "context").unwrap_or_default();
                let Some(members) = s.groups.get(&group) else {
                    return no_such_group(&group);
                };
                let all: Vec<Value> = members
                    .iter()
                    .filter_map(|m| s.users.get(m))
                    .filter(|u| u.name.to_lowercase().contains(&filter))
                    .map(user_json)
                    .collect();
                page(&q, all, truncate)
            }
            (Method::GET, "permissions/users") => {
                let all: Vec<Value> = s
                    .user_permissions
                    .iter()
                    .filter(|(u, _)| u.contains(&filter))
                    .filter_map(|(u, p)| {
                        s.users
                            .get(u)
                            .map(|u| json!({"user": user_json(u), "permission": p}))
                    })
                    .collect();
                page(&q, all, truncate)
            }
            (Method::PUT, "permissions/users") => {
                let (Some(name), Some(p)) = (param(&q, "name"), param(&q, "permission")) else {
                    return error(StatusCode::BAD_REQUEST, "name and permission are required.");
                };
                if !s.users.contains_key(&name.to_lowercase()) {
                    return no_such_user(&name);
                }
                s.user_permissions.insert(name.to_lowercase(), p);
                empty(StatusCode::NO_CONTENT)
            }
            (Method::DELETE, "permissions/users") => {
                let name = param(&q, "name").unwrap_or_default().to_lowercase();
                if !s.users.contains_key(&name) {
                    return no_such_user(&name);
                }
                s.user_permissions.remove(&name);
                empty(StatusCode::NO_CONTENT)
            }
            _ => error(StatusCode::NOT_FOUND, "Not found"),
        }
    }
}

/// Bitbucket's RestErrors body.
pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    json(
        status,
        &json!({"errors": [{"context": null, "message": message,
                            "exceptionName": "com.atlassian.bitbucket.ServiceException"}]}),
    )
}

/// Group names matching the `filter` query (case-insensitive substring), as the group
/// objects the admin group listings page through.
fn group_page<G: AsRef<str>>(groups: impl IntoIterator<Item = G>, filter: &str) -> Vec<Value> {
    groups
        .into_iter()
        .filter(|g| g.as_ref().to_lowercase().contains(filter))
        .map(|g| json!({"name": g.as_ref(), "deletable": true}))
        .collect()
}

/// The 404 for a user name that is not there.
fn no_such_user(name: &str) -> Response<Bytes> {
    error(
        StatusCode::NOT_FOUND,
        &format!("User {name} does not exist"),
    )
}

/// The 404 for a group name that is not there.
fn no_such_group(name: &str) -> Response<Bytes> {
    error(
        StatusCode::NOT_FOUND,
        &format!("Group {name} does not exist"),
    )
}

fn user_json(u: &BitbucketUser) -> Value {
    json!({"name": u.name, "emailAddress": u.email, "id": u.id, "displayName": u.display_name,
           "active": u.active, "slug": u.name.to_lowercase(), "type": "NORMAL",
           "directoryName": "Bitbucket Internal Directory", "deletable": true,
           "mutableDetails": true, "mutableGroups": true})
}

fn page(q: &[(String, String)], all: Vec<Value>, truncate: bool) -> Response<Bytes> {
    let start = num(q, "start", 0);
    let limit = num(q, "limit", 25).clamp(1, MAX_LIMIT);
    let take = if truncate { limit / 2 } else { limit };
    let total = all.len();
    let values: Vec<Value> = all.into_iter().skip(start).take(take).collect();
    let is_last = truncate || start + limit >= total;
    let mut body = json!({"size": values.len(), "limit": limit, "isLastPage": is_last,
                          "start": start, "values": values});
    if !is_last {
        body["nextPageStart"] = json!(start + limit);
    }
    json(StatusCode::OK, &body)
}

fn create_user(s: &mut BitbucketState, q: &[(String, String)]) -> Response<Bytes> {
    let (Some(name), Some(display), Some(email)) = (
        param(q, "name").filter(|v| !v.is_empty()),
        param(q, "displayName").filter(|v| !v.is_empty()),
        param(q, "emailAddress").filter(|v| v.contains('@')),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "name, displayName and a valid emailAddress are required.",
        );
    };
    let notify = param(q, "notify").is_some_and(|v| v == "true");
    if param(q, "password").is_none_or(|p| p.is_empty()) && !notify {
        return error(
            StatusCode::BAD_REQUEST,
            "A password is required unless notify is true.",
        );
    }
    if s.users.contains_key(&name.to_lowercase()) {
        return error(
            StatusCode::CONFLICT,
            &format!("A user with the name '{name}' already exists."),
        );
    }
    let licensed = s.users.keys().filter(|u| s.can_sign_in(u)).count();
    let to_default = param(q, "addToDefaultGroup").is_none_or(|v| v != "false");
    if to_default && licensed >= s.licence_seats {
        return error(StatusCode::FORBIDDEN, "The licence limit has been reached.");
    }
    s.insert_user(&name, &email, &display);
    if to_default {
        s.insert_member(DEFAULT_GROUP, &name);
    }
    empty(StatusCode::NO_CONTENT)
}
