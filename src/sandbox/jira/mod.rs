//! Jira Data Center emulator: the REST v2 user, group, membership, project-lead and
//! component-lead endpoints with Jira's status codes, bodies, paging and quirks
//! (reference/atlassian.md §1 and the §9 checklist). In-memory, seeded, inspectable;
//! not an issue tracker, and never part of a production `usher serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;

mod handlers;

pub use handlers::error;
use handlers::*;

use crate::sandbox::atlassian::{
    body_json, mutate, param, seed_directory, snapshot, BadCredentials, Caller, Gate, SeedDirectory,
};
use crate::sandbox::http::{json, query_pairs, serve_shared, Running};

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
    /// Projects by key, with their leads.
    pub projects: BTreeMap<String, JiraProject>,
    /// Components by id, with their leads.
    pub components: BTreeMap<u64, JiraComponent>,
    next_id: u64,
    /// User key -> lowercase username, so member pages cost O(group) rather than
    /// O(users) at 100,000 accounts. A hint: a miss or a stale entry falls back
    /// to a scan, so code that edits `users` directly stays correct.
    by_key: BTreeMap<String, String>,
}

impl JiraState {
    /// The user with this username (any case).
    pub fn user(&self, name: &str) -> Option<&JiraUser> {
        self.users.get(&name.to_lowercase())
    }

    /// Member usernames of a group (sorted).
    pub fn members(&self, group: &str) -> BTreeSet<String> {
        self.groups
            .get(group)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| self.user_by_key(k))
                    .map(|u| u.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The user with this stable key.
    pub fn user_by_key(&self, key: &str) -> Option<&JiraUser> {
        if let Some(u) = self.by_key.get(key).and_then(|n| self.users.get(n)) {
            if u.key == key {
                return Some(u);
            }
        }
        self.users.values().find(|u| u.key == key)
    }

    /// Records where a user with `key` now lives (after create or rename).
    pub(super) fn index_key(&mut self, key: &str, name: &str) {
        self.by_key.insert(key.to_string(), name.to_lowercase());
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
        self.index_key(&key, name);
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

impl SeedDirectory for JiraState {
    fn seed_user(&mut self, name: &str, email: &str, display: &str) {
        self.insert_user(name, email, display, true);
    }

    fn seed_group(&mut self, group: &str) {
        self.groups.entry(group.to_string()).or_default();
    }

    fn seed_member(&mut self, group: &str, member: &str) {
        self.insert_member(group, member);
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
    /// Emulate Jira 10.3+ (GET /group removed -> 404; cursor-paged GET /user/list).
    pub v10: bool,
}

impl JiraSeed {
    /// Adds the users and groups of a shared [`Fixture`](crate::sandbox::atlassian::Fixture).
    pub fn with_fixture(mut self, fixture: &crate::sandbox::atlassian::Fixture) -> Self {
        fixture.extend_into(&mut self.users, &mut self.groups);
        self
    }
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
        seed_directory(&mut state, &seed.basic, &seed.users, &seed.groups);
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
        let emu = Arc::new(JiraEmulator {
            state: Mutex::new(state),
            gate: Gate::from_seed(&seed.basic, &seed.bearer, BadCredentials::Reject),
            admins: seed.admins.clone(),
            honours_active: seed.honours_active,
            v10: seed.v10,
        });
        let running =
            serve_shared(addr, &emu, |e, req| async move { e.respond(req).await }).await?;
        Ok((emu, running))
    }

    /// A snapshot of the state.
    pub fn state(&self) -> JiraState {
        snapshot(&self.state)
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut JiraState) -> R) -> Option<R> {
        mutate(&self.state, f)
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        // Outside the REST API the emulator is the demo's upstream web app: a page
        // showing who the proxy says you are and what Jira knows about you.
        if !req.uri().path().starts_with("/rest/") {
            let page = self
                .state
                .lock()
                .map(|s| whoami_page(&s, req.headers()))
                .unwrap_or_default();
            let mut resp = Response::new(Bytes::from(page));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return resp;
        }
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
            (Method::DELETE, ["user"]) => delete_user(&mut s, &q),
            (Method::DELETE, ["group"]) => delete_group(&mut s, &q),
            (Method::GET, ["user", "search"]) => search_users(&s, &q, truncate),
            (Method::GET, ["user", "list"]) if self.v10 => list_users(&s, &q),
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
