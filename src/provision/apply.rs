//! Applying a plan: runs its operations against a `Target` phase by phase with
//! bounded concurrency, records every outcome (ok / already-done / failed / skipped),
//! keeps going past independent failures, skips what depends on a failure, records
//! identity links and audit lines. Decides nothing about *what* to change.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::admin::metrics;
use crate::target::{NewUser, Outcome, Target, TargetError, UserUpdate};

use super::audit::{Actor, AuditContext, AuditEntry, AuditLog, AuditResult};
use super::links::{LinkStore, LinkedAccount};
use super::plan::{Operation, Plan};
use super::state::fold;

/// After this many transient failures in a row (target down, rate limited beyond
/// the client's retries) the remaining operations are skipped instead of each
/// waiting for its own timeout; the next sync picks them up.
pub const GIVE_UP_AFTER: usize = 25;

/// How to run a plan and where to record it.
#[derive(Clone, Copy)]
pub struct ApplyContext<'a> {
    /// Operations in flight at once (`[sync] concurrency`); at least 1.
    pub concurrency: usize,
    /// Where created, adopted and renamed accounts are linked (None = not recorded).
    pub links: Option<&'a dyn LinkStore>,
    /// Where audit lines go (None = not written).
    pub audit: Option<&'a AuditLog>,
    pub actor: Actor,
    /// Admin e-mail or signed-in person, for the audit line.
    pub by: Option<&'a str>,
    pub sync_id: Option<&'a str>,
}

impl<'a> ApplyContext<'a> {
    /// The context for one person's changes (a sign-in or an inbound push): a
    /// small fixed concurrency, recorded links and audit lines, no sync id.
    pub fn for_person(
        links: &'a dyn LinkStore,
        audit: Option<&'a AuditLog>,
        actor: Actor,
        by: &'a str,
    ) -> Self {
        ApplyContext {
            concurrency: 4,
            links: Some(links),
            audit,
            actor,
            by: Some(by),
            sync_id: None,
        }
    }
}

impl std::fmt::Debug for ApplyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyContext")
            .field("concurrency", &self.concurrency)
            .field("actor", &self.actor)
            .field("sync_id", &self.sync_id)
            .finish_non_exhaustive()
    }
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum OpOutcome {
    /// The target changed.
    Done,
    /// It was already so.
    AlreadyDone,
    Failed {
        error: String,
        /// A later attempt may succeed unchanged (rate limit, outage).
        transient: bool,
    },
    /// Not attempted because something it depends on failed.
    Skipped { reason: String },
}

/// One operation and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    pub op: Operation,
    #[serde(flatten)]
    pub outcome: OpOutcome,
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCounts {
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Everything that happened, in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub target: String,
    pub results: Vec<OpResult>,
    pub counts: ApplyCounts,
    /// Links or audit lines that could not be written (the target changes stand).
    pub record_errors: Vec<String>,
}

impl ApplyReport {
    /// True when nothing failed or was skipped.
    pub fn succeeded(&self) -> bool {
        self.counts.failed == 0 && self.counts.skipped == 0
    }
}

/// Names whose failure blocks later operations.
#[derive(Default)]
struct Blocked {
    groups: HashSet<String>,
    users: HashSet<String>,
}

impl Blocked {
    fn reason(&self, op: &Operation) -> Option<String> {
        let user = op.username().map(fold);
        if let Some(u) = user.filter(|u| self.users.contains(u)) {
            return Some(format!("the account {u} could not be created or renamed"));
        }
        match op {
            Operation::AddMember { group, .. } if self.groups.contains(&fold(group)) => {
                Some(format!("the group {group} could not be created"))
            }
            _ => None,
        }
    }

    fn record_failure(&mut self, op: &Operation) {
        match op {
            Operation::CreateGroup { group } => {
                self.groups.insert(fold(group));
            }
            Operation::CreateUser { account, .. } => {
                self.users.insert(fold(&account.username));
            }
            Operation::UpdateUser { changes, .. } => {
                if let Some(c) = &changes.username {
                    self.users.insert(fold(&c.after));
                }
            }
            _ => {}
        }
    }
}

/// One operation as a boxed `Send` future: a named function instead of a closure
/// returning an `async` block, so the future is `Send` for every lifetime (callers
/// spawn `run` on multi-threaded runtimes).
fn one_op<'a>(
    target: Arc<dyn Target>,
    op: &'a Operation,
    skip: Option<String>,
    streak: &'a AtomicUsize,
    links: Option<&'a dyn LinkStore>,
) -> futures_util::future::BoxFuture<'a, (OpOutcome, Option<String>)> {
    Box::pin(async move {
        if let Some(reason) = skip {
            return (OpOutcome::Skipped { reason }, None);
        }
        if streak.load(Ordering::Relaxed) >= GIVE_UP_AFTER {
            let reason = format!(
                "gave up after {GIVE_UP_AFTER} transient failures in a row; the target looks unavailable"
            );
            return (OpOutcome::Skipped { reason }, None);
        }
        let r = execute(target.as_ref(), op, links).await;
        match &r.0 {
            OpOutcome::Failed {
                transient: true, ..
            } => {
                streak.fetch_add(1, Ordering::Relaxed);
            }
            _ => streak.store(0, Ordering::Relaxed),
        }
        r
    })
}

/// Runs `plan` against `target`. Never panics on target errors: every error becomes
/// an outcome in the report.
pub async fn run(target: Arc<dyn Target>, plan: &Plan, ctx: &ApplyContext<'_>) -> ApplyReport {
    let name = target.name().to_string();
    let audit_cx = AuditContext {
        actor: ctx.actor,
        by: ctx.by.map(str::to_string),
        sync_id: ctx.sync_id.map(str::to_string),
        target: name.clone(),
    };
    let mut report = ApplyReport {
        target: name,
        results: Vec::with_capacity(plan.operations.len()),
        counts: ApplyCounts::default(),
        record_errors: Vec::new(),
    };
    let mut blocked = Blocked::default();
    let transient_in_a_row = AtomicUsize::new(0);
    let ops = &plan.operations;
    let mut start = 0;
    while start < ops.len() {
        let phase = ops[start].phase();
        let end = ops[start..]
            .iter()
            .position(|o| o.phase() != phase)
            .map_or(ops.len(), |n| start + n);
        let batch = &ops[start..end];
        let skips: Vec<Option<String>> = batch.iter().map(|o| blocked.reason(o)).collect();
        // Futures built up front (no closure inside the stream), so the whole
        // `run` future is provably `Send`.
        let mut futures = Vec::with_capacity(batch.len());
        for (op, skip) in batch.iter().zip(skips) {
            futures.push(one_op(
                target.clone(),
                op,
                skip,
                &transient_in_a_row,
                ctx.links,
            ));
        }
        let outcomes: Vec<(OpOutcome, Option<String>)> = stream::iter(futures)
            .buffered(ctx.concurrency.max(1))
            .collect()
            .await;
        let now = SystemTime::now();
        let mut lines = Vec::new();
        for (op, (outcome, record_error)) in batch.iter().zip(outcomes) {
            metrics::provision_operation(&report.target, op.kind(), &outcome, ctx.actor);
            if let Some(e) = record_error {
                report.record_errors.push(e);
            }
            let audit = match &outcome {
                OpOutcome::Done => {
                    report.counts.done += 1;
                    AuditResult::Ok
                }
                OpOutcome::AlreadyDone => {
                    report.counts.already_done += 1;
                    AuditResult::Unchanged
                }
                OpOutcome::Failed { error, transient } => {
                    tracing::warn!(target_name = %report.target, op = op.kind(), user = op.username().unwrap_or(""), transient, %error, "provisioning operation failed");
                    report.counts.failed += 1;
                    blocked.record_failure(op);
                    AuditResult::Failed {
                        error: error.clone(),
                    }
                }
                OpOutcome::Skipped { reason } => {
                    report.counts.skipped += 1;
                    blocked.record_failure(op);
                    AuditResult::Skipped {
                        reason: reason.clone(),
                    }
                }
            };
            if ctx.audit.is_some() {
                lines.push(AuditEntry::for_operation(&audit_cx, now, op, audit));
            }
            report.results.push(OpResult {
                op: op.clone(),
                outcome,
            });
        }
        if let Some(log) = ctx.audit {
            if let Err(e) = log.append(&lines) {
                tracing::error!(error = %e, "audit lines not written");
                report.record_errors.push(e.to_string());
            }
        }
        start = end;
    }
    if let Some(store) = ctx.links {
        confirm_created(store, &report, plan, &blocked);
    }
    report
}

/// Clears the pending mark of every created account whose creation-time groups
/// are all in place now (a failed or skipped add keeps it, so the next run adds
/// what is missing).
fn confirm_created(store: &dyn LinkStore, report: &ApplyReport, plan: &Plan, blocked: &Blocked) {
    let mut unfinished: HashSet<String> = blocked.users.clone();
    for r in &report.results {
        let incomplete = matches!(
            r.outcome,
            OpOutcome::Failed { .. } | OpOutcome::Skipped { .. }
        );
        if incomplete {
            if let Some(u) = r.op.username() {
                unfinished.insert(fold(u));
            }
        }
    }
    for person in &plan.confirm_created {
        let Some(username) = plan.accounts.get(person) else {
            continue;
        };
        if unfinished.contains(&fold(username)) {
            continue;
        }
        match store.get(&report.target, person) {
            Ok(Some(mut link)) if link.pending => {
                link.pending = false;
                if let Err(e) = store.put(&report.target, person, &link) {
                    tracing::warn!(error = %e, "identity link not confirmed; the next run retries");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "identity link not read"),
        }
    }
}

fn outcome_of(r: Result<Outcome, TargetError>) -> OpOutcome {
    match r {
        Ok(Outcome::Changed) => OpOutcome::Done,
        Ok(Outcome::Unchanged) => OpOutcome::AlreadyDone,
        Err(e) => failed(e),
    }
}

fn failed(e: TargetError) -> OpOutcome {
    OpOutcome::Failed {
        transient: e.is_transient(),
        error: e.to_string(),
    }
}

fn put_link(
    links: Option<&dyn LinkStore>,
    target: &str,
    person: &crate::identity::ExternalId,
    account: LinkedAccount,
) -> Option<String> {
    let store = links?;
    store.put(target, person, &account).err().map(|e| {
        tracing::error!(error = %e, "identity link not recorded");
        e.to_string()
    })
}

/// Records the first link of `person` (a created or adopted account). When the person
/// is already linked to another account (another replica got there first), nothing
/// is overwritten and the conflict is returned as an error.
fn put_first_link(
    links: Option<&dyn LinkStore>,
    target: &str,
    person: &crate::identity::ExternalId,
    account: LinkedAccount,
) -> Option<String> {
    let store = links?;
    match store.put_new(target, person, &account) {
        Ok(None) => None,
        Ok(Some(existing)) if existing.username.eq_ignore_ascii_case(&account.username) => {
            if existing != account {
                return put_link(links, target, person, account);
            }
            None
        }
        Ok(Some(existing)) => {
            let msg = format!(
                "{}:{} is already linked to account {} in {target} (linked concurrently, e.g. by another replica); not linking {} as well",
                person.source, person.id, existing.username, account.username
            );
            tracing::error!("{msg}");
            Some(msg)
        }
        Err(e) => {
            tracing::error!(error = %e, "identity link not recorded");
            Some(e.to_string())
        }
    }
}

/// Runs one operation; returns its outcome and any link-recording error.
async fn execute(
    t: &dyn Target,
    op: &Operation,
    links: Option<&dyn LinkStore>,
) -> (OpOutcome, Option<String>) {
    match op {
        Operation::CreateGroup { group } => (outcome_of(t.create_group(group).await), None),
        Operation::CreateUser { person, account } => {
            let new = NewUser {
                username: account.username.clone(),
                email: account.email.clone(),
                display_name: account.display_name.clone(),
                given_name: Some(account.given_name.clone()).filter(|s| !s.is_empty()),
                family_name: Some(account.family_name.clone()).filter(|s| !s.is_empty()),
            };
            // Recorded before the call: if usher dies between the create and the
            // group adds, the next run knows it created this account (not adopt it).
            let intent = LinkedAccount {
                username: account.username.clone(),
                key: None,
                pending: true,
            };
            if let Some(e) = put_link(links, t.name(), person, intent) {
                let error = format!("not created: {e}");
                return (
                    OpOutcome::Failed {
                        error,
                        transient: false,
                    },
                    None,
                );
            }
            match t.create_user(&new).await {
                Ok(u) => {
                    let link = LinkedAccount {
                        username: u.username,
                        key: u.key,
                        pending: true,
                    };
                    (
                        OpOutcome::Done,
                        put_first_link(links, t.name(), person, link),
                    )
                }
                Err(e) => {
                    // Nothing was created: the intent must not make the username look
                    // like this person's account (someone else may hold it).
                    let forgot = links.and_then(|s| s.remove(t.name(), person).err());
                    (failed(e), forgot.map(|e| e.to_string()))
                }
            }
        }
        Operation::Link {
            person,
            username,
            key,
        } => {
            let link = LinkedAccount {
                username: username.clone(),
                key: key.clone(),
                pending: false,
            };
            match put_first_link(links, t.name(), person, link) {
                None => (OpOutcome::Done, None),
                Some(e) => (
                    OpOutcome::Failed {
                        error: e,
                        transient: false,
                    },
                    None,
                ),
            }
        }
        Operation::Reactivate { username, .. } => {
            (outcome_of(t.reactivate_user(username).await), None)
        }
        Operation::Deactivate { username, .. } => {
            (outcome_of(t.deactivate_user(username).await), None)
        }
        Operation::UpdateUser {
            person,
            username,
            changes,
        } => {
            let update = UserUpdate {
                email: changes.email.as_ref().map(|c| c.after.clone()),
                display_name: changes.display_name.as_ref().map(|c| c.after.clone()),
                new_username: changes.username.as_ref().map(|c| c.after.clone()),
            };
            match t.update_user(username, &update).await {
                Ok(u) if changes.username.is_some() => {
                    let link = LinkedAccount {
                        username: u.username,
                        key: u.key,
                        pending: false,
                    };
                    (OpOutcome::Done, put_link(links, t.name(), person, link))
                }
                Ok(_) => (OpOutcome::Done, None),
                Err(e) => (failed(e), None),
            }
        }
        Operation::AddMember { group, username } => {
            (outcome_of(t.add_member(group, username).await), None)
        }
        Operation::RemoveMember {
            group, username, ..
        } => (outcome_of(t.remove_member(group, username).await), None),
    }
}
