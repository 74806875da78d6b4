//! Expiring Redis locks with a random token: taken with `SET key value NX PX ttl`,
//! renewed with a compare-and-`PEXPIRE` script and released with a compare-and-`DEL`
//! script, so a holder whose lock expired can never extend or drop a lock someone
//! else took since. Owns the three primitives only; who locks what is the caller's.

use std::time::Duration;

use super::{Shared, SharedError};

/// Extends the lock only while it still holds our value.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Deletes the lock only while it still holds our value.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A lock this replica took: the key and the exact value it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    key: String,
    value: String,
}

impl Held {
    /// The lock's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value written (owner data and the random token).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// 128 random bits in hex: the part of a lock value nobody else can guess.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// PX argument: whole milliseconds, at least 1.
fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl Shared {
    /// Takes `key` for `ttl` if nobody holds it; `Ok(None)` when someone does.
    /// `value` should end with a [`new_token`].
    pub async fn try_lock(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
    ) -> Result<Option<Held>, SharedError> {
        let mut conn = self.conn();
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value.as_str())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(ok.map(|_| Held {
            key: key.to_string(),
            value,
        }))
    }

    /// Extends a held lock to `ttl` from now; `false` when it expired and is no longer
    /// ours (then the holder must stop acting on it).
    pub async fn renew(&self, held: &Held, ttl: Duration) -> Result<bool, SharedError> {
        let n: i64 = self
            .eval(
                RENEW,
                &[held.key.as_str()],
                &[held.value.clone(), millis(ttl).to_string()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Releases a held lock; `false` when it had already expired (or been taken over).
    pub async fn release(&self, held: &Held) -> Result<bool, SharedError> {
        let n: i64 = self
            .eval(
                RELEASE,
                &[held.key.as_str()],
                std::slice::from_ref(&held.value),
            )
            .await?;
        Ok(n == 1)
    }

    /// The value of `key` (who holds a lock), if any.
    pub async fn get(&self, key: &str) -> Result<Option<String>, SharedError> {
        let mut conn = self.conn();
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    /// How long until `key` expires (`None`: absent; `Duration::MAX`: no expiry).
    pub async fn time_left(&self, key: &str) -> Result<Option<Duration>, SharedError> {
        let mut conn = self.conn();
        let ms: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await?;
        Ok(match ms {
            -1 => Some(Duration::MAX),
            ms => u64::try_from(ms).ok().map(Duration::from_millis),
        })
    }

    /// Takes `key`, waiting up to `wait` for the holder to release it or for it to
    /// expire (polling every `poll`, or sooner when it expires sooner).
    /// `Ok(None)` when still held by someone else after `wait`.
    pub async fn lock_within(
        &self,
        key: &str,
        value: String,
        ttl: Duration,
        wait: Duration,
        poll: Duration,
    ) -> Result<Option<Held>, SharedError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(held) = self.try_lock(key, value.clone(), ttl).await? {
                return Ok(Some(held));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let left = self.time_left(key).await?.unwrap_or(poll);
            let nap = poll
                .min(left.saturating_add(Duration::from_millis(1)))
                .min(deadline - now);
            tokio::time::sleep(nap).await;
        }
    }
}
