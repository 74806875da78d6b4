//! Sessions: the `Session` record and its pure lifetime checks, the encrypted cookie
//! codec (`cookie`), the stores (`store`) and the [`Sessions`] façade the proxy calls
//! per request. Nothing here talks to an IdP or an upstream.

pub mod conn_memo;
pub mod cookie;
pub mod decoded;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::admin::metrics;
use crate::config::{SessionSettings, SessionStoreKind};

pub use self::cookie::{
    strip_usher_cookies, usher_cookies_in, CookieCodec, CookieError, UsherCookieNames,
    UsherCookiesIn,
};
pub use self::store::{CookiePayload, SessionStore, StoreError};

/// One signed-in person on one browser. Keyed by `(idp, sub)`, never by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random 256-bit id (base64url); the key in server-side stores.
    #[serde(rename = "i")]
    pub id: String,
    /// `[[idp]] name` that signed the person in.
    #[serde(rename = "p")]
    pub idp: String,
    /// The IdP's stable subject (`sub`).
    #[serde(rename = "s")]
    pub sub: String,
    /// Verified email at sign-in.
    #[serde(rename = "e")]
    pub email: String,
    /// Target username (after mapping), sent in the user identity header.
    #[serde(rename = "u")]
    pub username: String,
    /// Group names sent upstream (BTree order kept by the caller).
    #[serde(default, rename = "g")]
    pub groups: Vec<String>,
    /// Human name for pages and the assertion.
    #[serde(default, rename = "n")]
    pub display_name: String,
    /// Unix seconds when the session was created (absolute `ttl` counts from here).
    #[serde(rename = "t")]
    pub issued_at: u64,
    /// Unix seconds of the last request seen (idle timeout counts from here).
    #[serde(rename = "l")]
    pub last_seen: u64,
    /// Unix seconds of the last directory re-check of the person.
    #[serde(rename = "r")]
    pub revalidated_at: u64,
    /// May open the admin console (`[admin] users`/`groups`); decided at sign-in and
    /// re-decided at revalidation. Defaults to false so older cookies still decode.
    #[serde(default, rename = "a", skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// The sign-in's access token, held only with `[[idp]] revoke_on_logout` so
    /// logout can revoke it at the IdP.
    #[serde(default, rename = "k", skip_serializing_if = "Option::is_none")]
    pub revoke_token: Option<HeldToken>,
}

/// Unix seconds of `t` (0 before the epoch, which never happens on a sane clock).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh random session id (256 bits, base64url without padding).
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lifetime limits from `[session]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Absolute lifetime from `issued_at`.
    pub ttl: Duration,
    /// Longest gap between two requests.
    pub idle_timeout: Duration,
    /// How often the person is re-checked in the directory.
    pub revalidate_after: Duration,
}

/// Why a decoded session is no longer usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// `issued_at + ttl` has passed.
    Expired,
    /// `last_seen + idle_timeout` has passed.
    Idle,
    /// Timestamps from the future (clock skew beyond a minute, or a forged record).
    FromTheFuture,
}

/// A token kept inside the (encrypted) session for one later use; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HeldToken(String);

impl HeldToken {
    /// Holds `secret`'s value.
    pub fn new(secret: &crate::config::Secret) -> Self {
        HeldToken(secret.expose().to_string())
    }

    /// The value, as a secret again (redacted in `Debug`).
    pub fn secret(&self) -> crate::config::Secret {
        crate::config::Secret::new(self.0.clone())
    }
}

impl std::fmt::Debug for HeldToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldToken(..)")
    }
}

/// Tolerated clock skew between replicas for timestamps in a session.
const SKEW_SECS: u64 = 60;

impl Session {
    /// A new session for a verified person, issued at `now`.
    pub fn new(idp: &str, sub: &str, email: &str, username: &str, now: SystemTime) -> Self {
        let t = unix_secs(now);
        Session {
            id: new_session_id(),
            idp: idp.to_string(),
            sub: sub.to_string(),
            email: email.to_string(),
            username: username.to_string(),
            groups: Vec::new(),
            display_name: String::new(),
            issued_at: t,
            last_seen: t,
            revalidated_at: t,
            admin: false,
            revoke_token: None,
        }
    }

    /// Pure lifetime check: `Ok` while within both the absolute ttl and the idle timeout.
    pub fn check(&self, policy: &SessionPolicy, now: SystemTime) -> Result<(), SessionEnd> {
        let now = unix_secs(now);
        if self.issued_at > now + SKEW_SECS || self.last_seen > now + SKEW_SECS {
            return Err(SessionEnd::FromTheFuture);
        }
        if now >= self.issued_at.saturating_add(policy.ttl.as_secs()) {
            return Err(SessionEnd::Expired);
        }
        if now >= self.last_seen.saturating_add(policy.idle_timeout.as_secs()) {
            return Err(SessionEnd::Idle);
        }
        Ok(())
    }

    /// True when `last_seen` is stale enough that it should be refreshed and saved
    /// (every minute, or a quarter of the idle timeout if that is shorter), so a
    /// stateless cookie is not re-issued on every request.
    pub fn touch_due(&self, policy: &SessionPolicy, now: SystemTime) -> bool {
        let step = (policy.idle_timeout.as_secs() / 4).clamp(1, 60);
        unix_secs(now) >= self.last_seen.saturating_add(step)
    }

    /// Marks activity at `now`.
    pub fn touch(&mut self, now: SystemTime) {
        self.last_seen = self.last_seen.max(unix_secs(now));
    }

    /// True when the person should be re-checked in the directory.
    pub fn revalidation_due(&self, policy: &SessionPolicy, now: SystemTime) -> bool {
        unix_secs(now)
            >= self
                .revalidated_at
                .saturating_add(policy.revalidate_after.as_secs())
    }

    /// Seconds until the absolute expiry (for cookie `Max-Age` and store TTLs).
    pub fn remaining(&self, policy: &SessionPolicy, now: SystemTime) -> Duration {
        let end = self.issued_at.saturating_add(policy.ttl.as_secs());
        Duration::from_secs(end.saturating_sub(unix_secs(now)))
    }
}

/// The per-request entry point: cookie codec + store + policy.
#[derive(Clone)]
pub struct Sessions {
    /// The session cookie codec (name, keys, attributes).
    pub codec: Arc<CookieCodec>,
    /// Where sessions live.
    pub store: Arc<dyn SessionStore>,
    /// Lifetime limits.
    pub policy: SessionPolicy,
    /// Cookies opened before (saves AES-GCM + JSON on every signed-in request).
    pub decoded: Arc<decoded::DecodedCookies>,
}

impl Sessions {
    /// Sessions over an already-built codec and store.
    pub fn new(codec: CookieCodec, store: Arc<dyn SessionStore>, policy: SessionPolicy) -> Self {
        Sessions {
            codec: Arc::new(codec),
            store,
            policy,
            decoded: Arc::default(),
        }
    }

    /// Builds codec, store and policy from `[session]`; `secure` is true when the public
    /// URL is https (adds `__Host-` and `Secure`). Connects to Redis for store = "redis"
    /// and starts the sweeper for store = "memory" (needs a Tokio runtime).
    pub async fn from_settings(
        settings: &SessionSettings,
        secure: bool,
    ) -> Result<Self, StoreError> {
        let codec = CookieCodec::new(
            &settings.cookie_name,
            "session",
            &settings.secret,
            &settings.previous_secrets,
            secure,
        )?;
        let policy = SessionPolicy {
            ttl: settings.ttl,
            idle_timeout: settings.idle_timeout,
            revalidate_after: settings.revalidate_after,
        };
        let store: Arc<dyn SessionStore> = match settings.store {
            SessionStoreKind::Cookie => Arc::new(store::CookieStore),
            SessionStoreKind::Memory => {
                let memory = store::MemoryStore::new();
                let every = (policy.idle_timeout / 4)
                    .clamp(Duration::from_secs(1), Duration::from_secs(60));
                // The sweeper holds a weak reference and ends when the store is dropped.
                drop(memory.spawn_sweeper(policy, every));
                memory
            }
            SessionStoreKind::Redis => {
                let url = settings
                    .redis_url
                    .clone()
                    .ok_or(StoreError::MissingRedisUrl)?;
                Arc::new(store::RedisStore::connect(&url).await?)
            }
        };
        Ok(Sessions::new(codec, store, policy))
    }

    /// The names of usher's own cookies, for stripping them before forwarding.
    pub fn cookie_names(&self, login_prefix: &str) -> UsherCookieNames {
        UsherCookieNames {
            session: self.codec.name().to_string(),
            login_prefix: login_prefix.to_string(),
        }
    }

    /// Resolves the request's session: decode the cookie, load from the store, check
    /// ttl/idle at `now`. Any failure (garbage, tampering, foreign key, expiry,
    /// revocation, store error) is `None`, so the caller starts a sign-in.
    pub async fn resolve(&self, cookie_header: &str, now: SystemTime) -> Option<Session> {
        self.resolve_shared(cookie_header, now)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Sessions::resolve`] for the request path: with the cookie store, the
    /// session is the memo's own copy (no clone of its strings per request); change
    /// it with `Arc::make_mut` only when it must change.
    pub async fn resolve_shared(
        &self,
        cookie_header: &str,
        now: SystemTime,
    ) -> Option<Arc<Session>> {
        let payload = self.payload(cookie_header)?;
        self.resolve_payload(payload, now).await
    }

    /// [`Sessions::resolve_shared`] for a request on a client connection that
    /// remembers its last cookie: the same `Cookie` header as the connection's
    /// previous request skips finding and opening the cookie, and the session
    /// read is the connection's own copy (see [`conn_memo`]).
    pub async fn resolve_on_connection(
        &self,
        cookie_header: &[u8],
        now: SystemTime,
        memo: &conn_memo::ConnCookieMemo,
    ) -> Option<Arc<Session>> {
        let payload = match memo.get(cookie_header) {
            Some(p) => p,
            None => {
                // usher's cookies are ASCII; another site's that is not UTF-8
                // (a legacy Latin-1 value) must not hide them. Borrowed, not
                // copied, when the header is UTF-8.
                let text = String::from_utf8_lossy(cookie_header);
                let p = self.payload(&text)?.worker_copy();
                memo.put(cookie_header, p.clone());
                p
            }
        };
        self.resolve_payload(payload, now).await
    }

    /// After a refresh (idle touch or revalidation) re-sealed the session cookie,
    /// makes this connection read the cookie it sent as the refreshed session.
    /// A browser stores the new cookie from the first response; until its next
    /// request arrives, and for ever with a client that never stores cookies (a
    /// script, a load tool), the old cookie would otherwise be found due again and
    /// re-sealed on every request: AES-GCM and a `Set-Cookie` each time, 60–70% more
    /// CPU per request (BENCHMARKS.md, ninth session). The absolute ttl still
    /// counts from the sign-in, and another connection still reads the old cookie
    /// as it is. Cookie store only: a server-side store keeps the refreshed
    /// session itself and is read on every request.
    pub fn remember_refresh(
        &self,
        cookie_header: &[u8],
        refreshed: &Arc<Session>,
        memo: &conn_memo::ConnCookieMemo,
    ) {
        if self.store.kind() == "cookie" {
            memo.put(cookie_header, CookiePayload::Full(refreshed.clone()));
        }
    }

    /// Loads (server-side stores) and checks the session a cookie payload names.
    async fn resolve_payload(
        &self,
        payload: CookiePayload,
        now: SystemTime,
    ) -> Option<Arc<Session>> {
        let session = match payload {
            CookiePayload::Full(s) if self.store.kind() == "cookie" => s,
            other => match self.store.load(other).await {
                Ok(Some(s)) => Arc::new(s),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable; treating request as signed out");
                    return None;
                }
            },
        };
        if let Err(end) = session.check(&self.policy, now) {
            metrics::session_ended(metrics::SessionEndReason::Lifetime(end));
            return None;
        }
        Some(session)
    }

    /// The session cookie's payload: from the memo when this exact (single-chunk)
    /// value was opened before, else decrypted and remembered.
    fn payload(&self, cookie_header: &str) -> Option<CookiePayload> {
        let raw = cookie::find_cookie(cookie_header, self.codec.name())?;
        let single = raw.starts_with("1.");
        if single {
            if let Some(p) = self.decoded.get(raw) {
                return Some(p);
            }
        }
        let payload: CookiePayload = self.codec.decode(cookie_header)?;
        if single {
            self.decoded.put(raw, &payload);
        }
        Some(payload)
    }

    /// Saves `session` and returns the `Set-Cookie` header values that carry it.
    pub async fn issue(
        &self,
        session: &Session,
        now: SystemTime,
    ) -> Result<Vec<String>, StoreError> {
        let payload = self.store.save(session, &self.policy, now).await?;
        let max_age = session.remaining(&self.policy, now);
        self.codec
            .encode(&payload, Some(max_age))
            .map_err(StoreError::Cookie)
    }

    /// Records activity: when `last_seen` is stale (see [`Session::touch_due`]), moves
    /// it to `now`, saves the session and returns the `Set-Cookie` values to send (the
    /// cookie store re-issues the cookie; server-side stores refresh the record and
    /// return the same small reference cookie). `Ok(None)` when nothing is due, which
    /// is the common case on the hot path.
    pub async fn touch_if_due(
        &self,
        session: &mut Session,
        now: SystemTime,
    ) -> Result<Option<Vec<String>>, StoreError> {
        if !session.touch_due(&self.policy, now) {
            return Ok(None);
        }
        session.touch(now);
        self.issue(session, now).await.map(Some)
    }

    /// Ends the session referenced by the cookie (revoking it in shared stores) and
    /// returns `Set-Cookie` values that clear every chunk.
    pub async fn end(&self, cookie_header: &str) -> Vec<String> {
        if let Some(payload) = self.codec.decode::<CookiePayload>(cookie_header) {
            metrics::session_ended(metrics::SessionEndReason::Logout);
            if let Err(e) = self.store.revoke(payload.session_id()).await {
                tracing::warn!(error = %e, "could not revoke session in the store; the cookie is cleared anyway");
            }
        }
        self.codec.clear()
    }
}

#[cfg(test)]
mod tests;
