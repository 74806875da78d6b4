//! Crowd target over `/rest/usermanagement/1`, authenticated as a Crowd
//! *application* (name + application password in `auth`). Users are replaced with a
//! full-object PUT (read, change, write back), which is also how (de)activation
//! works. Speaks only Crowd's wire format; decides nothing.

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{body_says, Reply, RestClient};
use super::{
    collect_pages, random_password, split_name, Capabilities, Cursor, NewUser, Outcome, Page,
    Target, TargetError, TargetFuture, TargetGroup, TargetUser, UserUpdate,
};
use crate::config::TargetKind;

const API: &str = "/rest/usermanagement/1";
const MAX_RESULTS: usize = 1000;

#[derive(Debug, Deserialize)]
struct CrowdUserJson {
    name: String,
    key: Option<String>,
    email: Option<String>,
    #[serde(rename = "display-name")]
    display_name: Option<String>,
    #[serde(default)]
    active: bool,
}

impl From<CrowdUserJson> for TargetUser {
    fn from(u: CrowdUserJson) -> Self {
        TargetUser {
            display_name: u
                .display_name
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| u.name.clone()),
            username: u.name,
            key: u.key,
            email: u.email.filter(|e| !e.is_empty()),
            active: u.active,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Users<T> {
    #[serde(default = "Vec::new")]
    users: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct Groups {
    #[serde(default)]
    groups: Vec<NameOnly>,
}

#[derive(Debug, Deserialize)]
struct NameOnly {
    name: String,
}

/// A Crowd target. Renaming is not supported.
#[derive(Debug, Clone)]
pub struct CrowdTarget {
    rest: RestClient,
    page_size: usize,
}

impl CrowdTarget {
    /// A client for one `[[target]] kind = "crowd"`; `auth` is the application's.
    pub fn new(rest: RestClient) -> Self {
        CrowdTarget {
            rest,
            page_size: MAX_RESULTS,
        }
    }

    /// Smaller pages (tests).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_RESULTS);
        self
    }

    /// The user's full JSON object (for read-modify-write), or `None`.
    async fn raw(&self, username: &str, what: &str) -> Result<Option<Value>, TargetError> {
        let reply = self
            .rest
            .send(
                Method::GET,
                &format!("{API}/user"),
                &[("username", username)],
                None,
                what,
            )
            .await?;
        match reply.status {
            StatusCode::OK => {
                let v: Value = self.rest.json(&reply, what)?;
                if v.get("name").and_then(Value::as_str).is_none() {
                    return Err(self
                        .rest
                        .protocol(what, "user object without a name".into()));
                }
                Ok(Some(v))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.rest.error(&reply, what)),
        }
    }

    async fn must_raw(&self, username: &str, what: &str) -> Result<Value, TargetError> {
        self.raw(username, what)
            .await?
            .ok_or_else(|| self.rest.no_user(what, username))
    }

    fn to_user(&self, v: Value, what: &str) -> Result<TargetUser, TargetError> {
        serde_json::from_value::<CrowdUserJson>(v)
            .map(Into::into)
            .map_err(|e| self.rest.protocol(what, format!("user object: {e}")))
    }

    /// Writes the whole user back (Crowd's PUT replaces every field).
    async fn put(&self, username: &str, mut user: Value, what: &str) -> Result<(), TargetError> {
        if let Some(o) = user.as_object_mut() {
            for k in ["password", "link", "expand", "attributes"] {
                o.remove(k);
            }
        }
        self.rest
            .expect(
                Method::PUT,
                &format!("{API}/user"),
                &[("username", username)],
                Some(&user),
                &[StatusCode::NO_CONTENT, StatusCode::OK],
                what,
            )
            .await?;
        Ok(())
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<Outcome, TargetError> {
        let verb = if active { "reactivate" } else { "deactivate" };
        let what = format!("{verb} user {username}");
        let mut user = self.must_raw(username, &what).await?;
        if user.get("active").and_then(Value::as_bool) == Some(active) {
            return Ok(Outcome::Unchanged);
        }
        user["active"] = json!(active);
        self.put(username, user, &what).await?;
        Ok(Outcome::Changed)
    }

    /// One `start-index`/`max-results` page of a Crowd listing at `path`, with `extra`
    /// first on the query; returns the body and the start index it was asked for.
    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        cursor: Option<&Cursor>,
        what: &str,
    ) -> Result<(T, usize), TargetError> {
        let start = Cursor::offset(cursor);
        let (s, m) = (start.to_string(), self.page_size.to_string());
        let mut query = extra.to_vec();
        query.extend([("start-index", s.as_str()), ("max-results", m.as_str())]);
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("{API}{path}"),
                &query,
                None,
                &[StatusCode::OK],
                what,
            )
            .await?;
        Ok((self.rest.json(&reply, what)?, start))
    }

    fn next(&self, start: usize, got: usize) -> Option<Cursor> {
        (got >= self.page_size).then(|| Cursor((start + got).to_string()))
    }

    fn is_membership_missing(reply: &Reply) -> bool {
        body_says(reply, "membership_not_found")
    }
}

impl Target for CrowdTarget {
    fn name(&self) -> &str {
        self.rest.target()
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Crowd
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            can_deactivate: true,
            can_rename: false,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: false,
            max_page_size: MAX_RESULTS,
        }
    }

    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            let what = format!("get user {username}");
            match self.raw(username, &what).await? {
                Some(v) => Ok(Some(self.to_user(v, &what)?)),
                None => Ok(None),
            }
        })
    }

    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            let what = format!("find user by e-mail {email}");
            let restriction = format!("email=\"{}\"", email.replace('"', ""));
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("{API}/search"),
                    &[
                        ("entity-type", "user"),
                        ("restriction", &restriction),
                        ("expand", "user"),
                        ("max-results", "100"),
                    ],
                    None,
                    &[StatusCode::OK],
                    &what,
                )
                .await?;
            let found: Users<CrowdUserJson> = self.rest.json(&reply, &what)?;
            Ok(found
                .users
                .into_iter()
                .map(TargetUser::from)
                .find(|u| u.has_email(email)))
        })
    }

    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("create user {}", user.username);
            let (first, last) = split_name(user);
            let body = json!({"name": user.username, "password": {"value": random_password()},
                              "active": true, "first-name": first, "last-name": last,
                              "display-name": user.display_name, "email": user.email});
            let reply = self
                .rest
                .send(
                    Method::POST,
                    &format!("{API}/user"),
                    &[],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => {
                    let v = self.must_raw(&user.username, &what).await?;
                    self.to_user(v, &what)
                }
                StatusCode::BAD_REQUEST if body_says(&reply, "already exists") => {
                    Err(self.rest.conflict(&reply, &what))
                }
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
            let mut user = self.must_raw(username, &what).await?;
            if let Some(e) = &update.email {
                user["email"] = json!(e);
            }
            if let Some(d) = &update.display_name {
                user["display-name"] = json!(d);
            }
            self.put(username, user, &what).await?;
            let v = self.must_raw(username, &what).await?;
            self.to_user(v, &what)
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
            let extra = [("entity-type", "user"), ("expand", "user")];
            let (page, start): (Users<CrowdUserJson>, _) =
                self.page("/search", &extra, cursor, "list users").await?;
            let next = self.next(start, page.users.len());
            Ok(Page {
                items: page.users.into_iter().map(Into::into).collect(),
                next,
            })
        })
    }

    fn list_groups_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        Box::pin(async move {
            let extra = [("entity-type", "group")];
            let (page, start): (Groups, _) =
                self.page("/search", &extra, cursor, "list groups").await?;
            let next = self.next(start, page.groups.len());
            Ok(Page {
                items: page
                    .groups
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
            let body = json!({"name": name, "type": "GROUP", "description": "", "active": true});
            let reply = self
                .rest
                .send(
                    Method::POST,
                    &format!("{API}/group"),
                    &[],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => Ok(Outcome::Changed),
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT
                    if body_says(&reply, "already exists") =>
                {
                    Ok(Outcome::Unchanged)
                }
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
            let extra = [("groupname", group)];
            let (page, start): (Users<NameOnly>, _) = self
                .page("/group/user/direct", &extra, cursor, &what)
                .await?;
            let next = self.next(start, page.users.len());
            Ok(Page {
                items: page.users.into_iter().map(|u| u.name).collect(),
                next,
            })
        })
    }

    /// CWD-4433: some Crowd versions answer an unknown user with an empty list, so an
    /// empty answer is checked against the user's existence.
    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(async move {
            let what = &format!("read the groups of {username}");
            // No page limit: Crowd ends the listing with a short page.
            let out: Vec<String> = collect_pages(usize::MAX, |cursor| async move {
                let extra = [("username", username)];
                let (page, start): (Groups, _) = self
                    .page("/user/group/direct", &extra, cursor.as_ref(), what)
                    .await?;
                let next = self.next(start, page.groups.len());
                Ok((page.groups.into_iter().map(|g| g.name).collect(), next))
            })
            .await?;
            if out.is_empty() {
                self.must_raw(username, what).await?;
            }
            Ok(out)
        })
    }

    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("add {username} to {group}");
            let body = json!({"name": username});
            let reply = self
                .rest
                .send(
                    Method::POST,
                    &format!("{API}/group/user/direct"),
                    &[("groupname", group)],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK | StatusCode::NO_CONTENT => {
                    Ok(Outcome::Changed)
                }
                StatusCode::CONFLICT => Ok(Outcome::Unchanged),
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }

    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("remove {username} from {group}");
            let reply = self
                .rest
                .send(
                    Method::DELETE,
                    &format!("{API}/group/user/direct"),
                    &[("groupname", group), ("username", username)],
                    None,
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::NO_CONTENT | StatusCode::OK => Ok(Outcome::Changed),
                StatusCode::NOT_FOUND if Self::is_membership_missing(&reply) => {
                    Ok(Outcome::Unchanged)
                }
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sandbox::crowd::{CrowdEmulator, CrowdSeed};
    use crate::target::contract::{basic, crowd::client};

    /// A Crowd holding one user, ada, with every field set.
    fn seed_with_ada() -> CrowdSeed {
        CrowdSeed {
            users: vec![(
                "ada".into(),
                "ada@example.com".into(),
                "Ada Lovelace".into(),
            )],
            ..CrowdSeed::default()
        }
    }

    #[tokio::test]
    async fn partial_update_keeps_the_fields_it_does_not_touch() {
        let (emu, running) = CrowdEmulator::start(seed_with_ada()).await.unwrap();
        let t = client(
            &running.url(),
            basic("usher", "app-password"),
            Arc::default(),
            50,
        );
        let update = UserUpdate {
            email: Some("ada@new.example".into()),
            ..UserUpdate::default()
        };
        let u = t.update_user("ada", &update).await.unwrap();
        assert_eq!(u.email.as_deref(), Some("ada@new.example"));
        let s = emu.state();
        let ada = &s.users["ada"];
        assert_eq!(
            (ada.first_name.as_str(), ada.last_name.as_str()),
            ("Ada", "Lovelace")
        );
        assert_eq!(ada.display_name, "Ada Lovelace");
        assert!(ada.active);
    }

    #[tokio::test]
    async fn emulator_quirks_name_mismatch_xml_default_and_cwd_4433() {
        let (_emu, running) = CrowdEmulator::start(seed_with_ada()).await.unwrap();
        let http = reqwest::Client::new();
        let base = format!("{}/crowd/rest/usermanagement/1", running.url());
        let put = http
            .put(format!("{base}/user?username=ada"))
            .basic_auth("usher", Some("app-password"))
            .header("accept", "application/json")
            .json(&json!({"name": "bob", "active": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 400);
        let xml = http
            .get(format!("{base}/user?username=ada"))
            .basic_auth("usher", Some("app-password"))
            .send()
            .await
            .unwrap();
        assert!(xml.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("xml"));
        let groups: Value = http
            .get(format!("{base}/user/group/direct?username=ghost"))
            .basic_auth("usher", Some("app-password"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(groups["groups"], json!([]));
    }

    /// Crowd refuses an application calling from an address it does not allow; the
    /// error names the allowlist.
    #[tokio::test]
    async fn caller_address_outside_the_allowlist_is_forbidden() {
        let seed = CrowdSeed {
            allowed_addresses: vec!["10.0.0.0/8".parse().unwrap()],
            ..CrowdSeed::default()
        };
        let (_emu, running) = CrowdEmulator::start(seed).await.unwrap();
        let t = client(
            &running.url(),
            basic("usher", "app-password"),
            Arc::default(),
            50,
        );
        let err = t.get_user("ada").await.unwrap_err();
        assert!(matches!(err, TargetError::Forbidden { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1") && text.contains("IP address"),
            "{text}"
        );
    }
}
