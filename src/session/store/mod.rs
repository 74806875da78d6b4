//! `SessionStore`: where sessions live between requests. `cookie` keeps the whole
//! session in the encrypted cookie (stateless, any replica), `memory` keeps it in this
//! process, `redis` shares it (and revocations) between replicas. Stores never decide
//! lifetimes beyond their own expiry housekeeping; `Session::check` does.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Session, SessionPolicy};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

/// What the encrypted session cookie carries.
/// Externally tagged (`{"s":{..}}` / `{"r":{"id":..}}`): parsed without buffering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CookiePayload {
    /// The whole session (store = "cookie"), shared: the decoded-cookie memo and
    /// every request that presents the same cookie read one copy.
    #[serde(rename = "s")]
    Full(Arc<Session>),
    /// A reference to a server-side session (store = "memory" | "redis").
    #[serde(rename = "r")]
    Ref {
        /// The session id.
        id: String,
    },
}

impl CookiePayload {
    /// A copy that shares no memory with `self`: a proxy worker keeps one of its
    /// own so that reading it never touches another core's cache lines.
    pub fn worker_copy(&self) -> Self {
        match self {
            CookiePayload::Full(s) => CookiePayload::Full(Arc::new(Session::clone(s))),
            CookiePayload::Ref { id } => CookiePayload::Ref { id: id.clone() },
        }
    }

    /// The id of the session the payload refers to.
    pub fn session_id(&self) -> &str {
        match self {
            CookiePayload::Full(s) => &s.id,
            CookiePayload::Ref { id } => id,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered an error.
    #[error("session store redis error: {0}; check [session] redis_url and that redis is running")]
    Redis(#[from] ::redis::RedisError),
    /// A stored record could not be (de)serialised.
    #[error("session record could not be (de)serialised: {0}")]
    Serde(#[from] serde_json::Error),
    /// store = "redis" without `redis_url`.
    #[error("[session] store = \"redis\" needs redis_url (e.g. redis://127.0.0.1:6379)")]
    MissingRedisUrl,
    /// The cookie could not be built.
    #[error(transparent)]
    Cookie(#[from] super::CookieError),
}

/// Where sessions live. Object-safe so the proxy holds an `Arc<dyn SessionStore>`.
pub trait SessionStore: Send + Sync {
    /// Short name for logs and metrics ("cookie", "memory", "redis").
    fn kind(&self) -> &'static str;

    /// True when a revocation on one replica is seen by every other replica.
    fn shares_revocation(&self) -> bool;

    /// Resolves a decoded cookie payload to a session; `Ok(None)` when unknown,
    /// revoked or expired in the store.
    fn load(&self, payload: CookiePayload) -> BoxFuture<'_, Result<Option<Session>, StoreError>>;

    /// Stores `session` (until its absolute expiry) and returns what the cookie carries.
    fn save<'a>(
        &'a self,
        session: &'a Session,
        policy: &'a SessionPolicy,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<CookiePayload, StoreError>>;

    /// Revokes the session with this id (logout); a no-op for the cookie store.
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The stateless store: the whole session lives in the encrypted cookie.
/// Logout clears the cookie on this browser only (no server-side revocation).
#[derive(Debug, Default, Clone, Copy)]
pub struct CookieStore;

impl SessionStore for CookieStore {
    fn kind(&self) -> &'static str {
        "cookie"
    }

    fn shares_revocation(&self) -> bool {
        false
    }

    fn load(&self, payload: CookiePayload) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let out = match payload {
            CookiePayload::Full(s) => Some(Arc::unwrap_or_clone(s)),
            CookiePayload::Ref { .. } => None,
        };
        Box::pin(std::future::ready(Ok(out)))
    }

    fn save<'a>(
        &'a self,
        session: &'a Session,
        _policy: &'a SessionPolicy,
        _now: SystemTime,
    ) -> BoxFuture<'a, Result<CookiePayload, StoreError>> {
        Box::pin(std::future::ready(Ok(CookiePayload::Full(Arc::new(
            session.clone(),
        )))))
    }

    fn revoke<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
pub(crate) mod contract_tests;
