//! SCIM 2.0 target (RFC 7643/7644) shaped for Atlassian Cloud user provisioning:
//! only single `eq` filters on `userName` / `displayName`, 1-based `startIndex`, at
//! most 100 per page, PATCH for (de)activation and membership, 200-with-body or 204
//! accepted on PATCH. The url is the directory base
//! (`https://api.atlassian.com/scim/directory/{id}`). Decides nothing.
//!
//! Users and groups are addressed by SCIM `id`. Writes look the user's id up each
//! time; a cache of id -> userName learned from every answer lets membership
//! listings (which carry ids only) resolve to usernames without one GET per member
//! after a user listing has run, and group ids are cached by displayName (a stale
//! one is dropped on 404).

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{seg, RestClient};
use super::{
    scan_users_for_email, split_name, Capabilities, Cursor, NewUser, Outcome, Page, Target,
    TargetError, TargetFuture, TargetGroup, TargetUser, UserUpdate,
};
use crate::config::TargetKind;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Atlassian's page limit.
const MAX_PAGE: usize = 100;
const PATCH_OK: &[StatusCode] = &[StatusCode::OK, StatusCode::NO_CONTENT];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimUser {
    id: String,
    user_name: String,
    display_name: Option<String>,
    name: Option<Value>,
    #[serde(default, deserialize_with = "null_as_empty")]
    emails: Vec<Email>,
    active: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Email {
    value: String,
    #[serde(default)]
    primary: bool,
}

impl From<ScimUser> for TargetUser {
    fn from(u: ScimUser) -> Self {
        let email = u
            .emails
            .iter()
            .find(|e| e.primary)
            .or(u.emails.first())
            .map(|e| e.value.clone());
        let formatted = u
            .name
            .as_ref()
            .and_then(|n| n.get("formatted"))
            .and_then(Value::as_str)
            .map(str::to_string);
        TargetUser {
            display_name: u
                .display_name
                .or(formatted)
                .unwrap_or_else(|| u.user_name.clone()),
            username: u.user_name,
            key: Some(u.id),
            email,
            active: u.active.unwrap_or(true),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimGroup {
    id: String,
    display_name: String,
    /// Absent, `null` or a list: servers differ.
    #[serde(default, deserialize_with = "null_as_empty")]
    members: Vec<Member>,
}

/// Reads an absent or `null` multi-valued attribute as empty.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
struct Member {
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse<T> {
    total_results: usize,
    #[serde(default = "one")]
    start_index: usize,
    #[serde(rename = "Resources", default = "Vec::new")]
    resources: Vec<T>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Default)]
struct Ids {
    user_by_id: BTreeMap<String, String>,
    group_by_name: BTreeMap<String, String>,
}

/// A SCIM 2.0 directory target. Renaming users is not supported (Atlassian's
/// `userName` is the e-mail and is not in its updatable attributes).
#[derive(Debug)]
pub struct ScimTarget {
    rest: RestClient,
    page_size: usize,
    ids: Mutex<Ids>,
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn patch_body(ops: Vec<Value>) -> Value {
    json!({"schemas": [PATCH], "Operations": ops})
}

impl ScimTarget {
    /// A client for one `[[target]] kind = "scim"`; auth is the directory API key.
    pub fn new(rest: RestClient) -> Self {
        ScimTarget {
            rest,
            page_size: MAX_PAGE,
            ids: Mutex::new(Ids::default()),
        }
    }

    /// Smaller pages (tests).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE);
        self
    }

    fn remember_user(&self, u: &TargetUser) {
        if let (Some(id), Ok(mut ids)) = (&u.key, self.ids.lock()) {
            ids.user_by_id.insert(id.clone(), u.username.clone());
        }
    }

    fn forget_group(&self, name: &str) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.group_by_name.remove(name);
        }
    }

    fn user(&self, u: ScimUser) -> TargetUser {
        let u: TargetUser = u.into();
        self.remember_user(&u);
        u
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<ListResponse<T>, TargetError> {
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("/{kind}"),
                query,
                None,
                &[StatusCode::OK],
                what,
            )
            .await?;
        self.rest.json(&reply, what)
    }

    async fn find_user(&self, username: &str) -> Result<Option<TargetUser>, TargetError> {
        let what = format!("get user {username}");
        let filter = format!("userName eq {}", quote(username));
        let list: ListResponse<ScimUser> =
            self.list("Users", &[("filter", &filter)], &what).await?;
        Ok(list
            .resources
            .into_iter()
            .map(|u| self.user(u))
            .find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    /// The user's current SCIM id, always asked (a deleted and re-created Atlassian
    /// user gets a new id, so a cached one could point at nothing).
    async fn user_id(&self, username: &str, what: &str) -> Result<String, TargetError> {
        self.find_user(username)
            .await?
            .and_then(|u| u.key)
            .ok_or_else(|| self.rest.no_user(what, username))
    }

    /// The group with this displayName (with members), or `None`.
    async fn find_group(&self, name: &str, what: &str) -> Result<Option<ScimGroup>, TargetError> {
        let cached = self
            .ids
            .lock()
            .ok()
            .and_then(|ids| ids.group_by_name.get(name).cloned());
        if let Some(id) = cached {
            let reply = self
                .rest
                .send(
                    Method::GET,
                    &format!("/Groups/{}", seg(&id)),
                    &[],
                    None,
                    what,
                )
                .await?;
            match reply.status {
                StatusCode::OK => return Ok(Some(self.rest.json(&reply, what)?)),
                StatusCode::NOT_FOUND => self.forget_group(name),
                _ => return Err(self.rest.error(&reply, what)),
            }
        }
        let filter = format!("displayName eq {}", quote(name));
        let list: ListResponse<ScimGroup> =
            self.list("Groups", &[("filter", &filter)], what).await?;
        let found = list.resources.into_iter().find(|g| g.display_name == name);
        if let (Some(g), Ok(mut ids)) = (&found, self.ids.lock()) {
            ids.group_by_name.insert(name.to_string(), g.id.clone());
        }
        Ok(found)
    }

    async fn must_group(&self, name: &str, what: &str) -> Result<ScimGroup, TargetError> {
        self.find_group(name, what)
            .await?
            .ok_or_else(|| self.rest.not_found(what, format!("no group {name}")))
    }

    async fn get_by_id(&self, id: &str, what: &str) -> Result<TargetUser, TargetError> {
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("/Users/{}", seg(id)),
                &[],
                None,
                &[StatusCode::OK],
                what,
            )
            .await?;
        Ok(self.user(self.rest.json(&reply, what)?))
    }

    async fn patch_user(
        &self,
        username: &str,
        ops: Vec<Value>,
        what: &str,
    ) -> Result<TargetUser, TargetError> {
        let id = self.user_id(username, what).await?;
        let body = patch_body(ops);
        let path = format!("/Users/{}", seg(&id));
        self.rest
            .expect(Method::PATCH, &path, &[], Some(&body), PATCH_OK, what)
            .await?;
        self.get_by_id(&id, what).await
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<Outcome, TargetError> {
        let verb = if active { "reactivate" } else { "deactivate" };
        let what = format!("{verb} user {username}");
        let Some(user) = self.find_user(username).await? else {
            return Err(self.rest.no_user(&what, username));
        };
        if user.active == active {
            return Ok(Outcome::Unchanged);
        }
        let op = json!({"op": "replace", "path": "active", "value": active});
        let after = self.patch_user(username, vec![op], &what).await?;
        if after.active != active {
            return Err(self.rest.protocol(
                &what,
                "the PATCH was accepted but `active` did not change".into(),
            ));
        }
        Ok(Outcome::Changed)
    }

    async fn membership(
        &self,
        group: &str,
        username: &str,
        add: bool,
    ) -> Result<Outcome, TargetError> {
        let what = if add {
            format!("add {username} to {group}")
        } else {
            format!("remove {username} from {group}")
        };
        let g = self.must_group(group, &what).await?;
        let uid = self.user_id(username, &what).await?;
        if g.members.iter().any(|m| m.value == uid) == add {
            return Ok(Outcome::Unchanged);
        }
        let op = if add {
            json!({"op": "add", "path": "members", "value": [{"value": uid, "display": username}]})
        } else {
            json!({"op": "remove", "path": format!("members[value eq {}]", quote(&uid))})
        };
        let path = format!("/Groups/{}", seg(&g.id));
        self.rest
            .expect(
                Method::PATCH,
                &path,
                &[],
                Some(&patch_body(vec![op])),
                PATCH_OK,
                &what,
            )
            .await?;
        Ok(Outcome::Changed)
    }

    /// `startIndex` of the next page, or `None` after the last; an empty page before
    /// `totalResults` is reached is a truncated listing.
    fn next_page(
        &self,
        start: usize,
        got: usize,
        total: usize,
        what: &str,
    ) -> Result<Option<Cursor>, TargetError> {
        let seen = start - 1 + got;
        if seen >= total {
            return Ok(None);
        }
        if got == 0 {
            return Err(self.rest.protocol(
                what,
                format!("empty page at {start} of {total} results (truncated listing)"),
            ));
        }
        Ok(Some(Cursor((start + got).to_string())))
    }
}

fn start_of(cursor: Option<&Cursor>) -> usize {
    cursor.and_then(|c| c.0.parse().ok()).unwrap_or(1).max(1)
}

impl Target for ScimTarget {
    fn name(&self) -> &str {
        self.rest.target()
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Scim
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            can_deactivate: true,
            can_rename: false,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: true,
            max_page_size: MAX_PAGE,
        }
    }

    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(self.find_user(username))
    }

    /// Atlassian filters only on userName/externalId: try `userName eq email` (their
    /// usernames are e-mails), then page through all users.
    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            if let Some(u) = self.find_user(email).await?.filter(|u| u.has_email(email)) {
                return Ok(Some(u));
            }
            scan_users_for_email(self, email).await
        })
    }

    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("create user {}", user.username);
            let (given, family) = split_name(user);
            let body = json!({"schemas": [USER], "userName": user.username, "displayName": user.display_name,
                "name": {"givenName": given, "familyName": family, "formatted": user.display_name},
                "emails": [{"value": user.email, "type": "work", "primary": true}], "active": true});
            let reply = self
                .rest
                .send(Method::POST, "/Users", &[], Some(&body), &what)
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => {
                    Ok(self.user(self.rest.json(&reply, &what)?))
                }
                StatusCode::CONFLICT => Err(self.rest.conflict(&reply, &what)),
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }

    fn update_user<'a>(
        &'a self,
        username: &'a str,
        update: &'a UserUpdate,
    ) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("update user {username}");
            if update.new_username.is_some() {
                return Err(self.rest.unsupported("renaming a user"));
            }
            let mut ops = Vec::new();
            if let Some(d) = &update.display_name {
                ops.push(json!({"op": "replace", "path": "displayName", "value": d}));
            }
            if let Some(e) = &update.email {
                ops.push(json!({"op": "replace", "path": "emails", "value": [{"value": e, "type": "work", "primary": true}]}));
            }
            if ops.is_empty() {
                let id = self.user_id(username, &what).await?;
                return self.get_by_id(&id, &what).await;
            }
            self.patch_user(username, ops, &what).await
        })
    }

    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.set_active(username, false))
    }

    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.set_active(username, true))
    }

    fn list_users_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetUser>> {
        Box::pin(async move {
            let what = "list users";
            let start = start_of(cursor);
            let (s, c) = (start.to_string(), self.page_size.to_string());
            let list: ListResponse<ScimUser> = self
                .list("Users", &[("startIndex", &s), ("count", &c)], what)
                .await?;
            let got = list.resources.len();
            let next = self.next_page(list.start_index.max(1), got, list.total_results, what)?;
            Ok(Page {
                items: list.resources.into_iter().map(|u| self.user(u)).collect(),
                next,
            })
        })
    }

    fn list_groups_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        Box::pin(async move {
            let what = "list groups";
            let start = start_of(cursor);
            let (s, c) = (start.to_string(), self.page_size.to_string());
            let list: ListResponse<ScimGroup> = self
                .list(
                    "Groups",
                    &[
                        ("startIndex", &s),
                        ("count", &c),
                        ("excludedAttributes", "members"),
                    ],
                    what,
                )
                .await?;
            let next = self.next_page(
                list.start_index.max(1),
                list.resources.len(),
                list.total_results,
                what,
            )?;
            if let Ok(mut ids) = self.ids.lock() {
                for g in &list.resources {
                    ids.group_by_name
                        .insert(g.display_name.clone(), g.id.clone());
                }
            }
            Ok(Page {
                items: list
                    .resources
                    .into_iter()
                    .map(|g| TargetGroup {
                        name: g.display_name,
                    })
                    .collect(),
                next,
            })
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("create group {name}");
            // Some SCIM servers accept duplicate displayNames: look first.
            if self.find_group(name, &what).await?.is_some() {
                return Ok(Outcome::Unchanged);
            }
            let body = json!({"schemas": [GROUP], "displayName": name});
            let reply = self
                .rest
                .send(Method::POST, "/Groups", &[], Some(&body), &what)
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => Ok(Outcome::Changed),
                StatusCode::CONFLICT => Ok(Outcome::Unchanged),
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }

    /// SCIM does not page members: each page re-reads the group and resolves one
    /// slice of member ids to usernames (cache first, then `GET /Users/{id}`).
    fn list_members_page<'a>(
        &'a self,
        group: &'a str,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<String>> {
        Box::pin(async move {
            let what = format!("list members of {group}");
            let g = self.must_group(group, &what).await?;
            let offset = cursor.and_then(|c| c.0.parse::<usize>().ok()).unwrap_or(0);
            let slice: Vec<String> = g
                .members
                .iter()
                .skip(offset)
                .take(self.page_size)
                .map(|m| m.value.clone())
                .collect();
            let mut names = Vec::with_capacity(slice.len());
            for id in &slice {
                let cached = self
                    .ids
                    .lock()
                    .ok()
                    .and_then(|ids| ids.user_by_id.get(id).cloned());
                let name = match cached {
                    Some(n) => n,
                    None => self.get_by_id(id, &what).await?.username,
                };
                names.push(name);
            }
            let end = offset + slice.len();
            let next = (end < g.members.len()).then(|| Cursor(end.to_string()));
            Ok(Page { items: names, next })
        })
    }

    /// Read from the User's read-only `groups` attribute when the server keeps it
    /// (Atlassian does); otherwise (scim2-server does not) from every group's members.
    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(async move {
            let what = format!("read the groups of {username}");
            let id = self.user_id(username, &what).await?;
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("/Users/{}", seg(&id)),
                    &[],
                    None,
                    &[StatusCode::OK],
                    &what,
                )
                .await?;
            let v: Value = self.rest.json(&reply, &what)?;
            // Without the attribute (no groups, or a server that does not keep it,
            // like scim2-server) every group is scanned below.
            if let Some(groups) = v.get("groups").and_then(Value::as_array) {
                let mut out = Vec::with_capacity(groups.len());
                for g in groups {
                    match (
                        g.get("display").and_then(Value::as_str),
                        g.get("value").and_then(Value::as_str),
                    ) {
                        (Some(name), _) => out.push(name.to_string()),
                        (None, Some(gid)) => {
                            let reply = self
                                .rest
                                .expect(
                                    Method::GET,
                                    &format!("/Groups/{}", seg(gid)),
                                    &[("excludedAttributes", "members")],
                                    None,
                                    &[StatusCode::OK],
                                    &what,
                                )
                                .await?;
                            out.push(self.rest.json::<ScimGroup>(&reply, &what)?.display_name);
                        }
                        (None, None) => {
                            return Err(self
                                .rest
                                .protocol(&what, "a group reference without value".into()))
                        }
                    }
                }
                return Ok(out);
            }
            let mut out = Vec::new();
            let mut start = 1usize;
            loop {
                let (s, c) = (start.to_string(), self.page_size.to_string());
                let list: ListResponse<ScimGroup> = self
                    .list("Groups", &[("startIndex", &s), ("count", &c)], &what)
                    .await?;
                let got = list.resources.len();
                let next =
                    self.next_page(list.start_index.max(1), got, list.total_results, &what)?;
                out.extend(
                    list.resources
                        .into_iter()
                        .filter(|g| g.members.iter().any(|m| m.value == id))
                        .map(|g| g.display_name),
                );
                match next {
                    Some(Cursor(n)) => start = n.parse().unwrap_or(usize::MAX),
                    None => break,
                }
                if start == usize::MAX {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.membership(group, username, true))
    }

    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.membership(group, username, false))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::sandbox::scim::{ScimEmulator, ScimSeed, MAX_PAGE};

    async fn get(url: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth("directory-key")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn emulator_keeps_atlassian_limits() {
        let users = (0..150)
            .map(|k| {
                (
                    format!("u{k:03}@example.com"),
                    format!("u{k:03}@example.com"),
                    "U".to_string(),
                )
            })
            .collect();
        let (emu, running) = ScimEmulator::start(ScimSeed {
            users,
            ..ScimSeed::default()
        })
        .await
        .unwrap();
        let base = format!("{}{}", running.url(), emu.base_path());
        let (status, page) = get(&format!("{base}/Users?count=500")).await;
        assert_eq!(status, 200);
        assert_eq!(page["Resources"].as_array().unwrap().len(), MAX_PAGE);
        assert_eq!(page["totalResults"], 150);
        let (_, second) = get(&format!("{base}/Users?startIndex=101&count=100")).await;
        assert_eq!(second["startIndex"], 101);
        assert_eq!(second["Resources"][0]["userName"], "u100@example.com");
        let (status, err) = get(&format!("{base}/Users?filter=userName%20sw%20%22u1%22")).await;
        assert_eq!(
            (status, err["scimType"].as_str()),
            (400, Some("invalidFilter"))
        );
        let (status, _) = get(&format!(
            "{base}/Users?filter=emails.value%20eq%20%22u1@example.com%22"
        ))
        .await;
        assert_eq!(status, 400, "only userName/externalId can be filtered");
        let (_, hit) = get(&format!(
            "{base}/Users?filter=userName%20eq%20%22U007@EXAMPLE.COM%22"
        ))
        .await;
        assert_eq!(
            hit["totalResults"], 1,
            "userName matches case-insensitively"
        );
    }

    /// Atlassian's DELETE removes the SCIM record; re-creating gives a new id, and
    /// membership writes must follow the new id, not a remembered one.
    #[tokio::test]
    async fn recreated_user_gets_a_new_id_and_writes_follow_it() {
        use crate::target::contract::{bearer, scim::client};
        use crate::target::{NewUser, Outcome};
        let (emu, running) = ScimEmulator::start(ScimSeed::default()).await.unwrap();
        let base = format!("{}{}", running.url(), emu.base_path());
        let t = client(
            &base,
            bearer("directory-key"),
            std::sync::Arc::default(),
            100,
        );
        let zoe = NewUser {
            username: "zoe@example.com".into(),
            email: "zoe@example.com".into(),
            display_name: "Zoe".into(),
            given_name: None,
            family_name: None,
        };
        let first = t.create_user(&zoe).await.unwrap().key.unwrap();
        t.create_group("team").await.unwrap();
        let del = reqwest::Client::new()
            .delete(format!("{base}/Users/{first}"))
            .bearer_auth("directory-key")
            .send()
            .await
            .unwrap();
        assert_eq!(del.status(), 204);
        assert_eq!(get(&format!("{base}/Users/{first}")).await.0, 404);
        let second = t.create_user(&zoe).await.unwrap().key.unwrap();
        assert_ne!(first, second);
        assert_eq!(
            t.add_member("team", "zoe@example.com").await.unwrap(),
            Outcome::Changed
        );
        assert_eq!(
            emu.state().member_names("team"),
            vec!["zoe@example.com".to_string()]
        );
    }
}
