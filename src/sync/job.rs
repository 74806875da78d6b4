//! The sync service inside `usher serve`: runs full syncs one at a time (a run in
//! progress makes the next scheduled tick or "sync now" skip), on the `[sync]
//! interval` plus a random jitter, keeps the last reports in memory for the admin
//! console, and notifies the webhook after each run. Stops scheduling on shutdown.
//! What a run does is `run`'s business.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;

use super::notify;
use super::report::{new_sync_id, SyncReport, Trigger};
use super::run::{run, Progress, ProgressSnapshot, SyncOptions};
use super::sources::Sources;
use super::SyncError;

/// Finished reports kept in memory (all of them are also on disk).
pub const KEEP_REPORTS: usize = 20;

/// The delay before the next scheduled run: `interval` plus `jitter` scaled by
/// `r` in [0, 1) (random in production), so replicas and restarts spread out.
pub fn next_delay(interval: Duration, jitter: Duration, r: f64) -> Duration {
    interval + jitter.mul_f64(r.clamp(0.0, 1.0))
}

/// Where one sync stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RunStatus {
    /// Still going.
    Running {
        id: String,
        progress: ProgressSnapshot,
    },
    /// Finished; the report.
    Done { report: Arc<SyncReport> },
}

/// A sync is already running; its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync {running} is still running; wait for it to finish (one sync at a time)")]
pub struct Busy {
    pub running: String,
}

#[derive(Default)]
struct State {
    running: Option<(String, Arc<Progress>)>,
    reports: VecDeque<Arc<SyncReport>>,
}

/// Runs full syncs for `usher serve` and the admin console.
pub struct SyncService {
    settings: Arc<Settings>,
    sources: Sources,
    handle: Handle,
    state: Mutex<State>,
    skipped_ticks: AtomicU64,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl SyncService {
    /// A service over these sources; runs are spawned on `handle`.
    pub fn new(settings: Arc<Settings>, sources: Sources, handle: Handle) -> Self {
        SyncService {
            settings,
            sources,
            handle,
            state: Mutex::new(State::default()),
            skipped_ticks: AtomicU64::new(0),
        }
    }

    /// The service for a config with a `[directory]` and at least one `[[target]]`
    /// (`Ok(None)` otherwise: there is nothing to sync). Call inside a runtime.
    pub fn from_settings(settings: Arc<Settings>) -> Result<Option<Self>, SyncError> {
        if settings.directory.is_none() || settings.targets.is_empty() {
            return Ok(None);
        }
        let sources = Sources::from_settings(&settings)?;
        Ok(Some(Self::new(settings, sources, Handle::current())))
    }

    /// Starts a sync now (admin console "Synchronize"); returns its id at once.
    /// `approved_by` applies it even past a safety limit and is recorded.
    pub fn start_now(
        self: &Arc<Self>,
        dry_run: bool,
        approved_by: Option<String>,
    ) -> Result<String, Busy> {
        self.start(Trigger::Admin, dry_run, approved_by)
            .map(|(id, _)| id)
    }

    /// Where sync `id` stands (`None`: unknown or no longer kept in memory).
    pub fn status(&self, id: &str) -> Option<RunStatus> {
        let st = self.state.lock().ok()?;
        if let Some((rid, p)) = &st.running {
            if rid == id {
                return Some(RunStatus::Running {
                    id: rid.clone(),
                    progress: p.snapshot(),
                });
            }
        }
        st.reports
            .iter()
            .find(|r| r.id == id)
            .map(|r| RunStatus::Done { report: r.clone() })
    }

    /// The newest finished report.
    pub fn last(&self) -> Option<Arc<SyncReport>> {
        self.state.lock().ok()?.reports.back().cloned()
    }

    /// The id of the sync in progress, if any.
    pub fn running(&self) -> Option<String> {
        self.state
            .lock()
            .ok()?
            .running
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    /// The finished reports kept in memory, newest first (the admin console's list).
    pub fn recent(&self) -> Vec<Arc<SyncReport>> {
        self.state
            .lock()
            .map(|st| st.reports.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The directory and targets the syncs use (the admin person lookup reads the
    /// directory through them).
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Scheduled ticks skipped because a sync was still running.
    pub fn skipped_ticks(&self) -> u64 {
        self.skipped_ticks.load(Ordering::Relaxed)
    }

    fn start(
        self: &Arc<Self>,
        trigger: Trigger,
        dry_run: bool,
        approved_by: Option<String>,
    ) -> Result<(String, JoinHandle<()>), Busy> {
        let progress = Arc::new(Progress::default());
        let id = new_sync_id(SystemTime::now());
        {
            let mut st = self.state.lock().map_err(|_| Busy {
                running: "unknown (state lock poisoned)".into(),
            })?;
            if let Some((running, _)) = &st.running {
                return Err(Busy {
                    running: running.clone(),
                });
            }
            st.running = Some((id.clone(), progress.clone()));
        }
        let me = self.clone();
        let options = SyncOptions {
            dry_run,
            approved_by,
            trigger,
            id: Some(id.clone()),
            ..SyncOptions::default()
        };
        // The run's future is polled on a blocking-pool thread: rustc cannot prove it
        // `Send` (higher-ranked lifetimes in the directory and apply streams,
        // rust#102211), and a sync is long and partly CPU-bound anyway. Its I/O still
        // runs on this runtime.
        let handle = self.handle.clone();
        let task = self.handle.spawn_blocking(move || {
            handle.block_on(async move {
                let report = Arc::new(run(&me.settings, &me.sources, &options, &progress).await);
                if let Ok(mut st) = me.state.lock() {
                    st.running = None;
                    st.reports.push_back(report.clone());
                    while st.reports.len() > KEEP_REPORTS {
                        st.reports.pop_front();
                    }
                }
                notify::after_run(me.settings.sync.notify_webhook.as_ref(), &report).await;
            })
        });
        Ok((id, task))
    }

    /// Starts the `[sync] interval` schedule on the service's runtime (`None` when no
    /// interval is configured). The loop ends when `shutdown` turns true; a run in
    /// progress then finishes on its own (every operation is idempotent and
    /// deactivation comes last, so an interrupted run is completed by the next).
    pub fn spawn_scheduler(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        let interval = self.settings.sync.interval.filter(|d| !d.is_zero())?;
        let jitter = self.settings.sync.jitter;
        let me = self.clone();
        Some(self.handle.spawn(me.schedule(interval, jitter, shutdown)))
    }

    async fn schedule(
        self: Arc<Self>,
        interval: Duration,
        jitter: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!(interval = ?interval, jitter = ?jitter, "sync schedule started");
        loop {
            let delay = next_delay(interval, jitter, rand::random::<f64>());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            match self.start(Trigger::Schedule, false, None) {
                Ok((id, _)) => tracing::info!(sync_id = %id, "scheduled sync started"),
                Err(busy) => {
                    self.skipped_ticks.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(running = %busy.running, "scheduled sync skipped: the previous one is still running");
                }
            }
        }
        tracing::info!("sync schedule stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_only_adds() {
        let i = Duration::from_secs(3600);
        let j = Duration::from_secs(300);
        assert_eq!(next_delay(i, j, 0.0), i);
        assert_eq!(next_delay(i, j, 0.5), i + Duration::from_secs(150));
        assert!(next_delay(i, j, 0.999) < i + j);
        assert_eq!(next_delay(i, j, 7.0), i + j);
    }
}
