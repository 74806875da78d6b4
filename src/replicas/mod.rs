//! Several replicas of usher sharing one Redis (`[state] redis_url`): the connection
//! and replica identity (`Shared`), expiring locks with fencing tokens (`lock`), the
//! sync leader lease (`lease`) and the shared sync reports (`reports`). Owns the Redis
//! key layout of everything but sessions (`session::store::redis`) and identity links
//! (`provision::redis_links`); decides nothing about what a sync or a login does.
//!
//! Keys (all under `usher:`):
//! - `usher:login:lock:{idp}:{sub}`: login-time provisioning lock of one person;
//!   `usher:login:done:{idp}:{sub}`: the last admission of that person (JSON, expiring).
//! - `usher:sync:leader`: the scheduled-sync lease (value = holder's replica id).
//! - `usher:sync:run`: the run lock of a full sync (value = `{sync id} {token}`);
//!   `usher:sync:progress`: the progress of that run (JSON).
//! - `usher:sync:next-due`: when the next scheduled sync is due (ms since the epoch).
//! - `usher:sync:reports`: ids of the last [`reports::KEEP`] reports, newest first;
//!   `usher:sync:report:{id}`: one report (JSON).

pub mod lease;
pub mod lock;
pub mod reports;
pub mod run_lock;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::Secret;

pub use lease::{lease_period, LeaderLease};
pub use lock::Held;
pub use reports::SharedReports;

/// Why a shared-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Redis could not be reached or answered an error.
    #[error("shared state (redis): {0}; check [state] redis_url and that redis is running")]
    Redis(#[from] redis::RedisError),
    /// A stored value could not be (de)serialised.
    #[error("shared state (redis): a stored value is not what usher wrote ({0}); delete the key or flush the usher:* keys")]
    Serde(#[from] serde_json::Error),
}

/// The connection to the shared Redis plus this replica's identity. Cheap to clone
/// (the connection multiplexes and reconnects on its own).
#[derive(Clone)]
pub struct Shared {
    conn: ConnectionManager,
    replica: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// A name for this process that is unique among the replicas: host, pid and 32
/// random bits (`jira-proxy-1:4711:9f3a0c12`). Shown in logs, held in the lease.
pub fn new_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "usher".to_string());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// A self-reconnecting Redis connection with short timeouts (2 s to connect and
/// per command, two quick retries): a Redis outage must cost a request seconds,
/// not hang it. Shared by the session store and the replica coordination.
pub async fn connection(redis_url: &Secret) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(redis_url.expose())?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config).await
}

impl Shared {
    /// Connects to `redis_url` (fails fast when Redis is unreachable) with a fresh
    /// replica id. Commands time out after 2 s; the connection reconnects by itself.
    pub async fn connect(redis_url: &Secret) -> Result<Self, SharedError> {
        let conn = connection(redis_url).await?;
        Ok(Shared {
            conn,
            replica: new_replica_id(),
        })
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A handle on the connection for one command (clones are cheap).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs a Lua script (`EVAL`) with keys and arguments.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, SharedError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        for a in args {
            cmd.arg(a.as_str());
        }
        let mut conn = self.conn();
        Ok(cmd.query_async(&mut conn).await?)
    }
}

#[cfg(test)]
mod tests;
