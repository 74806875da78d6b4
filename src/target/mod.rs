//! Targets: the Atlassian products (and SCIM directories) usher provisions into.
//! Owns the source-neutral `Target` trait, its plain data types and the typed
//! `TargetError`; must not decide *what* to change (that is `provision::plan`).

pub mod bitbucket;
pub mod confluence;
pub mod crowd;
pub mod dialect;
pub mod http;
pub mod jira;
pub mod retry;
pub mod scim;

#[cfg(test)]
mod contract;
#[cfg(test)]
mod peers;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{TargetKind, TargetSettings};

/// A boxed future returned by [`Target`] methods; boxing keeps the trait object-safe
/// so the provisioner can hold `Arc<dyn Target>` for any product.
pub type TargetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TargetError>> + Send + 'a>>;

/// A user as a target reports it, in product-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUser {
    /// Login name (Jira `name`, Confluence `username`, Crowd `name`, SCIM `userName`).
    pub username: String,
    /// The product's stable id (Jira/Confluence user key, Bitbucket numeric id, SCIM `id`);
    /// `None` when the product does not expose one (Crowd without `key`).
    pub key: Option<String>,
    /// E-mail, when the product shows it to the bot account.
    pub email: Option<String>,
    pub display_name: String,
    /// `false` once deactivated. Bitbucket always reports its directory flag (see
    /// [`bitbucket`]).
    pub active: bool,
}

impl TargetUser {
    /// Whether this user's e-mail is `email`. Products keep the case people typed, so
    /// every e-mail lookup compares ASCII case-insensitively, the same way everywhere.
    pub fn has_email(&self, email: &str) -> bool {
        self.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
    }
}

/// A group in a target. Groups are identified by name everywhere usher writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetGroup {
    pub name: String,
}

/// Everything needed to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub display_name: String,
    /// Given name, used where the product stores names separately (Crowd, SCIM).
    pub given_name: Option<String>,
    /// Family name, used where the product stores names separately (Crowd, SCIM).
    pub family_name: Option<String>,
}

/// A partial update: `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Rename the login name; only where [`Capabilities::can_rename`].
    pub new_username: Option<String>,
}

impl UserUpdate {
    /// True when nothing would change (callers skip the request).
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.display_name.is_none() && self.new_username.is_none()
    }
}

/// Opaque position in a paged listing; pass back what the previous page returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

impl Cursor {
    /// The start offset an offset-paged product (Jira search, Confluence, Crowd) put in
    /// its cursor; the first page (no cursor) and an unreadable cursor start at 0.
    pub(crate) fn offset(cursor: Option<&Cursor>) -> usize {
        cursor.and_then(|c| c.0.parse().ok()).unwrap_or(0)
    }
}

/// One page of a listing. Readers loop until `next` is `None`, so big instances are
/// never held in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// This page's entries.
    pub items: Vec<T>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<Cursor>,
}

/// Whether an idempotent write changed anything, for reports and audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target changed.
    Changed,
    /// It was already so (existing group, existing membership, already (in)active).
    Unchanged,
}

/// What a target can do; the planner reads this instead of matching on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Real account deactivation. `false` for Bitbucket, whose `deactivate_user`
    /// only strips groups and the licence (see [`bitbucket`]).
    pub can_deactivate: bool,
    /// `UserUpdate::new_username` is supported.
    pub can_rename: bool,
    /// `UserUpdate::email` is supported.
    pub can_update_email: bool,
    /// `UserUpdate::display_name` is supported.
    pub can_update_display_name: bool,
    /// `create_group` is supported.
    pub can_create_groups: bool,
    /// Finding a user by e-mail reads every user (no server-side e-mail search).
    pub email_lookup_scans: bool,
    /// Largest page the product serves; listings never ask for more.
    pub max_page_size: usize,
}

/// A target failure, typed so callers can decide (retry later, skip, stop the sync).
/// Every message names the target, the product's own words and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target {target}: {what} not found ({message})")]
    /// The user, group or membership does not exist.
    NotFound {
        target: String,
        what: String,
        message: String,
    },
    #[error("target {target}: {what} already exists ({message})")]
    /// It already exists (creating a user that exists: adopting it is a policy decision).
    Conflict {
        target: String,
        what: String,
        message: String,
    },
    #[error("target {target}: the credentials were rejected ({message}); check the bot account and token in the [[target]] auth setting")]
    /// The product rejected the credentials (or served the call as anonymous).
    Unauthorized { target: String, message: String },
    #[error(
        "target {target}: not allowed to {what} ({message}); the bot account needs {permission}"
    )]
    /// The bot account lacks a permission (or a licence seat is missing).
    Forbidden {
        target: String,
        what: String,
        permission: String,
        message: String,
    },
    #[error("target {target}: {what} was refused ({status}: {message}); fix the value or the product setting it names")]
    /// The product refused the values (validation, licence limit): fix the data or setting.
    Rejected {
        target: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("target {target}: rate limited ({message}); usher gave up after waiting, lower sync.concurrency or exempt the bot account from rate limiting")]
    /// Still rate limited after the bounded retries; `retry_after` is the last hint.
    RateLimited {
        target: String,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("target {target}: unavailable ({message}); check that the product is up and reachable at its url")]
    /// Unreachable, timed out or 5xx after the bounded retries.
    Unavailable { target: String, message: String },
    #[error("target {target}: unexpected answer to {what} ({message}); check that the url points at the product's REST API and not at a login page or proxy")]
    /// An answer that is not the product's API (HTML login page, redirect, bad JSON, truncated listing).
    Protocol {
        target: String,
        what: String,
        message: String,
    },
    #[error("target {target}: {what} is not supported by this product")]
    /// The product cannot do this (see [`Capabilities`]).
    Unsupported { target: String, what: String },
    #[error("target {target}: cannot set up the HTTP client ({message})")]
    /// The client could not be built (unreadable `ca_file`, token not a valid header).
    Setup { target: String, message: String },
}

impl TargetError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TargetError::RateLimited { .. } | TargetError::Unavailable { .. }
        )
    }
}

/// A user/group store usher provisions into. Implementations are thin REST clients;
/// all share [`http::RestClient`] for auth, retries and the concurrency cap.
/// Writes are idempotent where the product allows: an existing group or membership is
/// `Outcome::Unchanged`, not an error. Creating a user that exists is a
/// [`TargetError::Conflict`] because taking over an account is a policy decision.
pub trait Target: Send + Sync {
    /// The `[[target]] name`.
    fn name(&self) -> &str;
    /// Which product this speaks to.
    fn kind(&self) -> TargetKind;
    /// What this product supports.
    fn capabilities(&self) -> Capabilities;
    /// The user with this login name, or `None`.
    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>>;
    /// The user whose e-mail equals `email` (case-insensitive), or `None`.
    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>>;
    /// Creates an active account.
    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser>;
    /// Changes e-mail / display name / login name.
    fn update_user<'a>(
        &'a self,
        username: &'a str,
        update: &'a UserUpdate,
    ) -> TargetFuture<'a, TargetUser>;
    /// Stops the account from signing in (never deletes it).
    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome>;
    /// Undoes [`Target::deactivate_user`].
    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome>;
    /// One page of all users (active and inactive).
    fn list_users_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetUser>>;
    /// One page of all groups.
    fn list_groups_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>>;
    /// Creates a group; an existing one is `Unchanged`.
    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome>;
    /// One page of a group's members (login names).
    fn list_members_page<'a>(
        &'a self,
        group: &'a str,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<String>>;
    /// The groups the user is a direct member of (login-time provisioning reads one
    /// person's memberships without listing every group). Unknown user: `NotFound`.
    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>>;
    /// Adds a member; an existing membership is `Unchanged`.
    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome>;
    /// Removes a member; a missing membership is `Unchanged`.
    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome>;
}

impl fmt::Debug for dyn Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({}, {:?})", self.name(), self.kind())
    }
}

/// Builds the client for one `[[target]]` with the real clock.
pub fn build(settings: &TargetSettings) -> Result<Arc<dyn Target>, TargetError> {
    let rest = http::RestClient::new(settings, flavor_of(settings.kind))?;
    Ok(from_client(settings, rest))
}

/// Wraps an already-built REST client (tests inject a fake clock through it).
pub fn from_client(settings: &TargetSettings, rest: http::RestClient) -> Arc<dyn Target> {
    match settings.kind {
        TargetKind::Jira => Arc::new(jira::JiraTarget::new(settings, rest)),
        TargetKind::Confluence => Arc::new(confluence::ConfluenceTarget::new(rest)),
        TargetKind::Bitbucket => Arc::new(bitbucket::BitbucketTarget::new(rest)),
        TargetKind::Crowd => Arc::new(crowd::CrowdTarget::new(rest)),
        TargetKind::Scim => Arc::new(scim::ScimTarget::new(rest)),
    }
}

/// The error dialect a product speaks.
pub fn flavor_of(kind: TargetKind) -> http::Flavor {
    match kind {
        TargetKind::Jira => http::Flavor::Jira,
        TargetKind::Confluence => http::Flavor::Confluence,
        TargetKind::Bitbucket => http::Flavor::Bitbucket,
        TargetKind::Crowd => http::Flavor::Crowd,
        TargetKind::Scim => http::Flavor::Scim,
    }
}

/// Serde default for an `active` flag missing from a Jira or Bitbucket user object:
/// a user the product does not mark inactive is treated as active.
pub(crate) fn default_true() -> bool {
    true
}

/// A random password for products that insist on one at creation (Crowd, Bitbucket,
/// Confluence); people sign in through usher, so nobody ever learns it.
pub(crate) fn random_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    let mut s = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    s.push_str("-A1!");
    s
}

/// Splits "Ada Lovelace" into ("Ada", "Lovelace") for products with separate name fields.
pub(crate) fn split_name(user: &NewUser) -> (String, String) {
    let mut parts = user.display_name.trim().splitn(2, ' ');
    let first = parts.next().unwrap_or_default().to_string();
    let last = parts.next().unwrap_or_default().trim().to_string();
    (
        user.given_name.clone().unwrap_or(first),
        user.family_name.clone().unwrap_or(if last.is_empty() {
            user.username.clone()
        } else {
            last
        }),
    )
}

/// Pages through `target`'s users until one has `email`, for products whose REST API
/// has no e-mail search (Confluence, SCIM).
pub(crate) async fn scan_users_for_email<T: Target + ?Sized>(
    target: &T,
    email: &str,
) -> Result<Option<TargetUser>, TargetError> {
    let fetch = |cursor: Option<Cursor>| async move {
        let page = target.list_users_page(cursor.as_ref()).await?;
        Ok((page.items, page.next))
    };
    find_in_pages(fetch, |u: &TargetUser| u.has_email(email)).await
}

/// Pages through what `fetch` serves (it gets the previous page's cursor, `None`
/// first) until an item matches `hit`, for lookups a product can only answer by
/// scanning a listing; stops after 100 000 pages as a guard against a product that
/// never ends its listing.
pub(crate) async fn find_in_pages<T, F, Fut>(
    mut fetch: F,
    hit: impl Fn(&T) -> bool,
) -> Result<Option<T>, TargetError>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<Cursor>), TargetError>>,
{
    let mut cursor = None;
    for _ in 0..100_000 {
        let (items, next) = fetch(cursor).await?;
        if let Some(found) = items.into_iter().find(|i| hit(i)) {
            return Ok(Some(found));
        }
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Reads every page `fetch` serves (it gets the previous page's cursor, `None` first)
/// into one list, for the few reads that need a whole listing at once (a user's
/// groups); gives up quietly after `max_pages` so a looping product cannot hang a sync.
pub(crate) async fn collect_pages<T, F, Fut>(
    max_pages: usize,
    mut fetch: F,
) -> Result<Vec<T>, TargetError>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<Cursor>), TargetError>>,
{
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..max_pages {
        let (items, next) = fetch(cursor).await?;
        out.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    /// What one fake fetch answers.
    type Served = std::future::Ready<Result<(Vec<u32>, Option<Cursor>), TargetError>>;

    /// Serves `pages` in order, recording the cursor each call was given.
    fn pages(
        pages: Vec<Vec<u32>>,
        seen: &std::sync::Mutex<Vec<Option<Cursor>>>,
    ) -> impl FnMut(Option<Cursor>) -> Served + '_ {
        move |cursor| {
            let i = Cursor::offset(cursor.as_ref());
            seen.lock().unwrap().push(cursor);
            let next = (i + 1 < pages.len()).then(|| Cursor((i + 1).to_string()));
            std::future::ready(Ok((pages[i].clone(), next)))
        }
    }

    #[tokio::test]
    async fn collect_pages_follows_cursors_to_the_end_and_respects_the_page_limit() {
        let seen = std::sync::Mutex::default();
        let all = collect_pages(10, pages(vec![vec![1, 2], vec![3], vec![4]], &seen))
            .await
            .unwrap();
        assert_eq!(all, vec![1, 2, 3, 4]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![None, Some(Cursor("1".into())), Some(Cursor("2".into()))]
        );
        let seen = std::sync::Mutex::default();
        let two = collect_pages(2, pages(vec![vec![1], vec![2], vec![3]], &seen))
            .await
            .unwrap();
        assert_eq!(two, vec![1, 2]);
    }

    #[tokio::test]
    async fn find_in_pages_stops_at_the_first_hit_and_says_none_after_the_last_page() {
        let seen = std::sync::Mutex::default();
        let hit = find_in_pages(pages(vec![vec![1, 2], vec![3, 4], vec![5]], &seen), |n| {
            *n > 2
        })
        .await
        .unwrap();
        assert_eq!(hit, Some(3));
        assert_eq!(seen.lock().unwrap().len(), 2, "no page after the hit");
        let seen = std::sync::Mutex::default();
        let miss = find_in_pages(pages(vec![vec![1], vec![2]], &seen), |n| *n > 9)
            .await
            .unwrap();
        assert_eq!(miss, None);
    }

    #[test]
    fn offsets_and_email_matching() {
        assert_eq!(Cursor::offset(None), 0);
        assert_eq!(Cursor::offset(Some(&Cursor("40".into()))), 40);
        assert_eq!(Cursor::offset(Some(&Cursor("list:abc".into()))), 0);
        let mut u = TargetUser {
            username: "ada".into(),
            key: None,
            email: Some("Ada@Example.com".into()),
            display_name: "Ada".into(),
            active: true,
        };
        assert!(u.has_email("ada@example.COM"));
        assert!(!u.has_email("ada@example.org"));
        u.email = None;
        assert!(!u.has_email(""));
    }
}
