//! The sync leader lease: exactly one replica at a time holds `usher:sync:leader`
//! (an expiring lock), renews it every third of the lease period and is the only one
//! that runs the scheduled sync. When the leader dies its lease expires and the
//! first follower to ask takes it — followers sleep until the moment it expires, so
//! the takeover happens within one lease period of the last renewal. Owns holding
//! the lease; what the leader does with it is `sync::job`'s business.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::lock::{new_token, Held};
use super::Shared;

/// The lease key.
pub const LEADER_KEY: &str = "usher:sync:leader";

/// The longest lease: a dead leader is replaced within this.
pub const MAX_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease (very short sync intervals, tests).
pub const MIN_LEASE: Duration = Duration::from_secs(1);

/// The lease period for a `[sync] interval`: half the interval, between
/// [`MIN_LEASE`] and [`MAX_LEASE`] (30 s for any interval of a minute or more; 30 s
/// without a schedule). Half the interval keeps a failover shorter than a sync period.
pub fn lease_period(interval: Option<Duration>) -> Duration {
    match interval.filter(|i| !i.is_zero()) {
        Some(i) => (i / 2).clamp(MIN_LEASE, MAX_LEASE),
        None => MAX_LEASE,
    }
}

/// When to look at the lease again: a leader renews every third of the period; a
/// follower wakes just after the current lease expires (`left`), but at least every
/// third of the period; after a Redis error, retry after a tenth.
pub fn next_look(leader: bool, period: Duration, left: Option<Duration>, error: bool) -> Duration {
    let third = period / 3;
    if error {
        return period / 10;
    }
    if leader {
        return third;
    }
    match left {
        Some(l) => l.saturating_add(Duration::from_millis(5)).min(third),
        // Absent right after our SET failed: it was just released; ask again soon.
        None => Duration::from_millis(10).min(third),
    }
}

struct Holding {
    held: Held,
    /// Renewal sent at `t` makes the lease ours until at least `t + period` (Redis
    /// counts from when it received the command, which is later).
    valid_until: Instant,
}

/// This replica's side of the leader lease.
pub struct LeaderLease {
    shared: Shared,
    key: String,
    period: Duration,
    holding: Mutex<Option<Holding>>,
    /// Set by [`LeaderLease::resign`]: never take the lease again.
    stopped: AtomicBool,
}

impl std::fmt::Debug for LeaderLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLease")
            .field("replica", &self.shared.replica())
            .field("period", &self.period)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl LeaderLease {
    /// The lease on [`LEADER_KEY`] with this period.
    pub fn new(shared: Shared, period: Duration) -> Arc<Self> {
        Self::on_key(shared, LEADER_KEY, period)
    }

    /// The lease on another key (tests run several clusters on one Redis).
    pub fn on_key(shared: Shared, key: &str, period: Duration) -> Arc<Self> {
        Arc::new(LeaderLease {
            shared,
            key: key.to_string(),
            period,
            holding: Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }

    /// The lease period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The replica id this lease is held under.
    pub fn replica(&self) -> &str {
        self.shared.replica()
    }

    /// True while this replica holds the lease and the lease cannot have expired.
    pub fn is_leader(&self) -> bool {
        let now = Instant::now();
        self.holding
            .lock()
            .map(|h| h.as_ref().is_some_and(|h| now < h.valid_until))
            .unwrap_or(false)
    }

    /// The replica id of the current leader (from Redis), if any.
    pub async fn leader(&self) -> Option<String> {
        let v = self.shared.get(&self.key).await.ok()??;
        v.split_once(' ').map(|(r, _)| r.to_string())
    }

    fn held(&self) -> Option<Held> {
        self.holding
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.held.clone()))
    }

    fn set(&self, holding: Option<Holding>) {
        if let Ok(mut h) = self.holding.lock() {
            *h = holding;
        }
    }

    /// One look at the lease: renew it when held, else try to take it. Returns how
    /// long to wait before the next look. Publishes the `usher_sync_leader` gauge.
    pub async fn step(&self) -> Duration {
        let wait = self.look().await;
        crate::admin::metrics::sync_leader(self.is_leader());
        wait
    }

    async fn look(&self) -> Duration {
        if self.stopped.load(Ordering::SeqCst) {
            return self.period;
        }
        let sent = Instant::now();
        if let Some(held) = self.held() {
            match self.shared.renew(&held, self.period).await {
                Ok(true) => {
                    self.set(Some(Holding {
                        held,
                        valid_until: sent + self.period,
                    }));
                    return next_look(true, self.period, None, false);
                }
                Ok(false) => {
                    tracing::warn!(replica = %self.replica(), "lost the sync leader lease (it expired before it was renewed)");
                    self.set(None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the sync leader lease; retrying");
                    return next_look(true, self.period, None, true);
                }
            }
        }
        let value = format!("{} {}", self.replica(), new_token());
        match self.shared.try_lock(&self.key, value, self.period).await {
            Ok(Some(held)) if self.stopped.load(Ordering::SeqCst) => {
                // Resigned while asking: give it straight back.
                let _ = self.shared.release(&held).await;
                self.period
            }
            Ok(Some(held)) => {
                tracing::info!(replica = %self.replica(), lease = ?self.period, "this replica is now the sync leader");
                self.set(Some(Holding {
                    held,
                    valid_until: sent + self.period,
                }));
                next_look(true, self.period, None, false)
            }
            Ok(None) => {
                let left = self.shared.time_left(&self.key).await.ok().flatten();
                next_look(false, self.period, left, false)
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not ask for the sync leader lease; retrying");
                next_look(false, self.period, None, true)
            }
        }
    }

    /// Gives the lease up for good (shutdown), so another replica takes over at once.
    pub async fn resign(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let held = self.held();
        self.set(None);
        crate::admin::metrics::sync_leader(false);
        if let Some(held) = held {
            if let Err(e) = self.shared.release(&held).await {
                tracing::warn!(error = %e, "could not release the sync leader lease; it expires on its own");
            } else {
                tracing::info!(replica = %self.replica(), "resigned as sync leader");
            }
        }
    }

    /// Keeps or seeks the lease until `shutdown` turns true, then resigns.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = self.step().await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.resign().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_half_the_interval_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(lease_period(None), s(30));
        assert_eq!(lease_period(Some(s(0))), s(30));
        assert_eq!(lease_period(Some(s(3600))), s(30));
        assert_eq!(lease_period(Some(s(60))), s(30));
        assert_eq!(lease_period(Some(s(20))), s(10));
        assert_eq!(lease_period(Some(s(1))), s(1));
    }

    #[test]
    fn followers_wake_when_the_lease_expires() {
        let p = Duration::from_secs(30);
        assert_eq!(next_look(true, p, None, false), Duration::from_secs(10));
        assert_eq!(
            next_look(false, p, Some(Duration::from_millis(1200)), false),
            Duration::from_millis(1205)
        );
        assert_eq!(
            next_look(false, p, Some(Duration::from_secs(29)), false),
            Duration::from_secs(10)
        );
        assert_eq!(next_look(false, p, None, false), Duration::from_millis(10));
        // a lease key without expiry (set by hand): look every third, no overflow
        assert_eq!(
            next_look(false, p, Some(Duration::MAX), false),
            Duration::from_secs(10)
        );
        assert_eq!(next_look(true, p, None, true), Duration::from_secs(3));
    }
}
