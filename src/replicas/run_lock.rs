//! The shared run lock of full syncs, `usher:sync:run` (value `{sync id} {token}`):
//! whoever applies a full sync — a replica's schedule, "sync now" on any replica,
//! `usher sync` — holds it for the whole run, renewed every [`RUN_RENEW`] together
//! with the published progress, so two full syncs never run at once. Owns taking,
//! keeping and releasing the lock; the run itself is `sync::run`'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::lock::{new_token, Held};
use super::{Shared, SharedError, SharedReports};
use crate::sync::run::Progress;

/// The run lock key.
pub const RUN_KEY: &str = "usher:sync:run";

/// How often the running process renews the run lock and publishes its progress.
pub const RUN_RENEW: Duration = Duration::from_secs(1);

/// Lifetime of the run lock: the lease period, at least three renewals. A process
/// that dies mid-run blocks the others for at most this long.
pub fn run_lock_ttl(lease: Duration) -> Duration {
    lease.max(RUN_RENEW * 3)
}

/// The sync id of the run holding the lock, if any.
pub async fn running(shared: &Shared) -> Result<Option<String>, SharedError> {
    Ok(shared
        .get(RUN_KEY)
        .await?
        .and_then(|v| v.split_once(' ').map(|(id, _)| id.to_string())))
}

/// The run lock, held; renewed in the background until [`RunLock::release`].
#[derive(Debug)]
pub struct RunLock {
    shared: Shared,
    held: Held,
    keeper: JoinHandle<()>,
    sync_id: String,
}

impl RunLock {
    /// Takes the lock for run `sync_id` (`Ok(Err(id))`: run `id` holds it). While
    /// held, it is renewed to `ttl` and `progress` is published through `reports`
    /// every [`RUN_RENEW`], on `handle`'s runtime.
    pub async fn take(
        shared: &Shared,
        sync_id: &str,
        ttl: Duration,
        progress: Arc<Progress>,
        reports: Option<SharedReports>,
        handle: &Handle,
    ) -> Result<Result<RunLock, String>, SharedError> {
        let value = format!("{sync_id} {}", new_token());
        let Some(held) = shared.try_lock(RUN_KEY, value, ttl).await? else {
            let holder = running(shared)
                .await?
                .unwrap_or_else(|| "on another replica".into());
            return Ok(Err(holder));
        };
        let keeper = handle.spawn(keep(
            shared.clone(),
            held.clone(),
            ttl,
            sync_id.to_string(),
            progress,
            reports,
        ));
        Ok(Ok(RunLock {
            shared: shared.clone(),
            held,
            keeper,
            sync_id: sync_id.to_string(),
        }))
    }

    /// Stops renewing and releases the lock (the run is over).
    pub async fn release(self) {
        self.keeper.abort();
        match self.shared.release(&self.held).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(sync_id = %self.sync_id, "the sync run lock had expired before the run ended")
            }
            Err(e) => {
                tracing::warn!(sync_id = %self.sync_id, error = %e, "could not release the sync run lock; it expires on its own")
            }
        }
    }
}

async fn keep(
    shared: Shared,
    held: Held,
    ttl: Duration,
    id: String,
    progress: Arc<Progress>,
    reports: Option<SharedReports>,
) {
    loop {
        tokio::time::sleep(RUN_RENEW).await;
        match shared.renew(&held, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(sync_id = %id, "the sync run lock expired during the run; another sync may start")
            }
            Err(e) => {
                tracing::warn!(sync_id = %id, error = %e, "could not renew the sync run lock")
            }
        }
        if let Some(r) = &reports {
            let _ = r.set_progress(&id, &progress.snapshot()).await;
        }
    }
}
