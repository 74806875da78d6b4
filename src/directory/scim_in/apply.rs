//! What a SCIM push means for the targets: every pushed person whose user or
//! groups changed is re-provisioned through the same mapping -> plan -> apply as a
//! login (one person, `Population::Listed`) into every `[[target]]`: a user pushed
//! with `active: false` (or deleted) is deprovisioned per `[sync] deprovision`, a
//! membership change adds (and, with `keep_existing = false`, removes) mapped groups.
//! Work is queued and applied by one background worker, so a push is answered at
//! once and a slow or unreachable target never fails the IdP's request; failures
//! are retried with backoff and the next full sync repairs what is left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::source::{group_ref, person_with_groups};
use super::store::ScimStore;
use crate::config::Settings;
use crate::identity::{GroupRef, PersonWithGroups};
use crate::provision::apply::{self, ApplyContext};
use crate::provision::audit::{Actor, AuditLog};
use crate::provision::mapping::Mapper;
use crate::provision::plan::{plan_for, PlanInput, Policy, Population};
use crate::provision::read::read_person;
use crate::provision::LinkStore;
use crate::target::Target;

/// Attempts per person before the worker gives up (the next push or sync repairs it).
const MAX_ATTEMPTS: u32 = 5;

/// One person waiting to be provisioned.
#[derive(Debug, Clone, Default)]
struct Job {
    /// The person as they were before their SCIM user was deleted.
    tombstone: Option<PersonWithGroups>,
    /// Groups that no longer exist but were theirs: kept in the managed scope so
    /// their mapped memberships can be removed.
    retired: Vec<GroupRef>,
    attempts: u32,
}

/// The queue and the worker that applies pushes to the targets.
pub struct Pusher {
    settings: Arc<Settings>,
    store: Arc<ScimStore>,
    targets: Vec<Arc<dyn Target>>,
    links: Arc<dyn LinkStore>,
    audit: Option<Arc<AuditLog>>,
    mappers: BTreeMap<String, Mapper>,
    queue: Mutex<BTreeMap<(String, String), Job>>,
    wake: Notify,
}

/// Why the pusher could not be built.
#[derive(Debug, thiserror::Error)]
#[error("inbound SCIM provisioning: {0}")]
pub struct PusherError(pub String);

impl Pusher {
    /// A pusher into `targets` (usually every `[[target]]`).
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<ScimStore>,
        targets: Vec<Arc<dyn Target>>,
        links: Arc<dyn LinkStore>,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Pusher, PusherError> {
        let mut mappers = BTreeMap::new();
        for idp in settings.idps.iter().filter(|i| i.scim_token.is_some()) {
            let m = Mapper::for_idp(idp, &settings.provisioning, &settings.groups)
                .map_err(|e| PusherError(format!("[[idp]] {}: {e}", idp.name)))?;
            mappers.insert(idp.name.clone(), m);
        }
        Ok(Pusher {
            settings,
            store,
            targets,
            links,
            audit,
            mappers,
            queue: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        })
    }

    fn enqueue(&self, idp: &str, user: &str, update: impl FnOnce(&mut Job)) {
        if let Ok(mut q) = self.queue.lock() {
            let job = q.entry((idp.to_string(), user.to_string())).or_default();
            update(job);
        }
        self.wake.notify_one();
    }

    /// A user was created, replaced, patched or deleted. For a deletion, `gone` is
    /// the person as they were (they are then deprovisioned).
    pub fn user_changed(&self, idp: &str, user_scim_id: &str, gone: Option<PersonWithGroups>) {
        self.enqueue(idp, user_scim_id, |j| {
            if gone.is_some() {
                j.tombstone = gone;
            }
        });
    }

    /// A group was created, changed or deleted: every user it held before or holds
    /// now (through nested groups too) is re-provisioned.
    pub fn group_changed(
        &self,
        idp: &str,
        before: &[String],
        after: &[String],
        retired: Option<GroupRef>,
    ) {
        let mut stack: Vec<String> = before.iter().chain(after).cloned().collect();
        let users = self.store.read(idp, |data| {
            let mut users: Vec<String> = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            while let Some(id) = stack.pop() {
                if !seen.insert(id.clone()) {
                    continue;
                }
                if data.users.contains_key(&id) {
                    users.push(id);
                } else if let Some(g) = data.groups.get(&id) {
                    stack.extend(super::store::member_ids(g));
                }
            }
            users
        });
        for u in users.unwrap_or_default() {
            let retired = retired.clone();
            self.enqueue(idp, &u, |j| j.retired.extend(retired));
        }
    }

    /// The worker: applies queued people one at a time until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let batch: Vec<((String, String), Job)> = match self.queue.lock() {
                Ok(mut q) => std::mem::take(&mut *q).into_iter().collect(),
                Err(_) => return,
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let mut retry = Vec::new();
            for ((idp, user), job) in batch {
                if *shutdown.borrow() {
                    return;
                }
                if let Err(why) = self.provision(&idp, &user, &job).await {
                    let attempts = job.attempts + 1;
                    if attempts < MAX_ATTEMPTS {
                        tracing::warn!(idp = %idp, scim_id = %user, attempt = attempts, error = %why, "applying a SCIM push failed; will retry");
                        retry.push(((idp, user), Job { attempts, ..job }));
                    } else {
                        tracing::error!(idp = %idp, scim_id = %user, error = %why, "applying a SCIM push failed; giving up until the next push or full sync");
                    }
                }
            }
            if !retry.is_empty() {
                let wait = Duration::from_millis(500 * 2u64.pow(retry[0].1.attempts.min(6)));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                if let Ok(mut q) = self.queue.lock() {
                    for (k, job) in retry {
                        // A newer push for the same person supersedes the retry.
                        q.entry(k).or_insert(job);
                    }
                }
            }
        }
    }

    /// One person into every target. Err names what failed.
    async fn provision(&self, idp: &str, user: &str, job: &Job) -> Result<(), String> {
        let Some(mapper) = self.mappers.get(idp) else {
            return Ok(());
        };
        let (found, mut all_groups) = self
            .store
            .read(idp, |data| {
                (
                    person_with_groups(data, user),
                    data.groups
                        .values()
                        .map(group_ref)
                        .collect::<Vec<GroupRef>>(),
                )
            })
            .ok_or_else(|| format!("[[idp]] {idp} has no SCIM store"))?;
        let source = match (found, &job.tombstone) {
            (Some(p), _) => p,
            (None, Some(gone)) => {
                let mut p = gone.clone();
                p.person.suspended = true;
                p
            }
            (None, None) => return Ok(()),
        };
        let desired = match mapper.map(&source) {
            Ok(d) => d,
            Err(skip) => {
                tracing::warn!(idp = %idp, email = %skip.email, reason = %skip.reason, "a pushed person gets no account");
                return Ok(());
            }
        };
        all_groups.extend(job.retired.iter().cloned());
        all_groups.extend(source.groups.iter().cloned());
        let scope = mapper.managed_scope(&all_groups);
        let s = &self.settings;
        let by = format!("scim:{idp}");
        let mut failures = Vec::new();
        for target in &self.targets {
            let tname = target.name().to_string();
            let links = self
                .links
                .for_target(&tname)
                .map_err(|e| format!("{tname}: identity links unreadable: {e}"))?;
            let link = links.get(&desired.external_id).cloned();
            let actual = match read_person(target.as_ref(), &desired, link.as_ref()).await {
                Ok(a) => a,
                Err(e) => {
                    failures.push(format!("reading {tname}: {e}"));
                    continue;
                }
            };
            let mut policy = Policy::from_settings(
                &s.provisioning,
                mapper_groups(s, idp),
                &s.sync,
                target.capabilities(),
            );
            policy.population = Population::Listed;
            let plan = plan_for(PlanInput {
                target: &tname,
                desired: std::slice::from_ref(&desired),
                skipped: &[],
                actual: &actual,
                links: &links,
                scope: &scope,
                policy: &policy,
            });
            for note in &plan.denied {
                tracing::warn!(target = %tname, idp = %idp, "pushed person denied: {}", note.message);
            }
            if plan.is_empty() {
                continue;
            }
            let report = apply::run(
                target.clone(),
                &plan,
                &ApplyContext {
                    concurrency: 4,
                    links: Some(self.links.as_ref()),
                    audit: self.audit.as_deref(),
                    actor: Actor::Scim,
                    by: Some(&by),
                    sync_id: None,
                },
            )
            .await;
            tracing::info!(target = %tname, idp = %idp, user = %desired.username, ops = plan.operations.len(), ok = report.succeeded(), "applied a SCIM push");
            if !report.succeeded() {
                failures.push(format!(
                    "{tname}: {} operation(s) failed",
                    report.counts.failed + report.counts.skipped
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// The `[groups]` rules that apply to people of `idp` (its override, else the global).
fn mapper_groups<'a>(s: &'a Settings, idp: &str) -> &'a crate::config::GroupsSettings {
    s.idps
        .iter()
        .find(|i| i.name == idp)
        .and_then(|i| i.groups.as_ref())
        .unwrap_or(&s.groups)
}
