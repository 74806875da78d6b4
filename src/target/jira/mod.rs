//! Jira Data Center target over REST v2 (`/rest/api/2`): users by username, groups,
//! memberships, and the project/component lead hand-over that must happen before a
//! lead can be deactivated. Speaks only Jira's wire format; decides nothing.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::http::{body_says, Reply, RestClient};
use super::{
    Capabilities, Cursor, NewUser, Outcome, Page, Target, TargetError, TargetFuture, TargetGroup,
    TargetUser, UserUpdate,
};
use crate::config::{TargetKind, TargetSettings};

const API: &str = "/rest/api/2";
/// Largest `maxResults` Jira's `/user/search` serves.
const MAX_SEARCH: usize = 1000;
/// Largest `maxResults` of `/group/member`.
const MAX_MEMBERS: usize = 50;
/// Groups are listed through the group picker, which has no paging: one big page.
const PICKER_MAX: usize = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JiraUserJson {
    name: String,
    key: Option<String>,
    email_address: Option<String>,
    display_name: Option<String>,
    #[serde(default = "super::default_true")]
    active: bool,
}

impl From<JiraUserJson> for TargetUser {
    fn from(u: JiraUserJson) -> Self {
        TargetUser {
            display_name: u.display_name.unwrap_or_else(|| u.name.clone()),
            username: u.name,
            key: u.key,
            email: u.email_address.filter(|e| !e.is_empty()),
            active: u.active,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberPage {
    start_at: usize,
    total: usize,
    is_last: bool,
    values: Vec<JiraUserJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserList {
    values: Vec<JiraUserJson>,
    is_last: bool,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Picker {
    total: usize,
    groups: Vec<NameOnly>,
}

#[derive(Debug, Deserialize)]
struct NameOnly {
    name: String,
}

/// A Jira DC target. Deactivation sets `active:false` (Jira >= 8.3) after moving
/// any project lead to `default_project_lead` and component lead to
/// `default_component_lead`, because Jira refuses to deactivate a project lead.
#[derive(Debug, Clone)]
pub struct JiraTarget {
    rest: RestClient,
    page_size: usize,
    default_project_lead: Option<String>,
    default_component_lead: Option<String>,
}

impl JiraTarget {
    /// A client for one `[[target]] kind = "jira"`.
    pub fn new(settings: &TargetSettings, rest: RestClient) -> Self {
        JiraTarget {
            rest,
            page_size: MAX_SEARCH,
            default_project_lead: settings.default_project_lead.clone(),
            default_component_lead: settings.default_component_lead.clone(),
        }
    }

    /// Smaller pages (tests exercise paging with a handful of users).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, MAX_SEARCH);
        self
    }

    fn user_from(&self, reply: &Reply, what: &str) -> Result<TargetUser, TargetError> {
        Ok(self.rest.json::<JiraUserJson>(reply, what)?.into())
    }

    /// Sends `PUT /user?username=`; "nothing to change" means unchanged.
    async fn put_user(
        &self,
        username: &str,
        body: serde_json::Value,
        what: &str,
    ) -> Result<Option<TargetUser>, TargetError> {
        let reply = self
            .rest
            .send(
                Method::PUT,
                &format!("{API}/user"),
                &[("username", username)],
                Some(&body),
                what,
            )
            .await?;
        match reply.status {
            StatusCode::OK => Ok(Some(self.user_from(&reply, what)?)),
            StatusCode::BAD_REQUEST if body_says(&reply, "no.value.found.to.be.changed") => {
                Ok(None)
            }
            _ => Err(self.rest.error(&reply, what)),
        }
    }

    async fn set_active(&self, username: &str, active: bool) -> Result<Outcome, TargetError> {
        let verb = if active { "reactivate" } else { "deactivate" };
        let what = format!("{verb} user {username}");
        let Some(user) = self.get(username).await? else {
            return Err(self.rest.not_found(&what, "no such user".into()));
        };
        if user.active == active {
            return Ok(Outcome::Unchanged);
        }
        if !active {
            self.reassign_leads(username).await?;
        }
        match self
            .put_user(username, json!({"active": active}), &what)
            .await?
        {
            Some(u) if u.active == active => Ok(Outcome::Changed),
            // Before 8.3 Jira ignores `active` and answers "nothing to change".
            _ => Err(self.rest.unsupported(&format!(
                "{what}: this Jira ignores `active` in PUT /user (needs Jira 8.3 or later)"
            ))),
        }
    }

    /// One `/user/list` page; `None` when this Jira has no such endpoint (before 10.3).
    async fn user_list_page(
        &self,
        cursor: Option<&str>,
    ) -> Result<Option<Page<TargetUser>>, TargetError> {
        let what = "list users";
        let max = self.page_size.to_string();
        let mut query = vec![("maxResults", max.as_str())];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let reply = self
            .rest
            .send(Method::GET, &format!("{API}/user/list"), &query, None, what)
            .await?;
        if reply.status == StatusCode::NOT_FOUND && cursor.is_none() {
            return Ok(None);
        }
        if reply.status != StatusCode::OK {
            return Err(self.rest.error(&reply, what));
        }
        let page: UserList = self.rest.json(&reply, what)?;
        let next = match (page.is_last, page.next_cursor) {
            (true, _) => None,
            (false, Some(c)) => Some(Cursor(format!("list:{c}"))),
            (false, None) => {
                return Err(self
                    .rest
                    .protocol(what, "isLast is false but nextCursor is missing".into()))
            }
        };
        Ok(Some(Page {
            items: page.values.into_iter().map(Into::into).collect(),
            next,
        }))
    }

    /// One `/user/search?username=.` page (active and inactive users).
    async fn user_search_page(&self, start: usize) -> Result<Page<TargetUser>, TargetError> {
        let what = "list users";
        let (s, m) = (start.to_string(), self.page_size.to_string());
        let query = [
            ("username", "."),
            ("includeActive", "true"),
            ("includeInactive", "true"),
            ("startAt", s.as_str()),
            ("maxResults", m.as_str()),
        ];
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("{API}/user/search"),
                &query,
                None,
                &[StatusCode::OK],
                what,
            )
            .await?;
        let list: Vec<JiraUserJson> = self.rest.json(&reply, what)?;
        let next = (list.len() >= self.page_size)
            .then(|| Cursor(format!("search:{}", start + list.len())));
        Ok(Page {
            items: list.into_iter().map(Into::into).collect(),
            next,
        })
    }

    async fn get(&self, username: &str) -> Result<Option<TargetUser>, TargetError> {
        let what = format!("get user {username}");
        let reply = self
            .rest
            .send(
                Method::GET,
                &format!("{API}/user"),
                &[("username", username)],
                None,
                &what,
            )
            .await?;
        match reply.status {
            StatusCode::OK => Ok(Some(self.user_from(&reply, &what)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.rest.error(&reply, &what)),
        }
    }
}

impl Target for JiraTarget {
    fn name(&self) -> &str {
        self.rest.target()
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Jira
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            can_deactivate: true,
            can_rename: true,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: false,
            max_page_size: MAX_SEARCH,
        }
    }

    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(self.get(username))
    }

    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            let what = format!("find user by e-mail {email}");
            let max = MAX_SEARCH.to_string();
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("{API}/user/search"),
                    &[
                        ("username", email),
                        ("includeActive", "true"),
                        ("includeInactive", "true"),
                        ("maxResults", &max),
                    ],
                    None,
                    &[StatusCode::OK],
                    &what,
                )
                .await?;
            let list: Vec<JiraUserJson> = self.rest.json(&reply, &what)?;
            Ok(list
                .into_iter()
                .map(TargetUser::from)
                .find(|u| u.has_email(email)))
        })
    }

    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            let what = format!("create user {}", user.username);
            // No password: Jira sets a random one. No notification e-mail.
            let body = json!({"name": user.username, "emailAddress": user.email, "displayName": user.display_name});
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
                StatusCode::CREATED | StatusCode::OK => self.user_from(&reply, &what),
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
            let mut body = serde_json::Map::new();
            if let Some(e) = &update.email {
                body.insert("emailAddress".into(), json!(e));
            }
            if let Some(d) = &update.display_name {
                body.insert("displayName".into(), json!(d));
            }
            if let Some(n) = &update.new_username {
                body.insert("name".into(), json!(n));
            }
            let updated = self.put_user(username, body.into(), &what).await?;
            match updated {
                Some(u) => Ok(u),
                None => self
                    .get(username)
                    .await?
                    .ok_or_else(|| self.rest.not_found(&what, "no such user".into())),
            }
        })
    }

    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.set_active(username, false))
    }

    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(self.set_active(username, true))
    }

    /// Jira 10.3+ has the cursor-paged `/user/list`; older Jira answers 404 there and
    /// is paged through `/user/search?username=.` instead. The cursor says which.
    fn list_users_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetUser>> {
        Box::pin(async move {
            match cursor.map(|c| c.0.as_str()) {
                None => match self.user_list_page(None).await? {
                    Some(page) => Ok(page),
                    None => self.user_search_page(0).await,
                },
                Some(c) => match c.strip_prefix("list:") {
                    Some(next) => self.user_list_page(Some(next)).await?.ok_or_else(|| {
                        self.rest
                            .protocol("list users", "/user/list disappeared while paging".into())
                    }),
                    None => {
                        let start = c.trim_start_matches("search:").parse().unwrap_or(0);
                        self.user_search_page(start).await
                    }
                },
            }
        })
    }

    fn list_groups_page<'a>(
        &'a self,
        _cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        Box::pin(async move {
            let what = "list groups";
            let max = PICKER_MAX.to_string();
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("{API}/groups/picker"),
                    &[("query", ""), ("maxResults", &max)],
                    None,
                    &[StatusCode::OK],
                    what,
                )
                .await?;
            let picker: Picker = self.rest.json(&reply, what)?;
            if picker.groups.len() < picker.total {
                return Err(self.rest.protocol(what, format!("the group picker returned {} of {} groups; raise jira.ajax.autocomplete.limit", picker.groups.len(), picker.total)));
            }
            Ok(Page {
                items: picker
                    .groups
                    .into_iter()
                    .map(|g| TargetGroup { name: g.name })
                    .collect(),
                next: None,
            })
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            let what = format!("create group {name}");
            let body = json!({"name": name});
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
            let start = Cursor::offset(cursor);
            let (s, m) = (
                start.to_string(),
                self.page_size.min(MAX_MEMBERS).to_string(),
            );
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("{API}/group/member"),
                    &[
                        ("groupname", group),
                        ("includeInactiveUsers", "true"),
                        ("startAt", &s),
                        ("maxResults", &m),
                    ],
                    None,
                    &[StatusCode::OK],
                    &what,
                )
                .await?;
            let page: MemberPage = self.rest.json(&reply, &what)?;
            let seen = page.start_at + page.values.len();
            if page.is_last && seen != page.total {
                return Err(self.rest.protocol(
                    &what,
                    format!(
                        "last page ends at {seen} but the group has {} members (truncated listing)",
                        page.total
                    ),
                ));
            }
            let next = (!page.is_last && !page.values.is_empty()).then(|| Cursor(seen.to_string()));
            Ok(Page {
                items: page.values.into_iter().map(|u| u.name).collect(),
                next,
            })
        })
    }

    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(async move {
            let what = format!("read the groups of {username}");
            let reply = self
                .rest
                .expect(
                    Method::GET,
                    &format!("{API}/user"),
                    &[("username", username), ("expand", "groups")],
                    None,
                    &[StatusCode::OK],
                    &what,
                )
                .await?;
            let v: serde_json::Value = self.rest.json(&reply, &what)?;
            let items = v
                .pointer("/groups/items")
                .and_then(|i| i.as_array())
                .ok_or_else(|| {
                    self.rest
                        .protocol(&what, "no groups.items in the user".into())
                })?;
            Ok(items
                .iter()
                .filter_map(|g| g.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect())
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
                    &format!("{API}/group/user"),
                    &[("groupname", group)],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::CREATED | StatusCode::OK => Ok(Outcome::Changed),
                StatusCode::BAD_REQUEST if body_says(&reply, "already a member") => {
                    Ok(Outcome::Unchanged)
                }
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
                    &format!("{API}/group/user"),
                    &[("groupname", group), ("username", username)],
                    None,
                    &what,
                )
                .await?;
            match reply.status {
                StatusCode::OK | StatusCode::NO_CONTENT => Ok(Outcome::Changed),
                StatusCode::BAD_REQUEST if body_says(&reply, "not a member") => {
                    Ok(Outcome::Unchanged)
                }
                _ => Err(self.rest.error(&reply, &what)),
            }
        })
    }
}

mod leads;
#[cfg(test)]
mod tests;
