//! One full reconcile: read the whole directory and every selected target's managed
//! scope, map, plan per target, check the safety limits of ALL targets before
//! applying anything, apply with bounded concurrency, record links, audit lines and
//! the JSON report. A run whose reads failed never deprovisions (a target that
//! cannot be read is not planned at all; an unreadable directory stops the run).
//! Scheduling and presentation live in `job` and `cli`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::Settings;
use crate::directory::{snapshot, DirectorySnapshot};
use crate::identity::{GroupRef, PersonWithGroups};
use crate::provision::apply::{self, ApplyContext, OpOutcome};
use crate::provision::audit::{Actor, AuditLog};
use crate::provision::known_groups::KnownGroups;
use crate::provision::link_store::open_configured;
use crate::provision::mapping::{DesiredAccount, ManagedScope, Mapper, Skip};
use crate::provision::plan::{plan_for, Plan, PlanInput, Policy};
use crate::provision::{read_actual, LinkStore};
use crate::target::Target;

use super::report::{
    new_sync_id, rfc3339, write_report, SyncReport, SyncStatus, TargetReport, Trigger, MAX_LISTED,
};
use super::safety::{self, Limits};
use super::sources::{CallCounter, CountingTarget, Sources};

/// People mapped per batch: bounds the transient `PersonWithGroups` copies.
const MAP_BATCH: usize = 4096;

/// How to run one sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Plan and check only; change nothing (no links, no audit lines).
    pub dry_run: bool,
    /// `--source NAME`: must name the source the [`Sources`] read (the `[directory] idp`,
    /// or an SCIM-pushing `[[idp]]`; guards against syncing the wrong tenant by accident).
    pub source: Option<String>,
    /// `--target NAME` (repeatable): only these targets; empty = all.
    pub targets: Vec<String>,
    /// Apply even when a safety limit is exceeded; the approver is recorded in the
    /// report and the audit log.
    pub approved_by: Option<String>,
    /// Who started it (the admin in the console), for the report and the audit log.
    pub requested_by: Option<String>,
    pub trigger: Trigger,
    /// A preassigned id (the service hands it out before the run starts).
    pub id: Option<String>,
    /// The replica running it, recorded in the report (several replicas).
    pub replica: Option<String>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            source: None,
            targets: Vec::new(),
            approved_by: None,
            requested_by: None,
            trigger: Trigger::Cli,
            id: None,
            replica: None,
        }
    }
}

/// Live progress of a running sync (the terminal bar and the admin status read it).
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<String>,
    total: AtomicU64,
    done: Arc<AtomicU64>,
}

/// A copy of [`Progress`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    pub phase: String,
    /// Writes made so far.
    pub done: u64,
    /// Target changes planned (known once planning finished).
    pub total: u64,
}

impl Progress {
    /// The current phase, writes made and changes planned.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            phase: self.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }

    fn set_phase(&self, phase: impl Into<String>) {
        let phase = phase.into();
        tracing::info!(phase = %phase, "sync phase");
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }
}

/// An exclusive, non-blocking `flock` on `<state dir>/sync.lock`, held while a sync
/// that may write runs, so `usher serve`'s schedule and an `usher sync` never apply
/// at the same time. Released when dropped (the file closes).
struct RunLock {
    _file: File,
}

impl RunLock {
    fn acquire(state_dir: &Path) -> Result<RunLock, String> {
        use rustix::fs::{flock, FlockOperation};
        let path = state_dir.join("sync.lock");
        let open = std::fs::create_dir_all(state_dir).and_then(|_| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        });
        let file = open.map_err(|e| {
            format!(
                "cannot open {} ({e}); check that [state] dir is writable",
                path.display()
            )
        })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(_) => Err(format!(
                "another sync is applying changes (lock {} is held); wait for it to finish or use --dry-run",
                path.display()
            )),
        }
    }
}

/// Runs one full sync and returns its report (also written to
/// `<state dir>/reports/<id>.json`). Never panics; every problem is in the report.
pub async fn run(
    settings: &Settings,
    sources: &Sources,
    options: &SyncOptions,
    progress: &Progress,
) -> SyncReport {
    let t0 = Instant::now();
    let calls_before = sources.directory_calls.as_ref().map(|f| f());
    let id = options
        .id
        .clone()
        .unwrap_or_else(|| new_sync_id(SystemTime::now()));
    let mut report = SyncReport::begin(
        id,
        options.trigger,
        options.dry_run,
        options.approved_by.clone(),
    );
    report.replica = options.replica.clone();
    report.requested_by = options.requested_by.clone();
    let span = tracing::info_span!("sync", sync_id = %report.id, dry_run = options.dry_run);
    let result = reconcile(settings, sources, options, progress, &mut report)
        .instrument(span)
        .await;
    if let Err(e) = result {
        tracing::error!(sync_id = %report.id, error = %e, "sync failed");
        report.errors.push(e);
        report.status = SyncStatus::Failed;
    }
    report.finished_at = rfc3339(SystemTime::now());
    report.duration_ms = t0.elapsed().as_millis() as u64;
    report.directory.api_calls = sources
        .directory_calls
        .as_ref()
        .map(|f| f().saturating_sub(calls_before.unwrap_or(0)));
    progress.set_phase("finished");
    if let Err(e) = write_report(&settings.state.dir, &report) {
        let msg = format!(
            "the report could not be written under {} ({e}); check that [state] dir is writable",
            settings.state.dir.display()
        );
        tracing::error!(sync_id = %report.id, "{msg}");
        report.errors.push(msg);
    }
    tracing::info!(sync_id = %report.id, status = ?report.status, duration_ms = report.duration_ms, "{}", report.summary_line());
    crate::admin::metrics::sync_finished(&report, SystemTime::now());
    report
}

/// One planned target, waiting for the safety verdict of all.
struct Planned {
    target: Arc<dyn Target>,
    counter: Arc<CallCounter>,
    plan: Option<Plan>,
    report: TargetReport,
}

async fn reconcile(
    settings: &Settings,
    sources: &Sources,
    options: &SyncOptions,
    progress: &Progress,
    report: &mut SyncReport,
) -> Result<(), String> {
    let source = sources.directory.source().to_string();
    report.directory.source = source.clone();
    if let Some(want) = &options.source {
        if *want != source {
            return Err(format!(
                "--source {want}: the directory reads from {source:?} ([directory] idp); use --source {source} or change [directory] idp"
            ));
        }
    }
    let targets = select_targets(&sources.targets, &options.targets)?;
    if targets.is_empty() {
        return Err("no [[target]] is configured: add one to sync into".into());
    }
    let _lock = if options.dry_run {
        None
    } else {
        Some(RunLock::acquire(&settings.state.dir)?)
    };
    let sync = &settings.sync;
    let concurrency = sync.concurrency.max(1);

    // 1. The directory, whole. Any error stops the run before a target is touched.
    progress.set_phase("reading the directory");
    let t = Instant::now();
    let snap = snapshot(sources.directory.as_ref(), concurrency)
        .await
        .map_err(|e| {
            format!("reading the directory failed, so nothing was changed (no deprovisioning from a partial read): {e}")
        })?;
    report.directory.read_ms = t.elapsed().as_millis() as u64;
    report.directory.people = snap.people.len();
    report.directory.active_people = snap.people.iter().filter(|p| p.is_active()).count();
    report.directory.groups = snap.groups.len();
    report.directory.memberships = snap.membership_count();
    report.directory.cyclic_groups = snap.cyclic_groups.iter().cloned().collect();

    // 2. Map everyone.
    progress.set_phase("mapping people to accounts");
    let idp = settings.idps.iter().find(|i| i.name == source);
    let groups_settings = idp
        .and_then(|i| i.groups.as_ref())
        .unwrap_or(&settings.groups);
    let mapper = match idp {
        Some(i) => Mapper::for_idp(i, &settings.provisioning, &settings.groups),
        None => Mapper::new(&source, &settings.provisioning, &settings.groups),
    }
    .map_err(|e| e.to_string())?;
    // Sign-ins map these too, to know which target groups the rules manage.
    match KnownGroups::open(&settings.state.dir) {
        Ok(known) => {
            if let Err(e) = known.remember(&source, &snap.groups) {
                tracing::warn!(error = %e, "directory groups not recorded as known");
            }
        }
        Err(e) => tracing::warn!(error = %e, "directory groups not recorded as known"),
    }
    let scope = mapper.managed_scope(&snap.groups);
    let (desired, skipped) = map_snapshot(&mapper, snap);
    report.directory.skipped = skipped.len();
    report.directory.skipped_examples = skipped
        .iter()
        .take(20)
        .map(|s| format!("{}: {}", s.email, s.reason))
        .collect();

    let links = open_configured(settings).map_err(|e| e.to_string())?;
    let links = links.as_ref();

    // 3. Read and plan every target (concurrently), then judge them all.
    progress.set_phase("reading targets and planning");
    let mut plans = Vec::with_capacity(targets.len());
    for target in targets {
        plans.push(Box::pin(plan_target(
            target,
            &source,
            settings,
            groups_settings,
            &desired,
            &skipped,
            &scope,
            links,
            progress,
        )));
    }
    let planned = join_all(plans).await;
    drop(desired);

    let over: Vec<String> = planned
        .iter()
        .filter_map(|p| p.report.safety.as_ref().map(|s| (&p.report.name, s)))
        .flat_map(|(name, s)| s.hits.iter().map(move |h| format!("{name}: {h}")))
        .collect();
    let total: u64 = planned
        .iter()
        .filter_map(|p| p.plan.as_ref())
        .map(|p| p.operations.iter().filter(|o| o.changes_target()).count() as u64)
        .sum();
    progress.total.store(total, Ordering::Relaxed);

    let stop = !over.is_empty() && options.approved_by.is_none();
    if !over.is_empty() {
        report.stopped_because = over;
        if let Some(by) = &options.approved_by {
            tracing::warn!(approved_by = %by, "safety limits exceeded; applying anyway as approved");
        }
    }
    if options.dry_run || stop {
        report.targets = planned.into_iter().map(|p| p.report).collect();
        report.status = if stop && !options.dry_run {
            SyncStatus::Stopped
        } else if report.targets.iter().any(|t| t.error.is_some()) {
            SyncStatus::Failed
        } else {
            SyncStatus::Planned
        };
        return Ok(());
    }

    // 4. Apply.
    progress.set_phase("applying");
    let audit = match AuditLog::open(&settings.state.dir) {
        Ok(a) => Some(a),
        Err(e) => {
            report.errors.push(e.to_string());
            None
        }
    };
    let actor = match options.trigger {
        Trigger::Admin => Actor::Admin,
        Trigger::Cli | Trigger::Schedule => Actor::Sync,
    };
    let ctx = ApplyContext {
        concurrency,
        links: Some(links),
        audit: audit.as_ref(),
        actor,
        by: options
            .approved_by
            .as_deref()
            .or(options.requested_by.as_deref()),
        sync_id: Some(&report.id),
    };
    let mut applies = Vec::with_capacity(planned.len());
    for p in planned {
        applies.push(Box::pin(apply_target(p, &ctx)));
    }
    let done = join_all(applies).await;
    report.targets = done;
    report.status = if report.targets.iter().any(TargetReport::failed) || !report.errors.is_empty()
    {
        SyncStatus::Failed
    } else {
        SyncStatus::Succeeded
    };
    Ok(())
}

fn select_targets(
    all: &[Arc<dyn Target>],
    wanted: &[String],
) -> Result<Vec<Arc<dyn Target>>, String> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for w in wanted {
        match all.iter().find(|t| t.name() == w) {
            Some(t) => out.push(t.clone()),
            None => {
                let known: Vec<&str> = all.iter().map(|t| t.name()).collect();
                return Err(format!(
                    "--target {w}: no [[target]] has that name (configured: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// Maps every person of the snapshot, in batches, consuming it.
fn map_snapshot(mapper: &Mapper, snap: DirectorySnapshot) -> (Vec<DesiredAccount>, Vec<Skip>) {
    let DirectorySnapshot {
        people,
        groups,
        memberships,
        ..
    } = snap;
    let mut groups_of: Vec<Vec<u32>> = vec![Vec::new(); people.len()];
    for (g, members) in memberships.iter().enumerate() {
        for &p in members {
            if let Some(list) = groups_of.get_mut(p as usize) {
                list.push(g as u32);
            }
        }
    }
    drop(memberships);
    let mut desired = Vec::with_capacity(people.len());
    let mut skipped = Vec::new();
    let mut batch: Vec<PersonWithGroups> = Vec::with_capacity(MAP_BATCH);
    let mut flush = |batch: &mut Vec<PersonWithGroups>| {
        let (d, s) = mapper.map_all(batch.iter());
        desired.extend(d);
        skipped.extend(s);
        batch.clear();
    };
    for (person, gs) in people.into_iter().zip(groups_of) {
        let mut pg: Vec<GroupRef> = gs
            .iter()
            .filter_map(|&g| groups.get(g as usize).cloned())
            .collect();
        pg.sort_by(|a, b| a.email.cmp(&b.email));
        pg.dedup_by(|a, b| a.email == b.email);
        batch.push(PersonWithGroups { person, groups: pg });
        if batch.len() >= MAP_BATCH {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    desired.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    skipped.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    (desired, skipped)
}

#[allow(clippy::too_many_arguments)]
async fn plan_target(
    target: Arc<dyn Target>,
    scope_source: &str,
    settings: &Settings,
    groups: &crate::config::GroupsSettings,
    desired: &[DesiredAccount],
    skipped: &[Skip],
    scope: &ManagedScope,
    links: &dyn LinkStore,
    progress: &Progress,
) -> Planned {
    let counter = Arc::new(CallCounter::with_progress(progress.done.clone()));
    let counted: Arc<dyn Target> = Arc::new(CountingTarget::new(target, counter.clone()));
    let name = counted.name().to_string();
    let mut tr = TargetReport {
        name: name.clone(),
        ..TargetReport::default()
    };
    let t = Instant::now();
    let actual = read_actual(counted.as_ref(), scope, settings.sync.concurrency.max(1)).await;
    tr.read_ms = t.elapsed().as_millis() as u64;
    let fail = |mut tr: TargetReport, e: String| {
        tracing::error!(target_name = %tr.name, error = %e, "target not synced");
        tr.error = Some(e);
        tr.calls = counter.get();
        Planned {
            target: counted.clone(),
            counter: counter.clone(),
            plan: None,
            report: tr,
        }
    };
    let actual = match actual {
        Ok(a) => a,
        Err(e) => {
            return fail(
                tr,
                format!("reading the target failed, so it was not planned or changed: {e}"),
            )
        }
    };
    let target_links = match links.for_target(&name) {
        Ok(l) => l,
        Err(e) => return fail(tr, e.to_string()),
    };
    let mut policy = Policy::from_settings(
        &settings.provisioning,
        groups,
        &settings.sync,
        counted.capabilities(),
    );
    // Only people of the source read here can be gone (not those of other IdPs).
    policy.source = Some(scope_source.to_string());
    let plan = plan_for(PlanInput {
        target: &name,
        desired,
        skipped,
        actual: &actual,
        links: &target_links,
        scope,
        policy: &policy,
    });
    drop(actual);
    let verdict = safety::check(&plan, &Limits::from_settings(&settings.sync));
    tr.planned = plan
        .summary()
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    tr.operations_truncated = plan.operations.len() > MAX_LISTED;
    tr.operations = plan.operations.iter().take(MAX_LISTED).cloned().collect();
    tr.denied = plan.denied.iter().take(MAX_LISTED).cloned().collect();
    tr.notes = plan.notes.iter().take(MAX_LISTED).cloned().collect();
    tr.safety = Some(verdict);
    tr.calls = counter.get();
    Planned {
        target: counted,
        counter,
        plan: Some(plan),
        report: tr,
    }
}

async fn apply_target(p: Planned, ctx: &ApplyContext<'_>) -> TargetReport {
    let Planned {
        target,
        counter,
        plan,
        mut report,
    } = p;
    let Some(plan) = plan else {
        return report;
    };
    let t = Instant::now();
    let applied = apply::run(target, &plan, ctx).await;
    report.apply_ms = t.elapsed().as_millis() as u64;
    report.applied = Some(applied.counts);
    report.record_errors = applied.record_errors;
    report.failures = applied
        .results
        .into_iter()
        .filter(|r| {
            matches!(
                r.outcome,
                OpOutcome::Failed { .. } | OpOutcome::Skipped { .. }
            )
        })
        .take(MAX_LISTED)
        .collect();
    report.calls = counter.get();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &report.failures {
        *kinds.entry(f.op.kind()).or_default() += 1;
    }
    if !kinds.is_empty() {
        tracing::warn!(target_name = %report.name, failures = ?kinds, "some operations did not succeed; the next sync retries them");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writing_sync_at_a_time_per_state_dir() {
        let tmp = crate::test_support::temp_dir("runlock");
        let dir = tmp.path().join("state");
        let first = RunLock::acquire(&dir).unwrap();
        let second = RunLock::acquire(&dir).err().unwrap();
        assert!(
            second.contains("another sync is applying changes"),
            "{second}"
        );
        assert!(second.contains("sync.lock"), "{second}");
        drop(first);
        assert!(RunLock::acquire(&dir).is_ok(), "released when dropped");
    }
}
