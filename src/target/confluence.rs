//! Confluence Data Center target (8.4+): `/rest/api/admin/user` to create, update,
//! disable and enable, `/rest/api/admin/group` to create groups, and
//! `PUT`/`DELETE /rest/api/user/{user}/group/{group}` for memberships. Speaks only
//! Confluence's wire format; decides nothing.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{body_says, seg, RestClient};
use super::{
    collect_pages, random_password, scan_users_for_email, Capabilities, Cursor, NewUser, Outcome,
    Page, Target, TargetError, TargetFuture, TargetGroup, TargetUser, UserUpdate,
};
use crate::config::TargetKind;

/// Confluence may cap `limit`; 200 is the documented member default.
const MAX_LIMIT: usize = 200;
const EXPAND: &str = "details.personal,status";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    username: String,
    user_key: Option<String>,
    display_name: Option<String>,
    details: Option<Value>,
    status: Option<Value>,
}

impl From<Person> for TargetUser {
    fn from(p: Person) -> Self {
        let email = p
            .details
            .as_ref()
            .and_then(|d| d.pointer("/personal/email"))
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        // `expand=status` gives "Active"/"Deactivated" (string, or {"value": ...}).
        let status = p
            .status
            .as_ref()
            .and_then(|s| {
                s.as_str()
                    .or_else(|| s.get("value").and_then(Value::as_str))
            })
            .unwrap_or("Active");
        TargetUser {
            display_name: p.display_name.unwrap_or_else(|| p.username.clone()),
            username: p.username,
            key: p.user_key,
            email,
            active: !status.eq_ignore_ascii_case("deactivated"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Paged<T> {
    results: Vec<T>,
    start: usize,
    #[serde(rename = "_links", default)]
    links: Value,
}

#[derive(Debug, Deserialize)]
struct GroupJson {
    name: String,
}

/// A Confluence DC target. Users cannot be renamed through REST.
#[derive(Debug, Clone)]
pub struct ConfluenceTarget {
    rest: RestClient,
    page_size: usize,
}

impl ConfluenceTarget {
    /// A client for one `[[target]] kind = "confluence"`.
    pub fn new(rest: RestClient) -> Self {
        ConfluenceTarget {
            rest,
            page_size: MAX_LIMIT,
        }
    }

    /// Smaller pages (tests).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_LIMIT);
        self
    }

    async fn get(&self, username: &str) -> Result<Option<TargetUser>, TargetError> {
        let what = format!("get user {username}");
        let reply = self
            .rest
            .send(
                Method::GET,
                "/rest/api/user",
                &[("username", username), ("expand", EXPAND)],
                None,
                &what,
            )
            .await?;
        match reply.status {
            StatusCode::OK => Ok(Some(self.rest.json::<Person>(&reply, &what)?.into())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.rest.error(&reply, &what)),
        }
    }

    async fn must_get(&self, username: &str, what: &str) -> Result<TargetUser, TargetError> {
        self.get(username)
            .await?
            .ok_or_else(|| self.rest.no_user(what, username))
    }

    /// One page of a paged listing plus the cursor of the next one.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        cursor: Option<&Cursor>,
        what: &str,
    ) -> Result<(Vec<T>, Option<Cursor>), TargetError> {
        let start = Cursor::offset(cursor);
        let (s, l) = (start.to_string(), self.page_size.to_string());
        let mut query: Vec<(&str, &str)> = vec![("start", &s), ("limit", &l)];
        query.extend_from_slice(extra);
        let reply = self
            .rest
            .expect(Method::GET, path, &query, None, &[StatusCode::OK], what)
            .await?;
        let page: Paged<T> = self.rest.json(&reply, what)?;
        let has_next = page.links.get("next").is_some() && !page.results.is_empty();
        let next = has_next.then(|| Cursor((page.start + page.results.len()).to_string()));
        Ok((page.results, next))
    }

    async fn groups_of(&self, username: &str) -> Result<Vec<String>, TargetError> {
        let what = &format!("read the groups of {username}");
        let groups: Vec<GroupJson> = collect_pages(10_000, |cursor| async move {
            let extra = [("username", username)];
            self.page("/rest/api/user/memberof", &extra, cursor.as_ref(), what)
                .await
        })
        .await?;
        Ok(groups.into_iter().map(|g| g.name).collect())
    }

    async fn is_member(&self, group: &str, username: &str) -> Result<bool, TargetError> {
        Ok(self.groups_of(username).await?.iter().any(|g| g == group))
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<Outcome, TargetError> {
        let action = if active { "enable" } else { "disable" };
        let what = format!("{action} user {username}");
        if self.must_get(username, &what).await?.active == active {
            return Ok(Outcome::Unchanged);
        }
        let path = format!("/rest/api/admin/user/{}/{action}", seg(username));
        self.bodiless(Method::PUT, &path, &what).await
    }

    /// Sends one of Confluence's body-less writes (enable, disable, membership PUT or
    /// DELETE), which answer 204 (some versions 200) once done.
    async fn bodiless(
        &self,
        method: Method,
        path: &str,
        what: &str,
    ) -> Result<Outcome, TargetError> {
        self.rest
            .expect(
                method,
                path,
                &[],
                None,
                &[StatusCode::NO_CONTENT, StatusCode::OK],
                what,
            )
            .await?;
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
        // The calls are idempotent 204s; ask first so the outcome is truthful.
        if self.is_member(group, username).await? == add {
            return Ok(Outcome::Unchanged);
        }
        let method = if add { Method::PUT } else { Method::DELETE };
        let path = format!("/rest/api/user/{}/group/{}", seg(username), seg(group));
        self.bodiless(method, &path, &what).await
    }
}

impl Target for ConfluenceTarget {
    fn name(&self) -> &str {
        self.rest.target()
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Confluence
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            can_deactivate: true,
            can_rename: false,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: true,
            max_page_size: MAX_LIMIT,
        }
    }

    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(self.get(username))
    }

    /// Confluence DC has no e-mail search in REST: this pages through all users.
    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(scan_users_for_email(self, email))
    }

    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("create user {}", user.username);
            // A random password instead of notifyViaEmail: people sign in through usher.
            let body = json!({"userName": user.username, "fullName": user.display_name,
                              "email": user.email, "password": random_password()});
            let reply = self
                .rest
                .send(
                    Method::POST,
                    "/rest/api/admin/user",
                    &[],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => self.must_get(&user.username, &what).await,
                StatusCode::CONFLICT => Err(self.rest.conflict(&reply, &what)),
                StatusCode::PAYMENT_REQUIRED => Err(TargetError::Rejected {
                    target: self.rest.target().to_string(),
                    what,
                    status: 402,
                    message: format!(
                        "{}: no free Confluence licence seat; free or buy seats",
                        self.rest.message(&reply)
                    ),
                }),
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
            let current = self.must_get(username, &what).await?;
            let body = json!({
                "email": update.email.clone().or(current.email).unwrap_or_default(),
                "fullName": update.display_name.clone().unwrap_or(current.display_name),
            });
            let path = format!("/rest/api/admin/user/{}", seg(username));
            self.rest
                .expect(
                    Method::PUT,
                    &path,
                    &[],
                    Some(&body),
                    &[StatusCode::NO_CONTENT, StatusCode::OK],
                    &what,
                )
                .await?;
            self.must_get(username, &what).await
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
            let (items, next): (Vec<Person>, _) = self
                .page(
                    "/rest/api/user/list",
                    &[("expand", EXPAND)],
                    cursor,
                    "list users",
                )
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
            let (items, next): (Vec<GroupJson>, _) = self
                .page("/rest/api/group", &[], cursor, "list groups")
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
            let body = json!({"type": "group", "name": name});
            let reply = self
                .rest
                .send(
                    Method::POST,
                    "/rest/api/admin/group",
                    &[],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                s if s.is_success() => Ok(Outcome::Changed),
                StatusCode::CONFLICT => Ok(Outcome::Unchanged),
                StatusCode::BAD_REQUEST if body_says(&reply, "already exists") => {
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
            let path = format!("/rest/api/group/{}/member", seg(group));
            let (items, next): (Vec<Person>, _) = self.page(&path, &[], cursor, &what).await?;
            Ok(Page {
                items: items.into_iter().map(|p| p.username).collect(),
                next,
            })
        })
    }

    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(self.groups_of(username))
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
    use std::sync::Arc;

    use super::*;
    use crate::sandbox::confluence::{ConfluenceEmulator, ConfluenceSeed};
    use crate::target::contract::{basic, confluence::client};

    fn person(name: &str) -> NewUser {
        NewUser {
            username: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            display_name: "P".into(),
            given_name: None,
            family_name: None,
        }
    }

    #[tokio::test]
    async fn out_of_licences_and_bad_usernames_are_clear_rejections() {
        let seed = ConfluenceSeed {
            licence_seats: 1,
            ..ConfluenceSeed::default()
        };
        let (emu, running) = ConfluenceEmulator::start(seed).await.unwrap();
        let t = client(
            &running.url(),
            basic("usher-bot", "bot-password"),
            Arc::default(),
            50,
        );
        let err = t.create_user(&person("carol")).await.unwrap_err();
        assert!(
            matches!(err, TargetError::Rejected { status: 402, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("licence seat"), "{err}");
        emu.with_state(|s| s.licence_seats = 100);
        let err = t.create_user(&person("Carol")).await.unwrap_err();
        assert!(
            matches!(err, TargetError::Rejected { status: 400, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("lowercase"), "{err}");
        assert!(!emu.state().users.contains_key("Carol"));
    }

    #[tokio::test]
    async fn emulator_hides_email_unless_expanded_and_deletes_asynchronously() {
        let (_emu, running) = ConfluenceEmulator::start(ConfluenceSeed::default())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let get = |q: &str| {
            http.get(format!(
                "{}/rest/api/user?username=usher-bot{q}",
                running.url()
            ))
            .basic_auth("usher-bot", Some("bot-password"))
            .send()
        };
        let plain: Value = get("").await.unwrap().json().await.unwrap();
        assert!(plain.get("details").is_none() && plain.get("status").is_none());
        let full: Value = get("&expand=details.personal,status")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            full["details"]["personal"]["email"],
            "usher-bot@example.com"
        );
        assert_eq!(full["status"], "Active");
        let del = http
            .delete(format!("{}/rest/api/admin/user/usher-bot", running.url()))
            .basic_auth("usher-bot", Some("bot-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(del.status(), 202);
    }
}
