//! The Google Workspace [`Directory`]: Admin SDK Directory API v1 (`users.list`,
//! `users.get`, `groups.list`, `members.list`) over reqwest, paged with
//! `pageToken`, trimmed with `fields` masks, rate-limited client-side and retried
//! with backoff on Google's retryable answers. Owns the wire shapes and the
//! mapping of Google's error envelope to [`DirectoryError`]; tokens come from
//! [`TokenProvider`]. Must not log tokens or response bodies.

use std::collections::BTreeMap;

use futures_util::TryStreamExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::google_auth::{Clock, Credentials, ServiceAccountKey, SystemClock, TokenProvider};
use super::google_wire::{ApiError, ApiUser, GroupsPage, MembersPage, UsersPage};
use crate::admin::metrics::{self, Api, RetryReason};

use super::retry::{is_retryable, RateLimiter, RetryPolicy, Sleeper, TokioSleeper};
use super::token_store::RefreshTokenStore;
use super::{BoxFuture, Directory, DirectoryError, Pages};
use crate::config::{DirectoryAuth, DirectorySettings, IdpSettings, Secret, SessionSettings};
use crate::identity::{GroupMember, GroupRef, Person, PersonWithGroups};

/// `fields` mask for one user: only what [`Person`] needs.
pub const USER_FIELDS: &str = "id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,isAdmin,orgUnitPath,aliases,nonEditableAliases";
/// `fields` mask for users.list.
pub const USERS_FIELDS: &str = "nextPageToken,users(id,primaryEmail,name(givenName,familyName,fullName),suspended,archived,isAdmin,orgUnitPath,aliases,nonEditableAliases)";
/// `fields` mask for groups.list.
pub const GROUPS_FIELDS: &str = "nextPageToken,groups(id,email,name)";
/// `fields` mask for members.list.
pub const MEMBERS_FIELDS: &str = "nextPageToken,members(id,email,role,type,status)";

/// Parent-group lookups in flight at once while flattening one person's groups.
const NESTED_LOOKUP_CONCURRENCY: usize = 8;

/// Turns one decoded page into its items and the next page token.
type SplitPage<P, T> = fn(P) -> Result<(Vec<T>, Option<String>), DirectoryError>;

/// Tunables with production defaults; tests swap the clock and sleeper.
#[derive(Clone)]
pub struct GoogleDirectoryOptions {
    /// users.list `maxResults` (Google allows at most 500).
    pub users_page_size: u32,
    /// groups.list / members.list `maxResults` (Google allows at most 200).
    pub groups_page_size: u32,
    /// How often and how long retryable answers are retried.
    pub retry: RetryPolicy,
    /// Judges token expiry (tests move it).
    pub clock: Arc<dyn Clock>,
    /// Waits for backoff and rate limiting (tests record instead).
    pub sleeper: Arc<dyn Sleeper>,
    /// Whole-request timeout (one page).
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
}

impl Default for GoogleDirectoryOptions {
    fn default() -> Self {
        GoogleDirectoryOptions {
            users_page_size: 500,
            groups_page_size: 200,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            sleeper: Arc::new(TokioSleeper),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Google Workspace as a [`Directory`]. Lists keep suspended and archived people
/// (flags set) whatever `[directory] include_suspended` says: whether they get or
/// keep accounts is the provisioning mapping's decision, not the reader's.
pub struct GoogleDirectory {
    source: String,
    api_url: url::Url,
    customer: String,
    domain: Option<String>,
    users_query: String,
    nested: bool,
    http: reqwest::Client,
    tokens: TokenProvider,
    limiter: RateLimiter,
    options: GoogleDirectoryOptions,
    api_calls: AtomicU64,
}

impl GoogleDirectory {
    /// A client for `settings` proving itself with `credentials`.
    pub fn new(
        source: &str,
        settings: &DirectorySettings,
        credentials: Credentials,
        options: GoogleDirectoryOptions,
    ) -> Result<Self, DirectoryError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| DirectoryError::Config {
                detail: format!("HTTP client setup failed: {e}"),
            })?;
        if settings.api_url.cannot_be_a_base() {
            return Err(DirectoryError::Config {
                detail: format!("api_url {} cannot take a path", settings.api_url),
            });
        }
        let tokens = TokenProvider::new(
            http.clone(),
            settings.token_url.clone(),
            credentials,
            options.clock.clone(),
        );
        Ok(GoogleDirectory {
            source: source.to_string(),
            api_url: settings.api_url.clone(),
            customer: settings.customer.clone(),
            domain: settings.domain.clone(),
            users_query: settings.users_query.clone(),
            nested: settings.nested_groups,
            http,
            tokens,
            limiter: RateLimiter::new(settings.rate_limit_per_minute, options.sleeper.clone()),
            options,
            api_calls: AtomicU64::new(0),
        })
    }

    /// Builds the client the way `usher serve` does: service-account key from
    /// the config, or the directory IdP's OAuth client plus the stored refresh token.
    pub fn from_settings(
        settings: &DirectorySettings,
        idp: &IdpSettings,
        session: &SessionSettings,
        state_dir: &Path,
    ) -> Result<Self, DirectoryError> {
        let credentials = match &settings.auth {
            DirectoryAuth::ServiceAccount { key, admin_subject } => Credentials::ServiceAccount {
                key: ServiceAccountKey::from_json(key.expose())?,
                subject: admin_subject.clone(),
            },
            DirectoryAuth::OAuth => Credentials::OAuth {
                client_id: idp.client_id.clone(),
                client_secret: idp.client_secret.clone(),
                store: RefreshTokenStore::new(
                    state_dir,
                    &session.secret,
                    &session.previous_secrets,
                ),
            },
        };
        Self::new(
            &settings.idp,
            settings,
            credentials,
            GoogleDirectoryOptions::default(),
        )
    }

    /// Directory API requests sent so far (every attempt counts).
    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }

    /// Token endpoint requests sent so far.
    pub fn token_requests(&self) -> u64 {
        self.tokens.token_requests()
    }

    fn endpoint(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["admin", "directory", "v1"])
                .extend(segments);
        }
        url.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// `customer=` or `domain=` for list calls (domain wins when configured).
    fn scope_param(&self) -> (&'static str, &str) {
        match &self.domain {
            Some(d) => ("domain", d.as_str()),
            None => ("customer", self.customer.as_str()),
        }
    }

    /// One GET with rate limiting, a token, retries and error mapping.
    async fn get_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        url: &url::Url,
    ) -> Result<T, DirectoryError> {
        let policy = &self.options.retry;
        let mut attempt = 0u32;
        let mut reauthorised = false;
        loop {
            attempt += 1;
            let waited = self.limiter.acquire().await;
            if !waited.is_zero() {
                metrics::rate_limit_wait(Api::Directory, &self.source, waited);
            }
            let token = match self.tokens.token().await {
                Ok(t) => t,
                // A token endpoint hiccup (5xx, connection reset) is worth the same retries.
                Err(e) if e.is_transient() && attempt < policy.max_attempts => {
                    self.backoff(attempt, None, RetryReason::ServerError).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.api_calls.fetch_add(1, Ordering::Relaxed);
            let answer = self.send(url, &token).await;
            metrics::directory_request(method, answer.as_ref().ok().map(|a| a.0));
            let (status, retry_after, body) = match answer {
                Ok(a) => a,
                Err(detail) => {
                    if attempt < policy.max_attempts {
                        self.backoff(attempt, None, RetryReason::Connection).await;
                        continue;
                    }
                    return Err(DirectoryError::Unavailable {
                        method,
                        status: "no answer".into(),
                        message: detail,
                        attempts: attempt,
                    });
                }
            };
            if (200..300).contains(&status) {
                return serde_json::from_slice(&body).map_err(|e| DirectoryError::Protocol {
                    method,
                    detail: format!("HTTP {status} body does not match the API schema: {e}"),
                });
            }
            let err = ApiError::parse(status, &body);
            if status == 401 && !reauthorised {
                reauthorised = true;
                self.tokens.invalidate().await;
                attempt -= 1;
                continue;
            }
            if is_retryable(status, &err.reason) && attempt < policy.max_attempts {
                tracing::debug!(method, status, reason = %err.reason, attempt, "retrying Directory API call");
                let why = if status >= 500 {
                    RetryReason::ServerError
                } else {
                    RetryReason::RateLimited
                };
                self.backoff(attempt, retry_after, why).await;
                continue;
            }
            return Err(self.classify(method, status, err, attempt));
        }
    }

    async fn send(
        &self,
        url: &url::Url,
        token: &Secret,
    ) -> Result<(u16, Option<Duration>, bytes::Bytes), String> {
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{}: {}", self.api_url, e.without_url()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer failed: {}", e.without_url()))?;
        Ok((status, retry_after, body))
    }

    async fn backoff(&self, attempt: u32, retry_after: Option<Duration>, why: RetryReason) {
        let jitter: f64 = rand::random();
        let d = self
            .options
            .retry
            .delay(attempt.saturating_sub(1), jitter, retry_after);
        metrics::api_retry(Api::Directory, &self.source, why, d);
        self.options.sleeper.sleep(d).await;
    }

    fn classify(
        &self,
        method: &'static str,
        status: u16,
        err: ApiError,
        attempts: u32,
    ) -> DirectoryError {
        let creds = self.tokens.credentials();
        match status {
            400 => DirectoryError::BadRequest {
                method,
                reason: err.reason,
                message: err.message,
            },
            401 => DirectoryError::Unauthorized {
                method,
                message: err.message,
                fix: creds.unauthorized_fix(),
            },
            403 if is_retryable(403, &err.reason) => DirectoryError::RateLimited {
                method,
                reason: err.reason,
                attempts,
            },
            403 => DirectoryError::Forbidden {
                method,
                fix: creds.forbidden_fix(method),
                reason: err.reason,
                message: err.message,
            },
            404 => DirectoryError::NotFound {
                what: method.to_string(),
                message: err.message,
            },
            429 => DirectoryError::RateLimited {
                method,
                reason: err.reason,
                attempts,
            },
            s if s >= 500 => DirectoryError::Unavailable {
                method,
                status: format!("HTTP {s} {}", err.reason),
                message: err.message,
                attempts,
            },
            s => DirectoryError::Http {
                method,
                status: s,
                message: err.message,
            },
        }
    }

    /// All pages of one list call as a stream; `make_url` gets the page token.
    fn pages<'a, P, T>(
        &'a self,
        method: &'static str,
        make_url: impl Fn(Option<&str>) -> url::Url + Send + Sync + 'a,
        convert: SplitPage<P, T>,
    ) -> Pages<'a, T>
    where
        P: DeserializeOwned + Send + 'a,
        T: Send + 'a,
    {
        let make_url = Arc::new(make_url);
        let stream = futures_util::stream::try_unfold(Some(None::<String>), move |state| {
            let make_url = make_url.clone();
            async move {
                let Some(token) = state else {
                    return Ok(None);
                };
                let url = make_url(token.as_deref());
                let page: P = self.get_json(method, &url).await?;
                let (items, next) = convert(page)?;
                let next = next.filter(|t| !t.is_empty());
                Ok(Some((items, next.map(Some))))
            }
        });
        Box::pin(stream)
    }

    /// groups.list?userKey= (all pages): the groups `key` is a direct member of.
    async fn groups_of(&self, key: &str) -> Result<Vec<GroupRef>, DirectoryError> {
        let size = self.options.groups_page_size.to_string();
        let key = key.to_string();
        let domain = self.domain.clone();
        let make = move |token: Option<&str>| {
            let mut q: Vec<(&str, &str)> = vec![
                ("userKey", key.as_str()),
                ("maxResults", size.as_str()),
                ("fields", GROUPS_FIELDS),
            ];
            // `customer` together with `userKey` is a 400 (google.md §2.1); `domain` is fine.
            if let Some(d) = &domain {
                q.push(("domain", d.as_str()));
            }
            if let Some(t) = token {
                q.push(("pageToken", t));
            }
            self.endpoint(&["groups"], &q)
        };
        let mut out = Vec::new();
        let mut pages = self.pages("groups.list", make, GroupsPage::split);
        loop {
            match pages.try_next().await {
                Ok(Some(page)) => out.extend(page),
                Ok(None) => return Ok(out),
                Err(DirectoryError::NotFound { .. }) => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }

    /// Lookup body of [`Directory::person`].
    async fn person_impl(&self, key: &str) -> Result<Option<PersonWithGroups>, DirectoryError> {
        let url = self.endpoint(&["users", key], &[("fields", USER_FIELDS)]);
        let user: ApiUser = match self.get_json("users.get", &url).await {
            Ok(u) => u,
            Err(DirectoryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let person = user.into_person("users.get")?;
        let mut found: BTreeMap<String, GroupRef> = BTreeMap::new();
        let mut level: Vec<String> = Vec::new();
        for g in self.groups_of(&person.id).await? {
            level.push(g.email.clone());
            found.insert(g.id.clone(), g);
        }
        if self.nested {
            // Walk up level by level: which groups contain the groups found so
            // far. One level's lookups run concurrently (login latency = depth x
            // round trip, not groups x round trip); `found` doubles as the
            // visited set, so a cycle ends the walk.
            while !level.is_empty() {
                let mut next = Vec::new();
                for chunk in level.chunks(NESTED_LOOKUP_CONCURRENCY) {
                    let lookups = chunk.iter().map(|email| self.groups_of(email));
                    for parents in futures_util::future::try_join_all(lookups).await? {
                        for parent in parents {
                            if !found.contains_key(&parent.id) {
                                next.push(parent.email.clone());
                                found.insert(parent.id.clone(), parent);
                            }
                        }
                    }
                }
                level = next;
            }
        }
        let mut groups: Vec<GroupRef> = found.into_values().collect();
        groups.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(Some(PersonWithGroups { person, groups }))
    }
}

impl Directory for GoogleDirectory {
    fn source(&self) -> &str {
        &self.source
    }

    fn person<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersonWithGroups>, DirectoryError>> {
        Box::pin(self.person_impl(key))
    }

    fn people(&self) -> Pages<'_, Person> {
        let size = self.options.users_page_size.to_string();
        let make = move |token: Option<&str>| {
            let (scope_key, scope_val) = self.scope_param();
            let mut q: Vec<(&str, &str)> = vec![
                (scope_key, scope_val),
                ("maxResults", size.as_str()),
                ("projection", "basic"),
                ("fields", USERS_FIELDS),
            ];
            if !self.users_query.is_empty() {
                q.push(("query", self.users_query.as_str()));
            }
            if let Some(t) = token {
                q.push(("pageToken", t));
            }
            self.endpoint(&["users"], &q)
        };
        self.pages("users.list", make, UsersPage::split)
    }

    fn groups(&self) -> Pages<'_, GroupRef> {
        let size = self.options.groups_page_size.to_string();
        let make = move |token: Option<&str>| {
            let (scope_key, scope_val) = self.scope_param();
            let mut q: Vec<(&str, &str)> = vec![
                (scope_key, scope_val),
                ("maxResults", size.as_str()),
                ("fields", GROUPS_FIELDS),
            ];
            if let Some(t) = token {
                q.push(("pageToken", t));
            }
            self.endpoint(&["groups"], &q)
        };
        self.pages("groups.list", make, GroupsPage::split)
    }

    fn members(&self, group_key: &str) -> Pages<'_, GroupMember> {
        let size = self.options.groups_page_size.to_string();
        let group_key = group_key.to_string();
        let make = move |token: Option<&str>| {
            let mut q: Vec<(&str, &str)> =
                vec![("maxResults", size.as_str()), ("fields", MEMBERS_FIELDS)];
            if let Some(t) = token {
                q.push(("pageToken", t));
            }
            self.endpoint(&["groups", group_key.as_str(), "members"], &q)
        };
        self.pages("members.list", make, MembersPage::split)
    }

    fn nested_groups(&self) -> bool {
        self.nested
    }
}
