//! Access tokens for the Admin SDK, two ways: a service account with
//! domain-wide delegation (RS256 JWT-bearer grant, `sub` = the admin it acts as)
//! or an OAuth client plus an admin's refresh token. Owns the token cache (valid
//! until shortly before expiry, judged by an injectable [`Clock`]) and the pure
//! consent helpers for `/_usher/admin/connect/google`. Never logs a token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::RsaKeyPair;
use serde::Deserialize;

use super::error::CONNECT_PATH;
use super::token_store::RefreshTokenStore;
use super::DirectoryError;
use crate::config::Secret;

/// Read-only scope for users.list/users.get.
pub const SCOPE_USER_READONLY: &str =
    "https://www.googleapis.com/auth/admin.directory.user.readonly";
/// Read-only scope for groups.list (and, through it, members.list).
pub const SCOPE_GROUP_READONLY: &str =
    "https://www.googleapis.com/auth/admin.directory.group.readonly";
/// The scopes usher asks for, in both auth modes.
pub const SCOPES: [&str; 2] = [SCOPE_USER_READONLY, SCOPE_GROUP_READONLY];
/// The `aud` Google's own libraries put into JWT-bearer assertions.
pub const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
/// The JWT-bearer grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A cached token is replaced this many seconds before Google says it expires.
pub const EXPIRY_MARGIN_SECS: u64 = 60;

/// Wall-clock seconds; injectable so tests can move time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock tests set and advance by hand (shared with the sandbox emulator).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `now` (Unix seconds).
    pub fn new(now: u64) -> Self {
        ManualClock(AtomicU64::new(now))
    }
    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A parsed service-account JSON key (the file Google Cloud console downloads).
/// `Debug` shows the account, never the key.
pub struct ServiceAccountKey {
    /// `client_email`: the JWT `iss`.
    pub client_email: String,
    /// `client_id`: the number an admin authorises under domain-wide delegation.
    pub client_id: String,
    /// `private_key_id`: put into the JWT header `kid`.
    pub private_key_id: String,
    key_pair: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    private_key_id: String,
    private_key: String,
}

impl ServiceAccountKey {
    /// Parses the JSON key file text (`type: service_account`, PKCS#8 PEM key).
    pub fn from_json(text: &str) -> Result<Self, DirectoryError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| DirectoryError::Key {
            detail: format!("not a service account JSON key: {e}"),
        })?;
        if file.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err(DirectoryError::Key {
                detail: "`type` is not \"service_account\"".into(),
            });
        }
        let der =
            pem_body(&file.private_key, "PRIVATE KEY").ok_or_else(|| DirectoryError::Key {
                detail: "`private_key` is not a PKCS#8 PEM block".into(),
            })?;
        let key_pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| DirectoryError::Key {
            detail: format!("`private_key` is not a usable RSA key ({e})"),
        })?;
        Ok(ServiceAccountKey {
            client_email: file.client_email,
            client_id: file.client_id,
            private_key_id: file.private_key_id,
            key_pair: Arc::new(key_pair),
        })
    }

    /// The public half as PKCS#1 `RSAPublicKey` DER (what the sandbox verifies with).
    pub fn public_key_der(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        self.key_pair.public_key().as_ref().to_vec()
    }

    /// Signs the JWT-bearer assertion for `subject` and `scopes`, valid one hour from `now`.
    pub fn assertion(
        &self,
        subject: &str,
        scopes: &[&str],
        audience: &str,
        now: u64,
    ) -> Result<String, DirectoryError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": subject,
            "scope": scopes.join(" "),
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| DirectoryError::Key {
                detail: "signing the JWT assertion failed".into(),
            })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// Decodes the base64 body of the first PEM block labelled `label`.
pub fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

/// How usher proves who it is to Google.
pub enum Credentials {
    /// Domain-wide delegation: the service account acts as `subject` (an admin).
    ServiceAccount {
        key: ServiceAccountKey,
        subject: String,
    },
    /// An admin consented once; their refresh token sits encrypted in `store`.
    OAuth {
        client_id: String,
        client_secret: Secret,
        store: RefreshTokenStore,
    },
}

impl Credentials {
    /// The fix to print when Google answers 403 `forbidden` for `method`.
    pub fn forbidden_fix(&self, method: &str) -> String {
        let scope = if method.starts_with("users.") {
            SCOPE_USER_READONLY
        } else {
            SCOPE_GROUP_READONLY
        };
        match self {
            Credentials::ServiceAccount { key, subject } => format!(
                "{method} needs scope {scope}. In the Google Admin console open Security > Access and data control > \
                 API controls > Domain-wide delegation and authorise client ID {} with the scopes {}; make sure \
                 admin_subject {subject} is a Workspace admin allowed to read users and groups, and that the \
                 Admin SDK API is enabled in the service account's Google Cloud project",
                key.client_id,
                SCOPES.join(",")
            ),
            Credentials::OAuth { .. } => format!(
                "{method} needs scope {scope}. A Workspace admin allowed to read users and groups must open \
                 {CONNECT_PATH} again and grant {}; check that the Admin SDK API is enabled in the OAuth \
                 client's Google Cloud project",
                SCOPES.join(" ")
            ),
        }
    }

    /// The fix to print when the API answers 401 even to a fresh token.
    pub fn unauthorized_fix(&self) -> String {
        match self {
            Credentials::ServiceAccount { key, .. } => format!(
                "the access token of service account {} was rejected; check that the account and its key \
                 still exist and are enabled, then restart usher",
                key.client_email
            ),
            Credentials::OAuth { .. } => {
                format!("the admin's grant is no longer valid; reconnect at {CONNECT_PATH}")
            }
        }
    }

    fn token_refused_fix(&self, error: &str) -> String {
        match (self, error) {
            (Credentials::ServiceAccount { key, .. }, "unauthorized_client") => format!(
                "domain-wide delegation is missing: in the Google Admin console open Security > Access and data \
                 control > API controls > Domain-wide delegation, add client ID {} with the scopes {} (changes \
                 can take up to 24 h)",
                key.client_id,
                SCOPES.join(",")
            ),
            (Credentials::ServiceAccount { subject, .. }, "invalid_grant") => format!(
                "admin_subject {subject} must be an existing, active user of the Workspace (and this machine's \
                 clock must be correct)"
            ),
            (Credentials::ServiceAccount { .. }, _) => {
                "check that [directory] service_account_key is a current key of an enabled service account".into()
            }
            (Credentials::OAuth { .. }, "invalid_grant") => format!(
                "the admin's refresh token was revoked or expired (consent screens in \"Testing\" status expire \
                 them after 7 days); reconnect at {CONNECT_PATH}"
            ),
            (Credentials::OAuth { .. }, _) => format!(
                "check the directory IdP's client_id and client_secret, then reconnect at {CONNECT_PATH}"
            ),
        }
    }
}

/// A token with the moment (Unix seconds) it must no longer be used.
struct Cached {
    token: Secret,
    refresh_at: u64,
}

/// Hands out access tokens, minting a new one only when the cached one is
/// within [`EXPIRY_MARGIN_SECS`] of expiry. Concurrent callers share one mint.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: url::Url,
    credentials: Credentials,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<Option<Cached>>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenProvider {
    /// A provider posting to `token_url` (Google's, or the sandbox's).
    pub fn new(
        http: reqwest::Client,
        token_url: url::Url,
        credentials: Credentials,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TokenProvider {
            http,
            token_url,
            credentials,
            clock,
            cache: tokio::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// The credentials (for error messages that name the fix).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// How many token requests were sent so far.
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A valid access token, from the cache or freshly minted.
    pub async fn token(&self) -> Result<Secret, DirectoryError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now_unix();
        if let Some(c) = cache.as_ref() {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let (token, expires_in) = self.mint(now).await?;
        let lifetime = expires_in.unwrap_or(3600);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: now + lifetime.saturating_sub(EXPIRY_MARGIN_SECS),
        });
        Ok(token)
    }

    /// Forgets the cached token (after a 401), so the next call mints a new one.
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn mint(&self, now: u64) -> Result<(Secret, Option<u64>), DirectoryError> {
        let form: Vec<(&str, String)> = match &self.credentials {
            Credentials::ServiceAccount { key, subject } => {
                let assertion = key.assertion(subject, &SCOPES, GOOGLE_TOKEN_AUDIENCE, now)?;
                vec![("grant_type", JWT_BEARER.into()), ("assertion", assertion)]
            }
            Credentials::OAuth {
                client_id,
                client_secret,
                store,
            } => {
                // Read each time (once an hour): a reconnect replaces the file.
                let refresh = store.load()?.ok_or(DirectoryError::NotConnected)?;
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh.expose().to_string()),
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.expose().to_string()),
                ]
            }
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(token_url = %self.token_url, "requesting a Google access token");
        let answer = post_token_form(&self.http, &self.token_url, &form).await;
        let answer = answer.map_err(|e| match e {
            TokenFailure::Refused { error, description } => DirectoryError::TokenRefused {
                fix: self.credentials.token_refused_fix(&error),
                error,
                description,
            },
            TokenFailure::Other(e) => e,
        })?;
        Ok((Secret::new(answer.access_token), answer.expires_in))
    }
}

enum TokenFailure {
    Refused { error: String, description: String },
    Other(DirectoryError),
}

async fn post_token_form(
    http: &reqwest::Client,
    token_url: &url::Url,
    form: &[(&str, String)],
) -> Result<TokenAnswer, TokenFailure> {
    let resp = http
        .post(token_url.clone())
        .form(form)
        .send()
        .await
        .map_err(|e| {
            TokenFailure::Other(DirectoryError::Unavailable {
                method: "token",
                status: "no answer".into(),
                message: format!("{token_url}: {}", e.without_url()),
                attempts: 1,
            })
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| {
        TokenFailure::Other(DirectoryError::Protocol {
            method: "token",
            detail: format!("body could not be read: {}", e.without_url()),
        })
    })?;
    if status.is_success() {
        return serde_json::from_slice::<TokenAnswer>(&body).map_err(|e| {
            TokenFailure::Other(DirectoryError::Protocol {
                method: "token",
                detail: format!("token answer is not JSON with access_token: {e}"),
            })
        });
    }
    match serde_json::from_slice::<TokenErrorAnswer>(&body) {
        Ok(err) if status.is_client_error() => Err(TokenFailure::Refused {
            error: err.error,
            description: err.error_description,
        }),
        _ => Err(TokenFailure::Other(DirectoryError::Unavailable {
            method: "token",
            status: status.to_string(),
            message: "token endpoint failed".into(),
            attempts: 1,
        })),
    }
}

/// The URL an admin is sent to for consent (refresh-token mode): offline access,
/// forced consent (so Google returns a refresh token) and the read-only scopes.
pub fn consent_url(
    authorization_endpoint: &url::Url,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
) -> url::Url {
    let mut url = authorization_endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &SCOPES.join(" "))
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("include_granted_scopes", "true")
        .append_pair("state", state);
    url
}

/// Exchanges the consent `code` for the admin's refresh token (to be saved with
/// [`RefreshTokenStore::save`]). Fails if Google returns no refresh token.
pub async fn exchange_code(
    http: &reqwest::Client,
    token_url: &url::Url,
    client_id: &str,
    client_secret: &Secret,
    code: &str,
    redirect_uri: &str,
) -> Result<Secret, DirectoryError> {
    let form = [
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("client_id", client_id.to_string()),
        ("client_secret", client_secret.expose().to_string()),
        ("redirect_uri", redirect_uri.to_string()),
    ];
    let answer = post_token_form(http, token_url, &form)
        .await
        .map_err(|e| match e {
            TokenFailure::Refused { error, description } => DirectoryError::TokenRefused {
                fix: format!(
                    "the consent code was refused; start again at {CONNECT_PATH} (codes are single-use and expire within minutes)"
                ),
                error,
                description,
            },
            TokenFailure::Other(e) => e,
        })?;
    answer
        .refresh_token
        .map(Secret::new)
        .ok_or_else(|| DirectoryError::TokenRefused {
            error: "no_refresh_token".into(),
            description: "Google granted access but returned no refresh token".into(),
            fix: format!(
                "revoke usher's access under the admin's Google account > Security > Third-party access, then connect again at {CONNECT_PATH}"
            ),
        })
}
