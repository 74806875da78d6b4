//! The signed identity assertion sent upstream (`assertion_header`): an ES256 JWT
//! (iss = public_url, aud = upstream name, exp <= 60 s) signed with a P-256 key made at
//! start or kept in `[state] dir`, the JWKS that verifies it, the per-session cache
//! that keeps the hot path to one map lookup, and the plain identity header values.
//! It never logs tokens or keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dashmap::DashMap;
use http::HeaderValue;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

use crate::session::{unix_secs, Session};

/// Lifetime of one assertion (seconds); upstreams must reject older ones.
pub const ASSERTION_TTL_SECS: u64 = 60;
/// A cached assertion is re-signed when it has fewer than this many seconds left.
pub const REFRESH_BEFORE_SECS: u64 = 20;
/// Above this many cached tokens, expired ones are swept before inserting.
const MAX_CACHED: usize = 100_000;
/// File name of the signing key inside `[state] dir` (PKCS#8 DER, mode 0600).
pub const KEY_FILE: &str = "assertion-es256.p8";

/// Why an assertion could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// The key could not be generated, read or parsed.
    #[error("assertion signing key {path}: {cause}; delete the file to generate a new key")]
    Key {
        /// Where the key lives (or "<memory>").
        path: String,
        /// What went wrong.
        cause: String,
    },
    /// Signing failed (should not happen with a valid key).
    #[error("could not sign the identity assertion")]
    Sign,
    /// The claims could not be turned into a header value.
    #[error("identity assertion is not a valid header value")]
    Header,
}

/// The claims of the identity assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// usher's public URL.
    pub iss: String,
    /// The upstream name the token is for.
    pub aud: String,
    /// The IdP subject.
    pub sub: String,
    /// The `[[idp]]` name.
    pub idp: String,
    /// Verified email.
    pub email: String,
    /// Target username.
    pub username: String,
    /// Groups sent upstream.
    pub groups: Vec<String>,
    /// Display name.
    pub name: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Expiry (unix seconds), at most [`ASSERTION_TTL_SECS`] after `iat`.
    pub exp: u64,
}

/// The ES256 signing key and its public JWK.
pub struct AssertionSigner {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    header_b64: String,
    jwks: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .finish()
    }
}

fn key_err(path: &str, cause: impl std::fmt::Display) -> AssertionError {
    AssertionError::Key {
        path: path.to_string(),
        cause: cause.to_string(),
    }
}

impl AssertionSigner {
    /// A signer with a fresh in-memory key (assertions change key at every restart,
    /// so several replicas each publish their own JWKS; use [`Self::load_or_create`]
    /// with a shared dir to keep one key).
    pub fn generate(issuer: &str) -> Result<Self, AssertionError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| key_err("<memory>", "key generation failed"))?;
        Self::from_pkcs8(issuer, pkcs8.as_ref(), "<memory>")
    }

    /// Loads the key from `dir/assertion-es256.p8`, creating it (mode 0600) if absent.
    pub fn load_or_create(issuer: &str, dir: &Path) -> Result<Self, AssertionError> {
        let path: PathBuf = dir.join(KEY_FILE);
        let shown = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_pkcs8(issuer, &bytes, &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| key_err(&shown, "key generation failed"))?;
                std::fs::create_dir_all(dir).map_err(|e| key_err(&shown, e))?;
                match publish_private(dir, &path, pkcs8.as_ref()) {
                    Ok(()) => Self::from_pkcs8(issuer, pkcs8.as_ref(), &shown),
                    // Another replica sharing the state dir made the key first:
                    // theirs is complete (published atomically), use it.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let bytes = std::fs::read(&path).map_err(|e| key_err(&shown, e))?;
                        Self::from_pkcs8(issuer, &bytes, &shown)
                    }
                    Err(e) => Err(key_err(&shown, e)),
                }
            }
            Err(e) => Err(key_err(&shown, e)),
        }
    }

    fn from_pkcs8(issuer: &str, pkcs8: &[u8], shown: &str) -> Result<Self, AssertionError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| key_err(shown, format!("not a P-256 PKCS#8 key ({e})")))?;
        let public = key.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || X(32) || Y(32).
        if public.len() != 65 || public.first() != Some(&4) {
            return Err(key_err(shown, "unexpected public key encoding"));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, public);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        }]});
        Ok(AssertionSigner {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            kid,
            issuer: issuer.trim_end_matches('/').to_string(),
            jwks: jwks.to_string(),
        })
    }

    /// The key id in every token header and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The body of `GET /_usher/jwks.json`.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// The claims for `session` sent to upstream `audience` at `now`.
    pub fn claims(&self, session: &Session, audience: &str, now: SystemTime) -> AssertionClaims {
        let iat = unix_secs(now);
        AssertionClaims {
            iss: self.issuer.clone(),
            aud: audience.to_string(),
            sub: session.sub.clone(),
            idp: session.idp.clone(),
            email: session.email.clone(),
            username: session.username.clone(),
            groups: session.groups.clone(),
            name: session.display_name.clone(),
            iat,
            exp: iat + ASSERTION_TTL_SECS,
        }
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &AssertionClaims) -> Result<String, AssertionError> {
        let payload = serde_json::to_vec(claims).map_err(|_| AssertionError::Sign)?;
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let sig = self
            .key
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| AssertionError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
        Ok(token)
    }
}

/// Writes the key beside `path` under a private name, then links it into place:
/// the key file appears complete or not at all, so a replica starting at the same
/// moment either publishes its own or reads a whole one (`AlreadyExists`).
fn publish_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(".{KEY_FILE}.{:016x}", rand::random::<u64>()));
    write_private(&temp, bytes)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Everything the proxy inserts for one signed-in request, built once per token.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The signed assertion (value of `assertion_header`).
    pub assertion: HeaderValue,
    /// The plain identity header values; `None` when the session holds a value that
    /// cannot be sent safely (then send no identity header and log it).
    pub values: Option<IdentityValues>,
}

#[derive(Clone)]
struct Cached {
    headers: Arc<IdentityHeaders>,
    exp: u64,
    version: (u64, u64),
}

impl Cached {
    /// Whether this entry may still be sent for a session at `version` at `t`.
    fn fresh(&self, version: (u64, u64), t: u64) -> bool {
        self.version == version && self.exp > t + REFRESH_BEFORE_SECS
    }
}

impl IdentityHeaders {
    /// A copy sharing no memory, not even header bytes, with `self`: a clone
    /// would bump reference counts that every worker bumps.
    fn worker_copy(&self) -> Self {
        IdentityHeaders {
            assertion: own_copy(&self.assertion),
            values: self.values.as_ref().map(|v| IdentityValues {
                user: own_copy(&v.user),
                email: own_copy(&v.email),
                groups: own_copy(&v.groups),
            }),
        }
    }
}

/// The same header value in bytes of its own.
fn own_copy(v: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
    copy.set_sensitive(v.is_sensitive());
    copy
}

/// One client connection's last identity headers. A connection's requests come
/// from one session to one upstream, so the common case is a comparison of the
/// session id instead of a lookup in the cache every worker shares, and the
/// values inserted are this connection's own copies.
#[derive(Default)]
pub struct ConnIdentityMemo {
    last: std::sync::Mutex<Option<(u64, Box<str>, Cached)>>,
}

impl std::fmt::Debug for ConnIdentityMemo {
    /// Never shows the assertion (a bearer credential for the upstream).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnIdentityMemo").finish_non_exhaustive()
    }
}

impl ConnIdentityMemo {
    fn get(
        &self,
        cache: u64,
        session_id: &str,
        version: (u64, u64),
        t: u64,
    ) -> Option<Arc<IdentityHeaders>> {
        let last = self.last.lock().ok()?;
        match last.as_ref() {
            Some((c, id, cached))
                if *c == cache && **id == *session_id && cached.fresh(version, t) =>
            {
                Some(cached.headers.clone())
            }
            _ => None,
        }
    }

    fn put(&self, cache: u64, session_id: &str, cached: Cached) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((cache, session_id.into(), cached));
        }
    }
}

/// Per-upstream cache of ready-to-insert assertion header values, keyed by session id.
/// A token is re-signed only when it nears expiry or the session was re-validated.
pub struct AssertionCache {
    signer: Arc<AssertionSigner>,
    audience: String,
    /// By session id (random, and only ids of sessions that decrypted are
    /// inserted): foldhash, not SipHash, on this per-request lookup.
    entries: DashMap<String, Cached, foldhash::fast::RandomState>,
    /// Tells this cache's entries apart in a connection's memo.
    instance: u64,
}

impl AssertionCache {
    /// A cache for tokens with `aud = audience` (the upstream name).
    pub fn new(signer: Arc<AssertionSigner>, audience: &str) -> Self {
        AssertionCache {
            signer,
            audience: audience.to_string(),
            entries: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            instance: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The assertion header value for `session` at `now`: cached, or freshly signed.
    pub fn header_for(
        &self,
        session: &Session,
        now: SystemTime,
    ) -> Result<HeaderValue, AssertionError> {
        Ok(self.headers_for(session, now)?.assertion.clone())
    }

    /// The assertion and identity header values for `session` at `now`, cached per
    /// session until the token nears expiry or the session is re-validated. The hot
    /// path is one map lookup and one reference-count increment.
    pub fn headers_for(
        &self,
        session: &Session,
        now: SystemTime,
    ) -> Result<Arc<IdentityHeaders>, AssertionError> {
        Ok(self.cached_for(session, now)?.headers)
    }

    /// [`AssertionCache::headers_for`] for a request on a client connection that
    /// remembers its last identity headers (see [`ConnIdentityMemo`]).
    pub fn headers_on_connection(
        &self,
        session: &Session,
        now: SystemTime,
        memo: &ConnIdentityMemo,
    ) -> Result<Arc<IdentityHeaders>, AssertionError> {
        let version = (session.issued_at, session.revalidated_at);
        if let Some(h) = memo.get(self.instance, &session.id, version, unix_secs(now)) {
            return Ok(h);
        }
        let shared = self.cached_for(session, now)?;
        let own = Cached {
            headers: Arc::new(shared.headers.worker_copy()),
            ..shared
        };
        memo.put(self.instance, &session.id, own.clone());
        Ok(own.headers)
    }

    fn cached_for(&self, session: &Session, now: SystemTime) -> Result<Cached, AssertionError> {
        let t = unix_secs(now);
        let version = (session.issued_at, session.revalidated_at);
        if let Some(c) = self.entries.get(session.id.as_str()) {
            if c.fresh(version, t) {
                return Ok(c.clone());
            }
        }
        let claims = self.signer.claims(session, &self.audience, now);
        let token = self.signer.sign(&claims)?;
        let assertion = HeaderValue::from_str(&token).map_err(|_| AssertionError::Header)?;
        let headers = Arc::new(IdentityHeaders {
            assertion,
            values: identity_values(session),
        });
        if self.entries.len() >= MAX_CACHED {
            self.sweep(now);
        }
        let cached = Cached {
            headers,
            exp: claims.exp,
            version,
        };
        self.entries.insert(session.id.clone(), cached.clone());
        Ok(cached)
    }

    /// Drops the entry of a session that ended (logout).
    pub fn forget(&self, session_id: &str) {
        self.entries.remove(session_id);
    }

    /// Drops expired entries; call periodically. Returns how many were removed.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let t = unix_secs(now);
        let before = self.entries.len();
        self.entries.retain(|_, c| c.exp > t);
        before.saturating_sub(self.entries.len())
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The plain identity header values for a session (user, email, comma-joined groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityValues {
    /// Value of the `user` identity header.
    pub user: HeaderValue,
    /// Value of the `email` identity header.
    pub email: HeaderValue,
    /// Value of the `groups` identity header (`a,b,c`).
    pub groups: HeaderValue,
}

/// Builds the identity header values; `None` when a value contains a control
/// character or a group name contains `,` (which would forge an extra group).
pub fn identity_values(session: &Session) -> Option<IdentityValues> {
    fn value(s: &str) -> Option<HeaderValue> {
        if s.chars().any(char::is_control) {
            return None;
        }
        HeaderValue::from_bytes(s.as_bytes()).ok()
    }
    if session.groups.iter().any(|g| g.contains(',')) {
        return None;
    }
    Some(IdentityValues {
        user: value(&session.username)?,
        email: value(&session.email)?,
        groups: value(&session.groups.join(","))?,
    })
}

#[cfg(test)]
#[path = "assertion_tests.rs"]
mod tests;
