//! Bitbucket Data Center target over `/rest/api/1.0/admin`: users, groups,
//! memberships and global permissions. Speaks only Bitbucket's wire format.
//!
//! **Deactivation.** Bitbucket has no REST call to deactivate an internal-directory
//! user (`active` is read-only). What `deactivate_user` does instead, as Atlassian
//! recommends: remove the user from every group it is a direct member of (groups
//! usually carry the licence) and delete its directly granted global permission
//! (`LICENSED_USER` and above). Without a global permission Bitbucket does not let the
//! account sign in, so it is effectively deactivated and frees its licence seat.
//! `reactivate_user` grants `LICENSED_USER` directly; the planner re-adds managed
//! groups. `TargetUser::active` keeps reporting the directory flag, which is why
//! [`Capabilities::can_deactivate`] is `false`.

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::http::RestClient;
use super::{
    collect_pages, find_in_pages, random_password, Capabilities, Cursor, NewUser, Outcome, Page,
    Target, TargetError, TargetFuture, TargetGroup, TargetUser, UserUpdate,
};
use crate::config::TargetKind;

const ADMIN: &str = "/rest/api/1.0/admin";
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetailedUser {
    name: String,
    id: Option<u64>,
    email_address: Option<String>,
    display_name: Option<String>,
    #[serde(default = "super::default_true")]
    active: bool,
}

impl From<DetailedUser> for TargetUser {
    fn from(u: DetailedUser) -> Self {
        TargetUser {
            display_name: u.display_name.unwrap_or_else(|| u.name.clone()),
            username: u.name,
            key: u.id.map(|i| i.to_string()),
            email: u.email_address.filter(|e| !e.is_empty()),
            active: u.active,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paged<T> {
    values: Vec<T>,
    is_last_page: bool,
    next_page_start: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct NamedGroup {
    name: String,
}

#[derive(Debug, Deserialize)]
struct UserPermission {
    user: DetailedUser,
}

/// A Bitbucket DC target; see the module documentation for deactivation.
#[derive(Debug, Clone)]
pub struct BitbucketTarget {
    rest: RestClient,
    page_size: usize,
}

impl BitbucketTarget {
    /// A client for one `[[target]] kind = "bitbucket"`.
    pub fn new(rest: RestClient) -> Self {
        BitbucketTarget {
            rest,
            page_size: MAX_LIMIT,
        }
    }

    /// Smaller pages (tests).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_LIMIT);
        self
    }

    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        cursor: Option<&Cursor>,
        what: &str,
    ) -> Result<(Vec<T>, Option<Cursor>), TargetError> {
        let start = cursor.map(|c| c.0.as_str()).unwrap_or("0");
        let limit = self.page_size.to_string();
        let mut query: Vec<(&str, &str)> = vec![("start", start), ("limit", &limit)];
        query.extend_from_slice(extra);
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("{ADMIN}{path}"),
                &query,
                None,
                &[StatusCode::OK],
                what,
            )
            .await?;
        let page: Paged<T> = self.rest.json(&reply, what)?;
        let next = match (page.is_last_page, page.next_page_start) {
            (false, Some(n)) => Some(Cursor(n.to_string())),
            (false, None) => {
                return Err(self.rest.protocol(
                    what,
                    "isLastPage is false but nextPageStart is missing".into(),
                ))
            }
            (true, _) => None,
        };
        Ok((page.values, next))
    }

    /// Pages through a filtered listing until `hit` matches.
    async fn find_in<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        what: &str,
        hit: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, TargetError> {
        let fetch = |cursor: Option<Cursor>| async move {
            self.page(path, extra, cursor.as_ref(), what).await
        };
        find_in_pages(fetch, hit).await
    }

    async fn get(&self, username: &str) -> Result<Option<TargetUser>, TargetError> {
        let what = format!("get user {username}");
        let found = self
            .find_in::<DetailedUser>("/users", &[("filter", username)], &what, |u| {
                u.name.eq_ignore_ascii_case(username)
            })
            .await?;
        Ok(found.map(Into::into))
    }

    async fn must_get(&self, username: &str, what: &str) -> Result<TargetUser, TargetError> {
        self.get(username)
            .await?
            .ok_or_else(|| self.rest.no_user(what, username))
    }

    async fn is_member(&self, group: &str, username: &str) -> Result<bool, TargetError> {
        let what = format!("check whether {username} is in {group}");
        let found = self
            .find_in::<DetailedUser>(
                "/groups/more-members",
                &[("context", group), ("filter", username)],
                &what,
                |u| u.name.eq_ignore_ascii_case(username),
            )
            .await?;
        Ok(found.is_some())
    }

    async fn groups_of(&self, username: &str) -> Result<Vec<String>, TargetError> {
        let what = &format!("list the groups of {username}");
        let groups: Vec<NamedGroup> = collect_pages(100_000, |cursor| async move {
            let extra = [("context", username)];
            self.page("/users/more-members", &extra, cursor.as_ref(), what)
                .await
        })
        .await?;
        Ok(groups.into_iter().map(|g| g.name).collect())
    }

    async fn has_direct_permission(&self, username: &str) -> Result<bool, TargetError> {
        let what = format!("read the global permissions of {username}");
        let found = self
            .find_in::<UserPermission>("/permissions/users", &[("filter", username)], &what, |p| {
                p.user.name.eq_ignore_ascii_case(username)
            })
            .await?;
        Ok(found.is_some())
    }

    async fn remove_group(&self, group: &str, username: &str) -> Result<(), TargetError> {
        let what = format!("remove {username} from {group}");
        let body = json!({"context": username, "itemName": group});
        self.rest
            .expect(
                Method::POST,
                &format!("{ADMIN}/users/remove-group"),
                &[],
                Some(&body),
                &[StatusCode::OK, StatusCode::NO_CONTENT],
                &what,
            )
            .await?;
        Ok(())
    }

    async fn strip(&self, username: &str) -> Result<Outcome, TargetError> {
        let what = format!("deactivate user {username}");
        self.must_get(username, &what).await?;
        let groups = self.groups_of(username).await?;
        for g in &groups {
            self.remove_group(g, username).await?;
        }
        let had_permission = self.has_direct_permission(username).await?;
        if had_permission {
            self.rest
                .expect(
                    Method::DELETE,
                    &format!("{ADMIN}/permissions/users"),
                    &[("name", username)],
                    None,
                    &[StatusCode::NO_CONTENT, StatusCode::OK],
                    &what,
                )
                .await?;
        }
        let changed = had_permission || !groups.is_empty();
        Ok(if changed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        })
    }

    async fn license(&self, username: &str) -> Result<Outcome, TargetError> {
        let what = format!("reactivate user {username}");
        self.must_get(username, &what).await?;
        if self.has_direct_permission(username).await? {
            return Ok(Outcome::Unchanged);
        }
        self.rest
            .expect(
                Method::PUT,
                &format!("{ADMIN}/permissions/users"),
                &[("name", username), ("permission", "LICENSED_USER")],
                None,
                &[StatusCode::NO_CONTENT, StatusCode::OK],
                &what,
            )
            .await?;
        Ok(Outcome::Changed)
    }
}

impl Target for BitbucketTarget {
    fn name(&self) -> &str {
        self.rest.target()
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Bitbucket
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            can_deactivate: false,
            can_rename: true,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: false,
            max_page_size: MAX_LIMIT,
        }
    }

    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(self.get(username))
    }

    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            let what = format!("find user by e-mail {email}");
            let found = self
                .find_in::<DetailedUser>("/users", &[("filter", email)], &what, |u| {
                    u.email_address
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
                })
                .await?;
            Ok(found.map(Into::into))
        })
    }

    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("create user {}", user.username);
            let password = random_password();
            let query = [
                ("name", user.username.as_str()),
                ("displayName", user.display_name.as_str()),
                ("emailAddress", user.email.as_str()),
                ("password", password.as_str()),
                ("addToDefaultGroup", "true"),
                ("notify", "false"),
            ];
            let reply = self
                .rest
                .send(Method::POST, &format!("{ADMIN}/users"), &query, None, &what)
                .await?;
            match reply.status {
                s if s.is_success() => self.must_get(&user.username, &what).await,
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
            let mut name = username.to_string();
            if let Some(new) = &update.new_username {
                let body = json!({"name": username, "newName": new});
                self.rest
                    .expect(
                        Method::POST,
                        &format!("{ADMIN}/users/rename"),
                        &[],
                        Some(&body),
                        &[StatusCode::OK],
                        &what,
                    )
                    .await?;
                name = new.clone();
            }
            if update.email.is_some() || update.display_name.is_some() {
                let mut body = json!({"name": name});
                if let Some(e) = &update.email {
                    body["email"] = json!(e);
                }
                if let Some(d) = &update.display_name {
                    body["displayName"] = json!(d);
                }
                let reply = self
                    .rest
                    .expect(
                        Method::PUT,
                        &format!("{ADMIN}/users"),
                        &[],
                        Some(&body),
                        &[StatusCode::OK],
                        &what,
                    )
                    .await?;
                return Ok(self.rest.json::<DetailedUser>(&reply, &what)?.into());
            }
            self.must_get(&name, &what).await
        })
    }

    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.strip(username))
    }

    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.license(username))
    }

    fn list_users_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetUser>> {
        Box::pin(async move {
            let (items, next) = self
                .page::<DetailedUser>("/users", &[], cursor, "list users")
                .await?;
            Ok(Page {
                items: items.into_iter().map(Into::into).collect(),
                next,
            })
        })
    }

    fn list_groups_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        Box::pin(async move {
            let (items, next) = self
                .page::<NamedGroup>("/groups", &[], cursor, "list groups")
                .await?;
            Ok(Page {
                items: items
                    .into_iter()
                    .map(|g| TargetGroup { name: g.name })
                    .collect(),
                next,
            })
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("create group {name}");
            let reply = self
                .rest
                .send(
                    Method::POST,
                    &format!("{ADMIN}/groups"),
                    &[("name", name)],
                    None,
                    &what,
                )
                .await?;
            match reply.status {
                s if s.is_success() => Ok(Outcome::Changed),
                StatusCode::CONFLICT => Ok(Outcome::Unchanged),
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }

    fn list_members_page<'a>(
        &'a self,
        group: &'a str,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<String>> {
        Box::pin(async move {
            let what = format!("list members of {group}");
            let (items, next) = self
                .page::<DetailedUser>("/groups/more-members", &[("context", group)], cursor, &what)
                .await?;
            Ok(Page {
                items: items.into_iter().map(|u| u.name).collect(),
                next,
            })
        })
    }

    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(async move {
            self.must_get(username, &format!("read the groups of {username}"))
                .await?;
            self.groups_of(username).await
        })
    }

    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("add {username} to {group}");
            // add-groups answers 200 whether or not the membership existed: ask first.
            if self.is_member(group, username).await? {
                return Ok(Outcome::Unchanged);
            }
            let body = json!({"user": username, "groups": [group]});
            self.rest
                .expect(
                    Method::POST,
                    &format!("{ADMIN}/users/add-groups"),
                    &[],
                    Some(&body),
                    &[StatusCode::OK, StatusCode::NO_CONTENT],
                    &what,
                )
                .await?;
            Ok(Outcome::Changed)
        })
    }

    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            if !self.is_member(group, username).await? {
                return Ok(Outcome::Unchanged);
            }
            self.remove_group(group, username).await?;
            Ok(Outcome::Changed)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sandbox::bitbucket::{BitbucketEmulator, BitbucketSeed, DEFAULT_GROUP};
    use crate::target::contract::{basic, bitbucket::client};

    fn alice() -> NewUser {
        NewUser {
            username: "alice".into(),
            email: "alice@example.com".into(),
            display_name: "Alice".into(),
            given_name: None,
            family_name: None,
        }
    }

    #[tokio::test]
    async fn licence_limit_is_forbidden_and_names_the_seat() {
        let seed = BitbucketSeed {
            licence_seats: 1,
            ..BitbucketSeed::default()
        };
        let (_emu, running) = BitbucketEmulator::start(seed).await.unwrap();
        let t = client(
            &running.url(),
            basic("usher-bot", "bot-password"),
            Arc::default(),
            25,
        );
        let err = t.create_user(&alice()).await.unwrap_err();
        assert!(matches!(err, TargetError::Forbidden { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("licence limit") && text.contains("licence seat"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn new_users_join_the_default_group_and_rename_moves_memberships() {
        let (emu, running) = BitbucketEmulator::start(BitbucketSeed::default())
            .await
            .unwrap();
        let t = client(
            &running.url(),
            basic("usher-bot", "bot-password"),
            Arc::default(),
            25,
        );
        t.create_user(&alice()).await.unwrap();
        assert!(emu.state().groups_of("alice").contains(DEFAULT_GROUP));
        assert!(emu.state().can_sign_in("alice"));
        let update = UserUpdate {
            new_username: Some("alice2".into()),
            email: Some("a2@example.com".into()),
            display_name: None,
        };
        let u = t.update_user("alice", &update).await.unwrap();
        assert_eq!(
            (u.username.as_str(), u.email.as_deref()),
            ("alice2", Some("a2@example.com"))
        );
        assert!(emu.state().groups_of("alice2").contains(DEFAULT_GROUP));
        assert!(t.get_user("alice").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn emulator_serves_the_deprecated_swapped_shapes() {
        let seed = BitbucketSeed {
            users: vec![("bob".into(), "bob@example.com".into(), "Bob".into())],
            groups: vec![(DEFAULT_GROUP.into(), vec![]), ("devs".into(), vec![])],
            ..BitbucketSeed::default()
        };
        let (emu, running) = BitbucketEmulator::start(seed).await.unwrap();
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{}/rest/api/1.0/admin/{path}", running.url()))
                .basic_auth("usher-bot", Some("bot-password"))
                .json(&body)
                .send()
        };
        let r = post(
            "users/add-group",
            json!({"context": "bob", "itemName": "devs"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(emu.state().groups_of("bob").contains("devs"));
        let r = post(
            "groups/remove-user",
            json!({"context": "devs", "itemName": "bob"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!emu.state().groups_of("bob").contains("devs"));
        let r = post(
            "groups/add-user",
            json!({"context": "bob", "itemName": "devs"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 404, "swapped shape: context is the group here");
    }
}
