//! Login-time provisioning single-flight across replicas: a Redis lock per person
//! (`usher:login:lock:{idp}:{sub}`, an expiring lock with a random token, released
//! with compare-and-delete) and the last admission of that person
//! (`usher:login:done:{idp}:{sub}`), so a replica that waited for another one's run
//! re-reads its result instead of provisioning again, and any replica skips people
//! provisioned within `refresh_after`. Owns the Redis side only; `login` decides.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::flow::Admitted;
use crate::replicas::lock::new_token;
use crate::replicas::{Held, Shared, SharedError};

/// How often a waiting replica looks at the lock.
const POLL: Duration = Duration::from_millis(25);

/// One person's last admission as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAdmission {
    /// When it was provisioned (ms since the epoch, the writer's clock).
    at_ms: u64,
    /// Who wrote it (replica id and a random token: two runs never look alike).
    by: String,
    username: String,
    groups: Vec<String>,
    display_name: String,
    /// The person's IdP groups (admin access is decided from them at sign-in).
    #[serde(default)]
    idp_groups: Vec<String>,
}

impl StoredAdmission {
    /// The admission it records.
    pub fn admitted(&self) -> Admitted {
        Admitted {
            username: self.username.clone(),
            groups: self.groups.clone(),
            display_name: self.display_name.clone(),
            idp_groups: self.idp_groups.clone(),
        }
    }

    /// Whether it is younger than `refresh` at `now`.
    pub fn fresh(&self, now: SystemTime, refresh: Duration) -> bool {
        let at = UNIX_EPOCH + Duration::from_millis(self.at_ms);
        now.duration_since(at).is_ok_and(|age| age < refresh)
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a replica that now holds a person's lock may reuse instead of provisioning:
/// the stored admission when it is fresh, or when it changed since before the lock
/// was taken (another replica provisioned the person while this one waited — no
/// clock comparison between replicas involved).
pub fn reusable(
    before: Option<&StoredAdmission>,
    after: Option<StoredAdmission>,
    now: SystemTime,
    refresh: Duration,
) -> Option<Admitted> {
    let after = after?;
    (before != Some(&after) || after.fresh(now, refresh)).then(|| after.admitted())
}

/// The Redis side of login single-flight.
#[derive(Debug, Clone)]
pub struct SharedFlight {
    shared: Shared,
    prefix: String,
}

impl SharedFlight {
    /// Under the `usher:login:` keys.
    pub fn new(shared: Shared) -> Self {
        Self::with_prefix(shared, "usher:login:")
    }

    /// Under another prefix (tests).
    pub fn with_prefix(shared: Shared, prefix: &str) -> Self {
        SharedFlight {
            shared,
            prefix: prefix.to_string(),
        }
    }

    fn lock_key(&self, idp: &str, sub: &str) -> String {
        format!("{}lock:{idp}:{sub}", self.prefix)
    }

    fn done_key(&self, idp: &str, sub: &str) -> String {
        format!("{}done:{idp}:{sub}", self.prefix)
    }

    /// The stored admission of this person, if any.
    pub async fn peek(&self, idp: &str, sub: &str) -> Result<Option<StoredAdmission>, SharedError> {
        match self.shared.get(&self.done_key(idp, sub)).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    /// Takes this person's lock, waiting up to `wait` for another replica's run;
    /// `Ok(None)` when it is still held after that. The lock expires after `ttl`.
    pub async fn lock(
        &self,
        idp: &str,
        sub: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Held>, SharedError> {
        let value = format!("{} {}", self.shared.replica(), new_token());
        self.shared
            .lock_within(&self.lock_key(idp, sub), value, ttl, wait, POLL)
            .await
    }

    /// Releases a lock taken with [`SharedFlight::lock`].
    pub async fn unlock(&self, held: &Held) {
        if let Err(e) = self.shared.release(held).await {
            tracing::warn!(error = %e, "could not release the login provisioning lock; it expires on its own");
        }
    }

    /// Records a successful admission, kept for `keep`.
    pub async fn record(
        &self,
        idp: &str,
        sub: &str,
        a: &Admitted,
        keep: Duration,
    ) -> Result<(), SharedError> {
        let json = serde_json::to_string(&StoredAdmission {
            at_ms: ms(SystemTime::now()),
            by: format!("{} {}", self.shared.replica(), new_token()),
            username: a.username.clone(),
            groups: a.groups.clone(),
            display_name: a.display_name.clone(),
            idp_groups: a.idp_groups.clone(),
        })?;
        let mut conn = self.shared.conn();
        let () = redis::cmd("SET")
            .arg(self.done_key(idp, sub))
            .arg(json)
            .arg("PX")
            .arg((keep.as_millis() as u64).max(1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Forgets the stored admission (the person lost access at revalidation).
    pub async fn forget(&self, idp: &str, sub: &str) {
        let mut conn = self.shared.conn();
        let r: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(self.done_key(idp, sub))
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not forget a shared login admission");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(at_s: u64, by: &str) -> StoredAdmission {
        StoredAdmission {
            at_ms: (1_800_000_000 + at_s) * 1000,
            by: by.into(),
            username: "ann".into(),
            groups: vec!["eng".into()],
            display_name: "Ann".into(),
            idp_groups: vec!["eng@example.com".into()],
        }
    }

    #[test]
    fn stored_admissions_are_reused_when_fresh_or_made_while_waiting() {
        let now = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let min = Duration::from_secs(60);
        // nothing stored: provision
        assert_eq!(reusable(None, None, now(0), min), None);
        // fresh within refresh_after
        let a = stored(0, "r1 t1");
        assert!(reusable(Some(&a), Some(a.clone()), now(30), min).is_some());
        // unchanged and too old: provision again
        assert_eq!(reusable(Some(&a), Some(a.clone()), now(90), min), None);
        // refresh_after = 0, but another replica provisioned while we waited
        let b = stored(91, "r2 t2");
        assert_eq!(
            reusable(Some(&a), Some(b.clone()), now(92), Duration::ZERO),
            Some(b.admitted())
        );
        assert!(reusable(None, Some(b.clone()), now(92), Duration::ZERO).is_some());
        // even when the other replica's clock is behind ours
        let late_clock = stored(10, "r2 t3");
        assert!(reusable(Some(&a), Some(late_clock), now(92), Duration::ZERO).is_some());
    }
}
