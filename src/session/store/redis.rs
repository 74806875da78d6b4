//! The shared session store: each session is a JSON value at `usher:session:{id}` with
//! a TTL equal to its remaining absolute lifetime, so every replica sees the same
//! sessions and a logout on one replica (DEL) is seen by all. Uses the `redis` crate's
//! reconnecting `ConnectionManager`; never logs session contents or the URL.

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;

use super::{CookiePayload, SessionStore, StoreError};
use crate::config::Secret;
use crate::session::{Session, SessionPolicy};

/// Key prefix of session records.
pub const KEY_PREFIX: &str = "usher:session:";

/// Sessions shared through Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

impl RedisStore {
    /// Connects to `redis_url` (`redis://host:port/db`); fails fast when unreachable.
    pub async fn connect(redis_url: &Secret) -> Result<Self, StoreError> {
        let conn = crate::replicas::connection(redis_url).await?;
        Ok(RedisStore { conn })
    }
}

impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn shares_revocation(&self) -> bool {
        true
    }

    fn load(&self, payload: CookiePayload) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            let CookiePayload::Ref { id } = payload else {
                return Ok(None);
            };
            let mut conn = self.conn.clone();
            let raw: Option<String> = redis::cmd("GET")
                .arg(key(&id))
                .query_async(&mut conn)
                .await?;
            match raw {
                Some(json) => Ok(Some(serde_json::from_str(&json)?)),
                None => Ok(None),
            }
        })
    }

    fn save<'a>(
        &'a self,
        session: &'a Session,
        policy: &'a SessionPolicy,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<CookiePayload, StoreError>> {
        Box::pin(async move {
            let ttl = session.remaining(policy, now).as_secs().max(1);
            let json = serde_json::to_string(session)?;
            let mut conn = self.conn.clone();
            let () = redis::cmd("SET")
                .arg(key(&session.id))
                .arg(json)
                .arg("EX")
                .arg(ttl)
                .query_async(&mut conn)
                .await?;
            Ok(CookiePayload::Ref {
                id: session.id.clone(),
            })
        })
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(key(id))
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }
}
