//! Atlassian Cloud SCIM 2.0 directory emulator (`/scim/directory/{id}/...`, RFC
//! 7643/7644 with Atlassian's limits, reference §5 and the §9 checklist): a single
//! `eq` filter on userName/externalId (Users) or displayName (Groups), 1-based
//! `startIndex`, at most 100 per page, 409 on duplicates, 404 after DELETE, PATCH
//! `Operations` matched case-insensitively. In-memory; never in production.
// Emulator answers travel as `Err(Response)`; their size does not matter off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

mod discovery;
mod patch;
mod resources;

use discovery::{resource_type, schema_group, schema_user, service_provider_config};
use patch::patch;
use resources::{
    check_members, create_group, create_user, has_schema, list, list_of, parse_filter, project,
    replace, with_groups,
};

use crate::sandbox::atlassian::{
    body_json, decode_seg, mutate, snapshot, BadCredentials, Caller, Gate,
};
use crate::sandbox::http::{empty, json, query_pairs, serve_shared, Running};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Atlassian serves at most 100 resources per page.
pub const MAX_PAGE: usize = 100;

/// Everything the emulator knows: resources as SCIM JSON objects, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScimState {
    /// User resources by id.
    pub users: BTreeMap<String, Value>,
    /// Group resources by id.
    pub groups: BTreeMap<String, Value>,
    next_id: u64,
}

impl ScimState {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:08x}-5f1c-4d2a-9a4e-{:012x}",
            self.next_id * 7919,
            self.next_id
        )
    }

    /// The user whose userName equals `name` (case-insensitive, as Atlassian).
    pub fn user_by_name(&self, name: &str) -> Option<&Value> {
        self.users.values().find(|u| {
            u["userName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The group whose displayName equals `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&Value> {
        self.groups
            .values()
            .find(|g| g["displayName"].as_str() == Some(name))
    }

    /// userNames of a group's members (sorted).
    pub fn member_names(&self, group: &str) -> Vec<String> {
        let Some(g) = self.group_by_name(group) else {
            return Vec::new();
        };
        let mut out: Vec<String> = members(g)
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter_map(|u| u["userName"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out
    }

    /// Adds a user directly (seeding); returns its id.
    pub fn insert_user(&mut self, user_name: &str, email: &str, display: &str) -> String {
        let id = self.new_id();
        let mut u = json!({"schemas": [USER], "userName": user_name, "displayName": display,
            "active": true, "emails": [{"value": email, "type": "work", "primary": true}]});
        stamp(&mut u, &id, "User");
        self.users.insert(id.clone(), u);
        id
    }

    /// Adds a membership directly (seeding); creates the group if needed.
    pub fn insert_member(&mut self, group: &str, user_name: &str) {
        let Some(uid) = self
            .user_by_name(user_name)
            .and_then(|u| u["id"].as_str())
            .map(str::to_string)
        else {
            return;
        };
        let gid = match self
            .group_by_name(group)
            .and_then(|g| g["id"].as_str())
            .map(str::to_string)
        {
            Some(gid) => gid,
            None => {
                let gid = self.new_id();
                let mut g = json!({"schemas": [GROUP], "displayName": group, "members": []});
                stamp(&mut g, &gid, "Group");
                self.groups.insert(gid.clone(), g);
                gid
            }
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            if !members(g).contains(&uid) {
                push_member(g, &uid, user_name);
            }
        }
    }
}

fn members(g: &Value) -> Vec<String> {
    g["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn push_member(g: &mut Value, id: &str, display: &str) {
    if !g["members"].is_array() {
        g["members"] = json!([]);
    }
    if let Some(a) = g["members"].as_array_mut() {
        a.push(json!({"value": id, "display": display, "type": "User"}));
    }
}

fn stamp(v: &mut Value, id: &str, kind: &str) {
    v["id"] = json!(id);
    let version = v["meta"]["version"].as_str().map(str::to_string);
    let n = version
        .and_then(|s| {
            s.trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        + 1;
    let created = v["meta"]["created"]
        .as_str()
        .unwrap_or("2026-01-01T00:00:00Z")
        .to_string();
    let plural = if kind == "User" { "Users" } else { "Groups" };
    v["meta"] = json!({"resourceType": kind, "created": created, "lastModified": "2026-01-01T00:00:00Z",
                       "location": format!("/{plural}/{id}"), "version": format!("W/\"{n}\"")});
}

/// Seed data.
#[derive(Debug, Clone)]
pub struct ScimSeed {
    /// Directory API keys accepted as bearer tokens.
    pub tokens: Vec<String>,
    /// The `{directoryId}` in the path.
    pub directory_id: String,
    /// `(userName, email, display name)`.
    pub users: Vec<(String, String, String)>,
    /// `(group displayName, member userNames)`.
    pub groups: Vec<(String, Vec<String>)>,
}

impl ScimSeed {
    /// Adds the users and groups of a shared [`Fixture`](crate::sandbox::atlassian::Fixture).
    pub fn with_fixture(mut self, fixture: &crate::sandbox::atlassian::Fixture) -> Self {
        fixture.extend_into(&mut self.users, &mut self.groups);
        self
    }
}

impl Default for ScimSeed {
    fn default() -> Self {
        ScimSeed {
            tokens: vec!["directory-key".into()],
            directory_id: "d1r3ct0ry".into(),
            users: vec![],
            groups: vec![],
        }
    }
}

/// A running SCIM emulator.
#[derive(Debug)]
pub struct ScimEmulator {
    state: Mutex<ScimState>,
    /// Credentials, faults, rate limit and garbling.
    pub gate: Gate,
    prefix: String,
}

impl ScimEmulator {
    /// Starts on an ephemeral loopback port; the SCIM base is `url() + base_path()`.
    pub async fn start(seed: ScimSeed) -> std::io::Result<(Arc<Self>, Running)> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        seed: ScimSeed,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let mut state = ScimState::default();
        for (n, e, d) in &seed.users {
            state.insert_user(n, e, d);
        }
        for (g, ms) in &seed.groups {
            let gid = state.new_id();
            let mut v = json!({"schemas": [GROUP], "displayName": g, "members": []});
            stamp(&mut v, &gid, "Group");
            state.groups.insert(gid, v);
            for m in ms {
                state.insert_member(g, m);
            }
        }
        let bearer: Vec<(&str, &str)> = seed
            .tokens
            .iter()
            .map(|t| (t.as_str(), "directory"))
            .collect();
        let emu = Arc::new(ScimEmulator {
            state: Mutex::new(state),
            gate: Gate::new(&[], &bearer, BadCredentials::Reject),
            prefix: format!("/scim/directory/{}", seed.directory_id),
        });
        let running =
            serve_shared(addr, &emu, |e, req| async move { e.respond(req).await }).await?;
        Ok((emu, running))
    }

    /// The path of the SCIM base (`/scim/directory/{id}`).
    pub fn base_path(&self) -> &str {
        &self.prefix
    }

    /// A snapshot of the state.
    pub fn state(&self) -> ScimState {
        snapshot(&self.state)
    }

    /// Changes the state directly (seeding in tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ScimState) -> R) -> Option<R> {
        mutate(&self.state, f)
    }

    async fn respond(&self, req: Request<Bytes>) -> Response<Bytes> {
        let resp = match self.gate.admit(&req, error_plain).await {
            Err(mut resp) => {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert(
                        "www-authenticate",
                        HeaderValue::from_static("Bearer realm=\"SCIM\""),
                    );
                }
                return resp;
            }
            Ok(Caller::Anonymous) => {
                let mut r = error_plain(
                    StatusCode::UNAUTHORIZED,
                    "Authorization failure. The authorization header is invalid or missing",
                );
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer realm=\"SCIM\""),
                );
                r
            }
            Ok(Caller::User(_)) => self.route(&req),
        };
        let mut resp = resp;
        if !resp.body().is_empty() && resp.headers().get(http::header::CONTENT_TYPE).is_some() {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/scim+json"),
            );
        }
        self.gate.finish(resp)
    }

    fn route(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let Some(rest) = req.uri().path().strip_prefix(self.prefix.as_str()) else {
            return error(StatusCode::NOT_FOUND, None, "Unknown directory");
        };
        let segs: Vec<String> = rest.trim_matches('/').split('/').map(decode_seg).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let q = query_pairs(req);
        let truncate = self.gate.faults.truncate_pages();
        let Ok(mut s) = self.state.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, None, "state poisoned");
        };
        let base = self.prefix.clone();
        let m = req.method().clone();
        let resp = match (m, segs.as_slice()) {
            (Method::GET, ["ServiceProviderConfig"]) => {
                json(StatusCode::OK, &service_provider_config())
            }
            (Method::GET, ["ResourceTypes"]) => {
                list_of(vec![resource_type("User"), resource_type("Group")])
            }
            (Method::GET, ["ResourceTypes", name @ ("User" | "Group")]) => {
                json(StatusCode::OK, &resource_type(name))
            }
            (Method::GET, ["Schemas"]) => list_of(vec![schema_user(), schema_group()]),
            (Method::GET, ["Schemas", id]) if *id == USER => json(StatusCode::OK, &schema_user()),
            (Method::GET, ["Schemas", id]) if *id == GROUP => json(StatusCode::OK, &schema_group()),
            (m, ["ServiceProviderConfig" | "ResourceTypes" | "Schemas"]) if m != Method::GET => {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    None,
                    "The discovery endpoints are read-only",
                )
            }
            (Method::GET, [kind @ ("Users" | "Groups")]) => list(&s, kind, &q, truncate),
            (Method::POST, ["Users"]) => match body_json(req, error_plain) {
                Ok(b) => create_user(&mut s, b),
                Err(r) => r,
            },
            (Method::POST, ["Groups"]) => match body_json(req, error_plain) {
                Ok(b) => create_group(&mut s, b),
                Err(r) => r,
            },
            (Method::GET, [kind @ ("Users" | "Groups"), id]) => match table(&s, kind).get(*id) {
                Some(v) => json(StatusCode::OK, &project(&with_groups(&s, v), &q)),
                None => not_found(kind, id),
            },
            (Method::PUT, [kind @ ("Users" | "Groups"), id]) => match body_json(req, error_plain) {
                Ok(b) => replace(&mut s, kind, id, b),
                Err(r) => r,
            },
            (Method::PATCH, [kind @ ("Users" | "Groups"), id]) => match body_json(req, error_plain)
            {
                Ok(b) => patch(&mut s, kind, id, &b),
                Err(r) => r,
            },
            (Method::DELETE, [kind @ ("Users" | "Groups"), id]) => {
                let removed = table_mut(&mut s, kind).remove(*id).is_some();
                if !removed {
                    return not_found(kind, id);
                }
                if *kind == "Users" {
                    for g in s.groups.values_mut() {
                        if let Some(a) = g.get_mut("members").and_then(Value::as_array_mut) {
                            a.retain(|m| m["value"].as_str() != Some(*id));
                        }
                    }
                }
                empty(StatusCode::NO_CONTENT)
            }
            _ => error(StatusCode::NOT_FOUND, None, "Resource not found"),
        };
        absolutize(resp, &base)
    }
}

/// Makes `meta.location` absolute under the directory prefix.
fn absolutize(resp: Response<Bytes>, base: &str) -> Response<Bytes> {
    let (parts, body) = resp.into_parts();
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return Response::from_parts(parts, body);
    };
    fix_location(&mut v, base);
    if let Some(a) = v.get_mut("Resources").and_then(Value::as_array_mut) {
        for r in a {
            fix_location(r, base);
        }
    }
    let mut parts = parts;
    if let Some(l) = v.pointer("/meta/location").and_then(Value::as_str) {
        if parts.status == StatusCode::CREATED {
            if let Ok(h) = HeaderValue::from_str(l) {
                parts.headers.insert(http::header::LOCATION, h);
            }
        }
    }
    Response::from_parts(parts, Bytes::from(v.to_string()))
}

fn fix_location(v: &mut Value, base: &str) {
    if let Some(l) = v.pointer("/meta/location").and_then(Value::as_str) {
        if l.starts_with("/Users") || l.starts_with("/Groups") {
            v["meta"]["location"] = json!(format!("{base}{l}"));
        }
    }
}

/// An RFC 7644 error body.
pub fn error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response<Bytes> {
    let mut v =
        json!({"schemas": [ERROR], "status": status.as_u16().to_string(), "detail": detail});
    if let Some(t) = scim_type {
        v["scimType"] = json!(t);
    }
    json(status, &v)
}

fn error_plain(status: StatusCode, detail: &str) -> Response<Bytes> {
    error(status, None, detail)
}

fn not_found(kind: &str, id: &str) -> Response<Bytes> {
    let k = if kind == "Users" { "User" } else { "Group" };
    error(StatusCode::NOT_FOUND, None, &format!("{k} {id} not found"))
}

fn table<'a>(s: &'a ScimState, kind: &str) -> &'a BTreeMap<String, Value> {
    if kind == "Users" {
        &s.users
    } else {
        &s.groups
    }
}

fn table_mut<'a>(s: &'a mut ScimState, kind: &str) -> &'a mut BTreeMap<String, Value> {
    if kind == "Users" {
        &mut s.users
    } else {
        &mut s.groups
    }
}
