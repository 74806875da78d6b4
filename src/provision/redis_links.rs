//! Identity links shared by all replicas through Redis (`[state] redis_url`): one
//! hash per target, `usher:links:{target}`, field = the person (`["google","1042"]`
//! as JSON), value = the linked account (JSON). A new link is written with `HSETNX`,
//! so two replicas can never link one person twice. Owns durability only; the
//! rules live in `links`.
//!
//! `LinkStore` is synchronous, so this store uses a blocking Redis connection (one,
//! reconnected after an error, 2 s timeouts). Link calls are rare and sub-millisecond
//! on a nearby Redis: during a login (a few per sign-in) and per applied change in a
//! full sync (which runs on a blocking-pool thread).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Secret;
use crate::identity::ExternalId;

use super::link_store::{FileLinkStore, LinkError, LinkStore};
use super::links::LinkedAccount;

/// Key prefix of the per-target hashes.
pub const KEY_PREFIX: &str = "usher:links:";

/// Timeout of connecting and of every command.
const TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed connect, calls fail at once for this long instead of blocking
/// their thread on another connect (a login must not stall a worker while Redis
/// is unreachable).
const BACKOFF: Duration = Duration::from_secs(1);

/// Identity links in Redis.
pub struct RedisLinkStore {
    client: redis::Client,
    prefix: String,
    conn: Mutex<Option<redis::Connection>>,
    /// When the last connect failed, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for RedisLinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisLinkStore({})", self.prefix)
    }
}

fn field(id: &ExternalId) -> String {
    serde_json::json!([id.source, id.id]).to_string()
}

fn parse_field(f: &str) -> Option<ExternalId> {
    let (source, id): (String, String) = serde_json::from_str(f).ok()?;
    Some(ExternalId { source, id })
}

fn redis_err(op: &'static str) -> impl FnOnce(redis::RedisError) -> LinkError {
    move |e| LinkError::Redis {
        op,
        message: e.to_string(),
    }
}

fn decode(op: &'static str, json: &str) -> Result<LinkedAccount, LinkError> {
    serde_json::from_str(json).map_err(|e| LinkError::Redis {
        op,
        message: format!("a stored link is not what usher wrote: {e}"),
    })
}

fn encode(account: &LinkedAccount) -> Result<String, LinkError> {
    serde_json::to_string(account).map_err(|e| LinkError::Redis {
        op: "encode",
        message: e.to_string(),
    })
}

impl RedisLinkStore {
    /// Connects to `redis_url` (fails fast when unreachable).
    pub fn connect(redis_url: &Secret) -> Result<Self, LinkError> {
        Self::with_prefix(redis_url, KEY_PREFIX)
    }

    /// The store under another key prefix (tests run several on one Redis).
    pub fn with_prefix(redis_url: &Secret, prefix: &str) -> Result<Self, LinkError> {
        let client = redis::Client::open(redis_url.expose()).map_err(redis_err("open"))?;
        let store = RedisLinkStore {
            client,
            prefix: prefix.to_string(),
            conn: Mutex::new(None),
            down: Mutex::new(None),
        };
        store.with_conn("connect", |c| redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    fn key(&self, target: &str) -> String {
        format!("{}{target}", self.prefix)
    }

    /// A new connection, unless a connect failed less than [`BACKOFF`] ago.
    fn open(&self, op: &'static str) -> Result<redis::Connection, LinkError> {
        if let Ok(down) = self.down.lock() {
            if let Some((at, why)) = down.as_ref().filter(|(at, _)| at.elapsed() < BACKOFF) {
                return Err(LinkError::Redis {
                    op,
                    message: format!("{why} ({:?} ago; retrying after {BACKOFF:?})", at.elapsed()),
                });
            }
        }
        let opened = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .and_then(|c| {
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                Ok(c)
            });
        if let Ok(mut down) = self.down.lock() {
            *down = opened
                .as_ref()
                .err()
                .map(|e| (Instant::now(), e.to_string()));
        }
        opened.map_err(redis_err(op))
    }

    /// Runs `f` on the connection (opening it if needed). A connection that broke
    /// (Redis restarted, network blip) is replaced and `f` tried once more on the new
    /// one; every command here may safely run twice.
    fn with_conn<T>(
        &self,
        op: &'static str,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, LinkError> {
        let mut guard = self.conn.lock().map_err(|_| LinkError::Poisoned)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = match guard.as_mut() {
                Some(c) => c,
                None => guard.insert(self.open(op)?),
            };
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    *guard = None;
                    if attempt >= 2 {
                        return Err(redis_err(op)(e));
                    }
                }
                Err(e) => return Err(redis_err(op)(e)),
            }
        }
    }
}

impl RedisLinkStore {
    /// The key that records the one-time import of a `links.jsonl`.
    fn imported_key(&self) -> String {
        format!("{}imported", self.prefix)
    }

    /// Moving from one replica to several: copies the links of `<dir>/links.jsonl`
    /// (if there is one) for these targets into Redis, once per Redis (a marker key
    /// remembers it), never overwriting a link already in Redis. Returns how many
    /// links were added.
    pub fn import_file_once(
        &self,
        dir: &std::path::Path,
        targets: &[&str],
    ) -> Result<usize, LinkError> {
        if !dir.join(FileLinkStore::FILE).exists() {
            return Ok(0);
        }
        let done: Option<String> = self.with_conn("check the link import", |c| {
            redis::cmd("GET").arg(self.imported_key()).query(c)
        })?;
        if done.is_some() {
            return Ok(0);
        }
        let file = FileLinkStore::open(dir)?;
        let mut added = 0;
        for target in targets {
            for (id, account) in file.for_target(target)? {
                if self.put_new(target, &id, &account)?.is_none() {
                    added += 1;
                }
            }
        }
        let note = format!(
            "{added} link(s) from {} at {}",
            dir.join(FileLinkStore::FILE).display(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let _: () = self.with_conn("record the link import", |c| {
            redis::cmd("SET")
                .arg(self.imported_key())
                .arg(note.as_str())
                .query(c)
        })?;
        tracing::info!(
            added,
            "identity links imported from links.jsonl into redis (once)"
        );
        Ok(added)
    }
}

impl LinkStore for RedisLinkStore {
    fn get(&self, target: &str, id: &ExternalId) -> Result<Option<LinkedAccount>, LinkError> {
        let raw: Option<String> = self.with_conn("read a link", |c| {
            redis::cmd("HGET")
                .arg(self.key(target))
                .arg(field(id))
                .query(c)
        })?;
        raw.map(|j| decode("read a link", &j)).transpose()
    }

    fn for_target(&self, target: &str) -> Result<BTreeMap<ExternalId, LinkedAccount>, LinkError> {
        let all: Vec<(String, String)> = self.with_conn("read the links", |c| {
            redis::cmd("HGETALL").arg(self.key(target)).query(c)
        })?;
        let mut out = BTreeMap::new();
        for (f, v) in all {
            let Some(id) = parse_field(&f) else {
                tracing::warn!(
                    target,
                    "identity links: ignoring a malformed field in redis"
                );
                continue;
            };
            out.insert(id, decode("read the links", &v)?);
        }
        Ok(out)
    }

    fn put(&self, target: &str, id: &ExternalId, account: &LinkedAccount) -> Result<(), LinkError> {
        let json = encode(account)?;
        let _: i64 = self.with_conn("write a link", |c| {
            redis::cmd("HSET")
                .arg(self.key(target))
                .arg(field(id))
                .arg(json.as_str())
                .query(c)
        })?;
        Ok(())
    }

    fn remove(&self, target: &str, id: &ExternalId) -> Result<(), LinkError> {
        let _: i64 = self.with_conn("remove a link", |c| {
            redis::cmd("HDEL")
                .arg(self.key(target))
                .arg(field(id))
                .query(c)
        })?;
        Ok(())
    }

    fn put_new(
        &self,
        target: &str,
        id: &ExternalId,
        account: &LinkedAccount,
    ) -> Result<Option<LinkedAccount>, LinkError> {
        let json = encode(account)?;
        let (created, existing): (i64, Option<String>) =
            self.with_conn("write a new link", |c| {
                redis::pipe()
                    .atomic()
                    .cmd("HSETNX")
                    .arg(self.key(target))
                    .arg(field(id))
                    .arg(json.as_str())
                    .cmd("HGET")
                    .arg(self.key(target))
                    .arg(field(id))
                    .query(c)
            })?;
        if created == 1 {
            return Ok(None);
        }
        existing.map(|j| decode("write a new link", &j)).transpose()
    }
}
