//! The sync service inside `usher serve`: runs full syncs one at a time (a run in
//! progress makes the next scheduled tick or "sync now" skip), on the `[sync]
//! interval` plus a random jitter, keeps the last reports in memory for the admin
//! console, and notifies the webhook after each run. Stops scheduling on shutdown.
//! With `[state] redis_url` (several replicas) only the holder of the leader lease
//! runs the schedule (due times shared in Redis), every run holds the shared run
//! lock (so two replicas never sync at once) and reports are shared.
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
use crate::replicas::run_lock::{self, RunLock};
use crate::replicas::{lease_period, LeaderLease, Shared, SharedReports};

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

/// Why "sync now" did not start a sync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A sync is running here or on another replica.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Several replicas: the shared run lock could not be checked, so starting could
    /// run two syncs at once.
    #[error("the shared sync run lock is unavailable ({0}); check [state] redis_url and that redis is running")]
    SharedStateUnavailable(String),
}

/// When the next scheduled sync is due (ms since the epoch).
pub const NEXT_DUE_KEY: &str = "usher:sync:next-due";

pub use crate::replicas::run_lock::{run_lock_ttl, RUN_KEY};

/// What the leader's scheduler does at a tick, given the shared due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// No due time yet (first leader ever), or one further away than a whole
    /// delay (the interval was shortened): set one, one delay from now.
    Schedule,
    /// Not due yet.
    Wait,
    /// Due: set the next due time and start a sync.
    Run,
}

/// The pure schedule decision of the leader; `longest` is the longest delay between
/// two runs (interval plus jitter).
pub fn tick(next_due: Option<SystemTime>, now: SystemTime, longest: Duration) -> Tick {
    match next_due {
        None => Tick::Schedule,
        Some(due) if due > now + longest => Tick::Schedule,
        Some(due) if now < due => Tick::Wait,
        Some(_) => Tick::Run,
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Redis side of the service.
struct SharedSync {
    shared: Shared,
    reports: SharedReports,
    lease: Arc<LeaderLease>,
    run_ttl: Duration,
}

impl SharedSync {
    async fn next_due(&self) -> Result<Option<SystemTime>, crate::replicas::SharedError> {
        Ok(self
            .shared
            .get(NEXT_DUE_KEY)
            .await?
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
    }

    async fn set_next_due(&self, due: SystemTime) -> Result<(), crate::replicas::SharedError> {
        let mut conn = self.shared.conn();
        let () = redis::cmd("SET")
            .arg(NEXT_DUE_KEY)
            .arg(epoch_ms(due))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The sync id in the shared run lock, if a run holds it.
    async fn running(&self) -> Option<String> {
        run_lock::running(&self.shared).await.ok().flatten()
    }
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
    shared: Option<SharedSync>,
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
            shared: None,
        }
    }

    /// Shares the service with the other replicas through Redis: the leader lease
    /// (period from [`lease_period`] of `[sync] interval`), the run lock and reports.
    pub fn with_shared(mut self, shared: Shared) -> Self {
        let period = lease_period(self.settings.sync.interval);
        self.shared = Some(SharedSync {
            reports: SharedReports::new(shared.clone()),
            lease: LeaderLease::new(shared.clone(), period),
            run_ttl: run_lock_ttl(period),
            shared,
        });
        self
    }

    /// Several replicas: whether this one holds the sync leader lease (`None` when
    /// usher runs alone).
    pub fn is_leader(&self) -> Option<bool> {
        self.shared.as_ref().map(|s| s.lease.is_leader())
    }

    /// Shutdown: gives the sync leader lease up at once (several replicas), so
    /// another replica takes the schedule over without waiting for it to expire.
    /// Call after signalling shutdown and before the process exits.
    pub async fn resign(&self) {
        if let Some(sh) = &self.shared {
            sh.lease.resign().await;
        }
    }

    /// Several replicas: the replica id of the current sync leader (`None` when usher
    /// runs alone, without a schedule, or while no replica holds the lease).
    pub async fn leader(&self) -> Option<String> {
        self.shared.as_ref()?.lease.leader().await
    }

    /// Several replicas: this replica's id (`None` when usher runs alone).
    pub fn replica(&self) -> Option<&str> {
        self.shared.as_ref().map(|s| s.shared.replica())
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
    /// `approved_by` applies it even past a safety limit and is recorded. With
    /// several replicas it starts only if it can take the shared run lock.
    /// `requested_by` (the admin who clicked) is recorded in the report and as
    /// `by` on the audit lines.
    pub async fn start_now(
        self: &Arc<Self>,
        dry_run: bool,
        requested_by: Option<String>,
        approved_by: Option<String>,
    ) -> Result<String, Refused> {
        self.start(Trigger::Admin, dry_run, requested_by, approved_by)
            .await
            .map(|(id, _)| id)
    }

    /// Where sync `id` stands (`None`: unknown or no longer kept). With several
    /// replicas, also runs and reports of the other replicas.
    pub async fn status(&self, id: &str) -> Option<RunStatus> {
        if let Some(s) = self.local_status(id) {
            return Some(s);
        }
        let sh = self.shared.as_ref()?;
        match sh.reports.get(id).await {
            Ok(Some(r)) => {
                return Some(RunStatus::Done {
                    report: Arc::new(r),
                })
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "shared sync report unreadable"),
        }
        if sh.running().await.as_deref() == Some(id) {
            let progress = sh
                .reports
                .progress(id)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            return Some(RunStatus::Running {
                id: id.to_string(),
                progress,
            });
        }
        None
    }

    fn local_status(&self, id: &str) -> Option<RunStatus> {
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

    /// The newest finished report (of any replica when shared).
    pub async fn last(&self) -> Option<Arc<SyncReport>> {
        if let Some(sh) = &self.shared {
            match sh.reports.last().await {
                Ok(r) => return r.map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %e, "shared sync reports unreadable; answering from this replica")
                }
            }
        }
        self.state.lock().ok()?.reports.back().cloned()
    }

    /// The last finished reports, newest first (of any replica when shared).
    pub async fn recent(&self) -> Vec<Arc<SyncReport>> {
        if let Some(sh) = &self.shared {
            match sh.reports.recent().await {
                Ok(r) => return r.into_iter().map(Arc::new).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "shared sync reports unreadable; answering from this replica")
                }
            }
        }
        self.state
            .lock()
            .map(|st| st.reports.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The id of the sync in progress, if any (on any replica when shared).
    pub async fn running(&self) -> Option<String> {
        let local = self
            .state
            .lock()
            .ok()
            .and_then(|st| st.running.as_ref().map(|(id, _)| id.clone()));
        match (local, &self.shared) {
            (Some(id), _) => Some(id),
            (None, Some(sh)) => sh.running().await,
            (None, None) => None,
        }
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

    fn finish_local(&self, report: Option<Arc<SyncReport>>) {
        if let Ok(mut st) = self.state.lock() {
            st.running = None;
            if let Some(report) = report {
                st.reports.push_back(report);
                while st.reports.len() > KEEP_REPORTS {
                    st.reports.pop_front();
                }
            }
        }
    }

    async fn start(
        self: &Arc<Self>,
        trigger: Trigger,
        dry_run: bool,
        requested_by: Option<String>,
        approved_by: Option<String>,
    ) -> Result<(String, JoinHandle<()>), Refused> {
        let progress = Arc::new(Progress::default());
        let id = new_sync_id(SystemTime::now());
        {
            let mut st = self.state.lock().map_err(|_| Busy {
                running: "unknown (state lock poisoned)".into(),
            })?;
            if let Some((running, _)) = &st.running {
                return Err(Busy {
                    running: running.clone(),
                }
                .into());
            }
            st.running = Some((id.clone(), progress.clone()));
        }
        let run_lock = match &self.shared {
            None => None,
            Some(sh) => {
                let taken = RunLock::take(
                    &sh.shared,
                    &id,
                    sh.run_ttl,
                    progress.clone(),
                    Some(sh.reports.clone()),
                    &self.handle,
                )
                .await;
                match taken {
                    Ok(Ok(lock)) => Some(lock),
                    Ok(Err(running)) => {
                        self.finish_local(None);
                        return Err(Busy { running }.into());
                    }
                    Err(e) => {
                        self.finish_local(None);
                        return Err(Refused::SharedStateUnavailable(e.to_string()));
                    }
                }
            }
        };
        let me = self.clone();
        let options = SyncOptions {
            dry_run,
            requested_by,
            approved_by,
            trigger,
            id: Some(id.clone()),
            replica: self.replica().map(str::to_string),
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
                if let (Some(sh), Some(lock)) = (&me.shared, run_lock) {
                    if let Err(e) = sh.reports.put(&report).await {
                        tracing::error!(sync_id = %report.id, error = %e, "the report could not be shared with the other replicas (the file copy exists)");
                    }
                    lock.release().await;
                }
                me.finish_local(Some(report.clone()));
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
        if let Some(sh) = &self.shared {
            self.handle.spawn(sh.lease.clone().run(shutdown.clone()));
            return Some(
                self.handle
                    .spawn(me.schedule_shared(interval, jitter, shutdown)),
            );
        }
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
            self.scheduled_start().await;
        }
        tracing::info!("sync schedule stopped");
    }

    async fn scheduled_start(self: &Arc<Self>) {
        match self.start(Trigger::Schedule, false, None, None).await {
            Ok((id, _)) => tracing::info!(sync_id = %id, "scheduled sync started"),
            Err(Refused::Busy(busy)) => {
                self.skipped_ticks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(running = %busy.running, "scheduled sync skipped: the previous one is still running");
            }
            Err(e) => {
                self.skipped_ticks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "scheduled sync skipped");
            }
        }
    }

    /// The schedule with several replicas: every replica looks often (a tenth of the
    /// lease period, 50 ms to 1 s), only the lease holder acts: it runs the sync when
    /// the shared due time has come and sets the next one, so a new leader continues
    /// the same schedule (and runs an overdue sync at once).
    async fn schedule_shared(
        self: Arc<Self>,
        interval: Duration,
        jitter: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(sh) = &self.shared else {
            return;
        };
        let poll =
            (sh.lease.period() / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tracing::info!(interval = ?interval, jitter = ?jitter, lease = ?sh.lease.period(), replica = %sh.shared.replica(), "sync schedule started (shared: the lease holder runs it)");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if !sh.lease.is_leader() {
                continue;
            }
            let now = SystemTime::now();
            let due = match sh.next_due().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "sync schedule: the shared due time is unreadable");
                    continue;
                }
            };
            let next = now + next_delay(interval, jitter, rand::random::<f64>());
            match tick(due, now, interval + jitter) {
                Tick::Wait => {}
                Tick::Schedule => {
                    if let Err(e) = sh.set_next_due(next).await {
                        tracing::warn!(error = %e, "sync schedule: could not share the due time");
                    }
                }
                Tick::Run => {
                    if let Err(e) = sh.set_next_due(next).await {
                        tracing::warn!(error = %e, "sync schedule: could not share the due time; not starting");
                        continue;
                    }
                    self.scheduled_start().await;
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

    #[test]
    fn the_leader_runs_when_the_shared_due_time_has_come() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        let h = s(3600);
        assert_eq!(tick(None, t0, h), Tick::Schedule);
        assert_eq!(tick(Some(t0 + s(1)), t0, h), Tick::Wait);
        assert_eq!(tick(Some(t0 + h), t0, h), Tick::Wait);
        assert_eq!(tick(Some(t0), t0, h), Tick::Run);
        assert_eq!(tick(Some(t0 - s(600)), t0, h), Tick::Run);
        // set under a longer interval than configured now: rescheduled
        assert_eq!(tick(Some(t0 + h), t0, s(300)), Tick::Schedule);
    }
}
