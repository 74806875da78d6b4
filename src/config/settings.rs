//! The validated configuration: what the rest of usher reads. Everything here has
//! already been checked (addresses parsed, regexes compiled, secrets resolved), so
//! nothing downstream re-validates strings. Raw TOML shapes live in `raw.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use regex::{Regex, RegexSet};

use super::secret::Secret;

/// The whole validated configuration, built once at start-up by [`super::load`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file this came from (for messages); `None` for built-in configs (demo).
    pub source: Option<PathBuf>,
    pub server: ServerSettings,
    pub session: SessionSettings,
    pub idps: Vec<IdpSettings>,
    pub directory: Option<DirectorySettings>,
    pub upstreams: Vec<UpstreamSettings>,
    pub targets: Vec<TargetSettings>,
    pub provisioning: ProvisioningSettings,
    pub groups: GroupsSettings,
    pub sync: SyncSettings,
    pub state: StateSettings,
    pub admin: AdminSettings,
}

/// `[server]`: listeners, TLS and the limits that protect the process.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// External URL people type; the OIDC redirect URI is `public_url + /_usher/callback`.
    pub public_url: url::Url,
    pub tls: Option<TlsFiles>,
    pub admin_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*`/`Forwarded` headers are believed. Empty = trust nobody.
    pub trusted_proxies: Vec<IpNet>,
    /// Accepting threads, each a single-threaded runtime with its own listener and pool.
    /// 0 in the file means "one per CPU core".
    pub workers: usize,
    /// Open client connections allowed at once (over all workers); more are refused.
    pub max_connections: usize,
    /// Largest request head (request line + headers) accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Idle keep-alive time for client connections.
    pub keepalive_timeout: Duration,
}

/// PEM files for the public listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    Cookie,
    Memory,
    Redis,
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Current key material (>= 32 bytes).
    pub secret: Secret,
    pub previous_secrets: Vec<Secret>,
    pub cookie_name: String,
    pub ttl: Duration,
    pub idle_timeout: Duration,
    pub revalidate_after: Duration,
    pub store: SessionStoreKind,
    pub redis_url: Option<Secret>,
}

/// `kind` of an `[[idp]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKind {
    Google,
    Oidc,
}

/// One `[[idp]]`.
#[derive(Debug, Clone)]
pub struct IdpSettings {
    pub name: String,
    pub kind: IdpKind,
    pub issuer: url::Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// Lower-case domains.
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    /// Claim path for groups (`groups`, or dotted such as `realm_access.roles`).
    pub groups_claim: String,
    pub scim_token: Option<Secret>,
    /// Revoke the sign-in's access token at the IdP's `revocation_endpoint` on
    /// logout (usher then keeps that token, encrypted, in the session).
    pub revoke_on_logout: bool,
    /// Extra scopes beyond `openid email profile`.
    pub scopes: Vec<String>,
    /// Per-IdP override of `[provisioning] username`.
    pub username: Option<UsernameRule>,
    /// Per-IdP override of `[groups]`.
    pub groups: Option<GroupsSettings>,
}

/// `[directory]`: the Google Admin SDK.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    pub idp: String,
    pub customer: String,
    pub domain: Option<String>,
    pub api_url: url::Url,
    pub token_url: url::Url,
    pub nested_groups: bool,
    pub auth: DirectoryAuth,
    pub users_query: String,
    pub include_suspended: bool,
    /// Client-side budget, queries per minute.
    pub rate_limit_per_minute: u32,
}

/// How usher authenticates to the Admin SDK.
#[derive(Debug, Clone)]
pub enum DirectoryAuth {
    /// Service account JSON key + the admin it impersonates (domain-wide delegation).
    ServiceAccount { key: Secret, admin_subject: String },
    /// An admin consents once at `/_usher/admin/connect/google`; the refresh token is kept
    /// encrypted under `[state] dir`. Uses the directory IdP's OAuth client.
    OAuth,
}

/// Names of the identity headers for one upstream; `None` = do not send.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub groups: Option<HeaderName>,
}

/// One `[[upstream]]`.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    /// Lower-case host as sent in `Host`/`:authority`, without port unless configured with one.
    pub host: String,
    /// `http://` or `https://` origin (path ignored).
    pub url: url::Url,
    pub targets: Vec<String>,
    pub identity_headers: IdentityHeaders,
    pub assertion_header: Option<HeaderName>,
    pub passthrough: RegexSet,
    pub public: RegexSet,
    pub connect_timeout: Duration,
    /// Time until the upstream's response head arrives.
    pub response_timeout: Duration,
    /// Extra CA bundle (PEM) for `https://` upstreams.
    pub ca_file: Option<PathBuf>,
    /// Idle keep-alive connections kept per worker.
    pub max_idle_per_worker: usize,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Duration,
}

/// `kind` of a `[[target]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    Jira,
    Confluence,
    Bitbucket,
    Crowd,
    Scim,
}

/// How usher authenticates to a target.
#[derive(Debug, Clone)]
pub enum TargetAuth {
    Basic { username: String, password: Secret },
    Bearer { token: Secret },
}

/// One `[[target]]`.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub name: String,
    pub kind: TargetKind,
    pub url: url::Url,
    pub auth: TargetAuth,
    pub default_project_lead: Option<String>,
    pub default_component_lead: Option<String>,
    pub directory_id: Option<u64>,
    /// Requests in flight at once against this target.
    pub concurrency: usize,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

/// A regex + replacement rule (`(.*)@.*` -> `$1`).
#[derive(Debug, Clone)]
pub struct RewriteRule {
    pub regex: Regex,
    pub replacement: String,
}

/// `[provisioning] username`.
#[derive(Debug, Clone)]
pub struct UsernameRule {
    pub rule: RewriteRule,
    pub lowercase: bool,
}

/// `link_existing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkExisting {
    Email,
    Username,
    Never,
}

/// A protected user entry: exact name, or `re:` regex.
#[derive(Debug, Clone)]
pub enum UserPattern {
    Exact(String),
    Regex(Regex),
}

/// `on_failure` of login-time provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Deny,
    Allow,
}

/// `[provisioning.login]`.
#[derive(Debug, Clone)]
pub struct LoginProvisioning {
    pub enabled: bool,
    pub refresh_after: Duration,
    pub on_failure: OnFailure,
    pub timeout: Duration,
}

/// `[provisioning]`.
#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    pub username: UsernameRule,
    pub display_name: String,
    pub create_users: bool,
    pub update_users: bool,
    pub link_existing: LinkExisting,
    pub protected_users: Vec<UserPattern>,
    pub login: LoginProvisioning,
}

/// `[groups] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsMode {
    Manual,
    OnTheFly,
}

/// One `[[groups.map]]` entry.
#[derive(Debug, Clone)]
pub struct GroupMap {
    pub idp: String,
    pub target: Vec<String>,
}

/// `[groups]`.
#[derive(Debug, Clone)]
pub struct GroupsSettings {
    pub mode: GroupsMode,
    pub default_new_users: Vec<String>,
    pub default_all_users: Vec<String>,
    pub keep_existing: bool,
    pub filter: Option<Regex>,
    pub create_missing: bool,
    pub name: Option<RewriteRule>,
    pub map: Vec<GroupMap>,
}

/// `deprovision` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deprovision {
    None,
    Deactivate,
    RemoveGroups,
}

/// A limit given as a count or a percentage (`"5%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

/// `[sync]`.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `None` = no schedule.
    pub interval: Option<Duration>,
    pub jitter: Duration,
    pub deprovision: Deprovision,
    pub max_deprovision: Limit,
    pub max_changes: u64,
    /// Most members one sync may remove from a single group.
    pub max_group_removals: Limit,
    pub concurrency: usize,
    pub notify_webhook: Option<Secret>,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub redis_url: Option<Secret>,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Lower-case emails.
    pub users: Vec<String>,
    pub groups: Vec<String>,
}
