//! Emulator of the Google Admin SDK Directory API v1 (users, groups, members;
//! paths, bodies, `kind`/`etag`, `nextPageToken` paging, `fields` masks, the
//! §2.4 query subset and Google's error envelope, per google.md and
//! admin.directory_v1.json) plus the OAuth `/token` endpoint for both directory
//! auth modes. Seeded from a [`DirectorySeed`]; faults injectable; request
//! counters inspectable. Read-only: it never changes its directory over HTTP.

mod api;
pub mod query;
mod resources;
#[cfg(test)]
mod schema_tests;
pub mod seed;
mod token;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use crate::directory::google_auth::{Clock, SystemClock};
use crate::sandbox::faults::{Faults, Injected};
use crate::sandbox::http::{serve, Handler, Running};

pub use seed::{
    generate_service_account_key, DirectorySeed, MemberKey, SeedGroup, SeedMember, SeedOAuthClient,
    SeedRefreshToken, SeedRole, SeedServiceAccount, SeedUser,
};
pub use token::ACCESS_TOKEN_SECS;

/// Who a membership row points at (indices into the emulator's tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    User(u32),
    Group(u32),
    Customer,
}

/// One direct membership row, 12 bytes (a million of them stay small).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub who: Who,
    pub role: SeedRole,
}

/// A group with resolved member rows.
#[derive(Debug, Clone)]
pub(crate) struct EmuGroup {
    pub id: String,
    pub email: String,
    pub name: String,
    pub description: String,
    pub aliases: Vec<String>,
    pub rows: Vec<Row>,
}

/// The directory as the emulator holds it.
#[derive(Debug)]
pub(crate) struct Data {
    pub customer_id: String,
    pub domain: String,
    pub users: Vec<SeedUser>,
    user_keys: HashMap<String, u32>,
    pub groups: Vec<EmuGroup>,
    group_keys: HashMap<String, u32>,
    /// Direct groups of each user / of each group (for `groups.list?userKey=`).
    pub user_groups: Vec<Vec<u32>>,
    pub group_parents: Vec<Vec<u32>>,
    pub service_accounts: Vec<SeedServiceAccount>,
    pub oauth_clients: HashMap<String, String>,
}

impl Data {
    /// A user by id, primary email or alias (any case).
    pub fn user(&self, key: &str) -> Option<u32> {
        self.user_keys.get(&key.to_ascii_lowercase()).copied()
    }
    /// A group by id, email or alias (any case).
    pub fn group(&self, key: &str) -> Option<u32> {
        self.group_keys.get(&key.to_ascii_lowercase()).copied()
    }
}

/// An access token the emulator issued and what it allows.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: u64,
}

/// An error a test asks the emulator to answer with, in Google's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleFault {
    /// 429 `rateLimitExceeded`, `status: RESOURCE_EXHAUSTED`.
    TooManyRequests,
    /// 503 `backendError`.
    BackendError,
    /// 403 `rateLimitExceeded` (domain `usageLimits`).
    RateLimitExceeded,
    /// 403 `userRateLimitExceeded` (domain `usageLimits`).
    UserRateLimitExceeded,
    /// 403 `forbidden` "Not Authorized to access this resource/api".
    Forbidden,
    /// 401 `authError` "Invalid Credentials" (whatever token was sent).
    InvalidCredentials,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON of the wrong shape (`users` is a string).
    WrongShape,
}

/// A counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub users_list: Counter,
    pub users_get: Counter,
    pub groups_list: Counter,
    pub groups_get: Counter,
    pub members_list: Counter,
    pub members_get: Counter,
    pub has_member: Counter,
    pub token_jwt: Counter,
    pub token_refresh: Counter,
    pub token_code: Counter,
    pub faults: Counter,
    pub rejected: Counter,
}

/// Request counts so far (a copy; tests compare before/after).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub users_list: u64,
    pub users_get: u64,
    pub groups_list: u64,
    pub groups_get: u64,
    pub members_list: u64,
    pub members_get: u64,
    pub has_member: u64,
    pub token_jwt: u64,
    pub token_refresh: u64,
    pub token_code: u64,
    /// Requests answered with an injected fault.
    pub faults: u64,
    /// Requests refused (auth, scope, bad parameters, unknown paths).
    pub rejected: u64,
}

impl RequestCounts {
    /// All Directory API requests (every route, faults included).
    pub fn api_total(&self) -> u64 {
        self.users_list
            + self.users_get
            + self.groups_list
            + self.groups_get
            + self.members_list
            + self.members_get
            + self.has_member
    }
    /// All token endpoint requests.
    pub fn token_total(&self) -> u64 {
        self.token_jwt + self.token_refresh + self.token_code
    }
}

/// The running emulator's state. Share it (`Arc`) between the server and the test.
pub struct GoogleDirectoryEmulator {
    data: RwLock<Data>,
    access: Mutex<HashMap<String, Grant>>,
    refresh: Mutex<HashMap<String, token::OAuthGrant>>,
    codes: Mutex<HashMap<String, token::OAuthGrant>>,
    /// Generic faults (429 / 503 / latency / truncated pages), rendered Google-style.
    pub faults: Faults,
    google_faults: Mutex<VecDeque<GoogleFault>>,
    counts: Counters,
    clock: Arc<dyn Clock>,
    base_url: OnceLock<String>,
    log: Mutex<VecDeque<String>>,
}

/// How many request lines [`GoogleDirectoryEmulator::requests`] keeps.
const LOG_CAP: usize = 4096;

/// Why a seed cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("group {group}: member {member:?} is neither a user nor a group of the seed")]
    UnknownMember { group: String, member: String },
    #[error("group {group}: member index {index} is out of range")]
    BadIndex { group: String, index: u32 },
}

impl GoogleDirectoryEmulator {
    /// Builds the state from `seed`, judging token lifetimes by `clock`.
    pub fn new(seed: DirectorySeed, clock: Arc<dyn Clock>) -> Result<Self, SeedError> {
        let user_keys = seed.user_keys();
        let group_keys = seed.group_keys();
        let n_users = seed.users.len();
        let n_groups = seed.groups.len();
        let mut user_groups = vec![Vec::new(); n_users];
        let mut group_parents = vec![Vec::new(); n_groups];
        let mut groups = Vec::with_capacity(n_groups);
        let mut customer_groups = Vec::new();
        for (gi, g) in (0u32..).zip(seed.groups) {
            let mut rows = Vec::with_capacity(g.members.len());
            for m in g.members {
                let who = match m.key {
                    MemberKey::Email(key) => {
                        let k = key.to_ascii_lowercase();
                        match (user_keys.get(&k), group_keys.get(&k)) {
                            (Some(&u), _) => Who::User(u),
                            (None, Some(&c)) => Who::Group(c),
                            _ => {
                                return Err(SeedError::UnknownMember {
                                    group: g.email,
                                    member: key,
                                })
                            }
                        }
                    }
                    MemberKey::UserIndex(i) if (i as usize) < n_users => Who::User(i),
                    MemberKey::GroupIndex(i) if (i as usize) < n_groups => Who::Group(i),
                    MemberKey::UserIndex(index) | MemberKey::GroupIndex(index) => {
                        return Err(SeedError::BadIndex {
                            group: g.email,
                            index,
                        })
                    }
                    MemberKey::Customer(_) => Who::Customer,
                };
                match who {
                    Who::User(u) => user_groups[u as usize].push(gi),
                    Who::Group(c) => group_parents[c as usize].push(gi),
                    // Everyone belongs to a group that has the customer as member.
                    Who::Customer => customer_groups.push(gi),
                }
                rows.push(Row { who, role: m.role });
            }
            groups.push(EmuGroup {
                id: g.id,
                email: g.email.to_ascii_lowercase(),
                name: g.name,
                description: g.description,
                aliases: g.aliases,
                rows,
            });
        }
        if !customer_groups.is_empty() {
            for list in &mut user_groups {
                list.extend(&customer_groups);
                list.sort_unstable();
                list.dedup();
            }
        }
        let mut refresh = HashMap::new();
        let mut oauth_clients = HashMap::new();
        for c in seed.oauth_clients {
            for t in c.refresh_tokens {
                refresh.insert(
                    t.token,
                    token::OAuthGrant {
                        client_id: c.client_id.clone(),
                        subject: t.subject,
                        scopes: t.scopes,
                        redirect_uri: String::new(),
                    },
                );
            }
            oauth_clients.insert(c.client_id, c.client_secret);
        }
        Ok(GoogleDirectoryEmulator {
            data: RwLock::new(Data {
                customer_id: seed.customer_id,
                domain: seed.domain.to_ascii_lowercase(),
                users: seed.users,
                user_keys,
                groups,
                group_keys,
                user_groups,
                group_parents,
                service_accounts: seed.service_accounts,
                oauth_clients,
            }),
            access: Mutex::new(HashMap::new()),
            refresh: Mutex::new(refresh),
            codes: Mutex::new(HashMap::new()),
            faults: Faults::default(),
            google_faults: Mutex::new(VecDeque::new()),
            counts: Counters::default(),
            clock,
            base_url: OnceLock::new(),
            log: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Data> {
        // A poisoned lock only means a test thread panicked mid-write; the data is still usable.
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT` once started (empty before).
    pub fn base_url(&self) -> String {
        self.base_url.get().cloned().unwrap_or_default()
    }

    /// Request counts so far.
    pub fn counts(&self) -> RequestCounts {
        let c = &self.counts;
        RequestCounts {
            users_list: c.users_list.get(),
            users_get: c.users_get.get(),
            groups_list: c.groups_list.get(),
            groups_get: c.groups_get.get(),
            members_list: c.members_list.get(),
            members_get: c.members_get.get(),
            has_member: c.has_member.get(),
            token_jwt: c.token_jwt.get(),
            token_refresh: c.token_refresh.get(),
            token_code: c.token_code.get(),
            faults: c.faults.get(),
            rejected: c.rejected.get(),
        }
    }

    /// The last request lines (`GET /admin/...?query`), oldest first; never tokens.
    pub fn requests(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues `fault` for the next `times` Directory API requests (before [`Self::faults`]).
    pub fn inject(&self, fault: GoogleFault, times: usize) {
        if let Ok(mut q) = self.google_faults.lock() {
            q.extend(std::iter::repeat_n(fault, times));
        }
    }

    /// Drops every injected fault not consumed yet (a test ending an outage).
    pub fn clear_injected(&self) {
        if let Ok(mut q) = self.google_faults.lock() {
            q.clear();
        }
    }
}

impl crate::sandbox::google_oidc::ConsentIssuer for GoogleDirectoryEmulator {
    /// Issues a consent code as if `subject` had approved `client_id` (what the
    /// OIDC `/authorize` page redirects back with).
    fn issue_consent_code(
        &self,
        client_id: &str,
        subject: &str,
        scopes: &[&str],
        redirect_uri: &str,
    ) -> String {
        let code = format!("4/sandbox-{:032x}", rand::random::<u128>());
        if let Ok(mut c) = self.codes.lock() {
            c.insert(
                code.clone(),
                token::OAuthGrant {
                    client_id: client_id.to_string(),
                    subject: subject.to_string(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    redirect_uri: redirect_uri.to_string(),
                },
            );
        }
        code
    }
}

impl GoogleDirectoryEmulator {
    /// Invalidates every access token issued so far (API answers 401 to them).
    pub fn revoke_access_tokens(&self) {
        if let Ok(mut a) = self.access.lock() {
            a.clear();
        }
    }

    /// Revokes every refresh token (the token endpoint answers `invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        if let Ok(mut r) = self.refresh.lock() {
            r.clear();
        }
    }

    /// A copy of one user as the emulator holds it now (by id, email or alias).
    pub fn user(&self, key: &str) -> Option<SeedUser> {
        let data = self.read();
        data.user(key).map(|i| data.users[i as usize].clone())
    }

    /// How many users and groups the emulator holds.
    pub fn sizes(&self) -> (usize, usize) {
        let data = self.read();
        (data.users.len(), data.groups.len())
    }

    /// Suspends or reactivates a user (by any key); false if unknown.
    pub fn set_suspended(&self, key: &str, suspended: bool) -> bool {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        match data.user(key) {
            Some(i) => {
                data.users[i as usize].suspended = suspended;
                true
            }
            None => false,
        }
    }

    /// Adds (`member = true`) or removes a user's direct membership of a group, as
    /// an admin editing the group would. False if either key names nothing.
    pub fn set_member(&self, group: &str, user: &str, member: bool) -> bool {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let (Some(g), Some(u)) = (data.group(group), data.user(user)) else {
            return false;
        };
        let rows = &mut data.groups[g as usize].rows;
        rows.retain(|r| r.who != Who::User(u));
        if member {
            rows.push(Row {
                who: Who::User(u),
                role: SeedRole::Member,
            });
        }
        let direct = &mut data.user_groups[u as usize];
        direct.retain(|&x| x != g);
        if member {
            direct.push(g);
            direct.sort_unstable();
        }
        true
    }

    /// Changes a user's primary email as a Workspace admin renaming the account
    /// would: the id stays and the old address becomes an alias. False if `key`
    /// names nobody or `new_email` already belongs to someone else.
    pub fn rename_user(&self, key: &str, new_email: &str) -> bool {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let Some(i) = data.user(key) else {
            return false;
        };
        let new_key = new_email.to_ascii_lowercase();
        if data.user(&new_key).is_some_and(|j| j != i) {
            return false;
        }
        let user = &mut data.users[i as usize];
        let old = std::mem::replace(&mut user.primary_email, new_key.clone());
        if !user.aliases.iter().any(|a| a.eq_ignore_ascii_case(&old)) {
            user.aliases.push(old);
        }
        user.aliases.retain(|a| !a.eq_ignore_ascii_case(&new_key));
        data.user_keys.insert(new_key, i);
        true
    }

    fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |req: Request<Bytes>| {
            let me = me.clone();
            Box::pin(async move { me.handle(req).await })
        })
    }

    async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let latency = self.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let path = req.uri().path().to_string();
        if let Ok(mut log) = self.log.lock() {
            if log.len() >= LOG_CAP {
                log.pop_front();
            }
            let q = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            log.push_back(format!("{} {path}{q}", req.method()));
        }
        if path == "/token" && req.method() == Method::POST {
            return self.token_endpoint(&req);
        }
        // Older clients call www.googleapis.com with the same paths; any host is fine.
        match path.strip_prefix("/admin/directory/v1/") {
            Some(rest) => self.api(&req, rest),
            None => {
                self.counts.rejected.inc();
                api::google_error(StatusCode::NOT_FOUND, "notFound", "global", "Not Found")
            }
        }
    }

    /// The next injected fault, if any, as a response.
    fn injected(&self) -> Option<Response<Bytes>> {
        let fault = self
            .google_faults
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front());
        let resp = match fault {
            Some(f) => api::fault_response(f),
            None => match self.faults.take()? {
                Injected::RateLimited { retry_after_secs } => {
                    let mut r = api::fault_response(GoogleFault::TooManyRequests);
                    if retry_after_secs > 0 {
                        if let Ok(v) = http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                            r.headers_mut().insert(http::header::RETRY_AFTER, v);
                        }
                    }
                    r
                }
                Injected::ServerError => api::fault_response(GoogleFault::BackendError),
            },
        };
        self.counts.faults.inc();
        Some(resp)
    }
}

/// Starts an emulator for `seed` on an ephemeral loopback port with the real clock.
pub async fn start(
    seed: DirectorySeed,
) -> std::io::Result<(Arc<GoogleDirectoryEmulator>, Running)> {
    start_with(([127, 0, 0, 1], 0).into(), seed, Arc::new(SystemClock)).await
}

/// Starts an emulator for `seed` on `addr`, judging token lifetimes by `clock`.
pub async fn start_with(
    addr: SocketAddr,
    seed: DirectorySeed,
    clock: Arc<dyn Clock>,
) -> std::io::Result<(Arc<GoogleDirectoryEmulator>, Running)> {
    let emu = GoogleDirectoryEmulator::new(seed, clock)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let emu = Arc::new(emu);
    let running = serve(addr, emu.handler()).await?;
    let _ = emu.base_url.set(running.url());
    Ok((emu, running))
}
