//! Login-time provisioning: in the callback, after the IdP vouched for the person
//! and before the first request is forwarded, read the person (directory, or the
//! ID token's claims), deny the suspended and the not-allowed, plan this one person
//! into every target of the upstreams, apply, and hand the resulting username and
//! groups to the session. Single-flight per person; a person provisioned within
//! `refresh_after` costs no API call. Also re-checks sessions (`revalidate_after`).
//! Owns no decision logic: mapping, planning and applying live beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

use super::apply::{self, ApplyContext};
use super::audit::{Actor, AuditLog};
use super::known_groups::KnownGroups;
use super::link_store::LinkStore;
use super::login_shared::{reusable, SharedFlight};
use super::mapping::{DesiredAccount, GroupName, Mapper};
use super::plan::{plan_for, PlanInput, Policy, Population};
use super::read::read_person;
use crate::auth::error::{AuthError, DenialReason};
use crate::auth::flow::{Admission, AdmitFuture, Admitted, RevalidateFuture, Verdict};
use crate::auth::oidc::Identity;
use crate::config::{OnFailure, Settings};
use crate::directory::{Directory, DirectoryError};

/// Marks the denial that is really "admin, directory not connected yet".
const BOOTSTRAP: &str = "the directory is not connected yet (admin bootstrap)";
use crate::identity::{GroupRef, Person, PersonWithGroups};
use crate::replicas::Shared;
use crate::session::Session;
use crate::target::Target;

/// The login-time provisioner; one per process, shared by all workers.
pub struct LoginProvisioner {
    settings: Arc<Settings>,
    directory: Option<Arc<dyn Directory>>,
    targets: Vec<Arc<dyn Target>>,
    mappers: BTreeMap<String, Mapper>,
    links: Arc<dyn LinkStore>,
    audit: Option<Arc<AuditLog>>,
    recent: DashMap<String, (Instant, Admitted)>,
    flights: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    verdicts: DashMap<String, (Instant, bool)>,
    /// Cross-replica single-flight (`[state] redis_url`).
    shared: Option<SharedFlight>,
    /// IdP groups seen by syncs and sign-ins (what the rules may manage).
    known: KnownGroups,
    /// Per IdP: the target groups the current rules make of the known groups, with
    /// the store version they were computed from.
    known_scopes: DashMap<String, (u64, Arc<BTreeSet<GroupName>>)>,
}

/// Why the provisioner could not be built.
#[derive(Debug, thiserror::Error)]
#[error("login-time provisioning: {0}")]
pub struct LoginSetupError(pub String);

impl LoginProvisioner {
    /// Wires the directory (if any), the targets named by the upstreams, the link
    /// store and the audit log.
    pub fn new(
        settings: Arc<Settings>,
        directory: Option<Arc<dyn Directory>>,
        targets: Vec<Arc<dyn Target>>,
        links: Arc<dyn LinkStore>,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, LoginSetupError> {
        let mut mappers = BTreeMap::new();
        for idp in &settings.idps {
            let m = Mapper::for_idp(idp, &settings.provisioning, &settings.groups)
                .map_err(|e| LoginSetupError(format!("[[idp]] {}: {e}", idp.name)))?;
            mappers.insert(idp.name.clone(), m);
        }
        let known =
            KnownGroups::open(&settings.state.dir).map_err(|e| LoginSetupError(e.to_string()))?;
        Ok(LoginProvisioner {
            settings,
            directory,
            targets,
            mappers,
            links,
            audit,
            recent: DashMap::new(),
            flights: DashMap::new(),
            verdicts: DashMap::new(),
            shared: None,
            known,
            known_scopes: DashMap::new(),
        })
    }

    /// Makes provisioning single-flight across replicas through Redis (a lock per
    /// person) and shares the "provisioned recently" cache between them.
    pub fn with_shared(mut self, shared: Shared) -> Self {
        self.shared = Some(SharedFlight::new(shared));
        self
    }

    /// The target groups the current rules manage for `idp`'s known groups
    /// (recomputed only when the store changed).
    fn known_scope(&self, idp: &str, mapper: &Mapper) -> Arc<BTreeSet<GroupName>> {
        let version = self.known.version();
        if let Some(cached) = self.known_scopes.get(idp).filter(|c| c.0 == version) {
            return cached.1.clone();
        }
        let (version, groups) = self.known.groups(idp);
        let scope = Arc::new(mapper.managed_scope(&groups).groups);
        self.known_scopes
            .insert(idp.to_string(), (version, scope.clone()));
        scope
    }

    fn key(idp: &str, sub: &str) -> String {
        format!("{idp}\u{0}{sub}")
    }

    /// The admission of a person provisioned less than `refresh` ago.
    fn fresh(&self, key: &str, refresh: Duration) -> Option<Admitted> {
        self.recent
            .get(key)
            .filter(|e| e.0.elapsed() < refresh)
            .map(|e| e.1.clone())
    }

    /// The person as the source knows them: the directory for the directory's IdP,
    /// else the ID token's claims.
    async fn source_person(&self, identity: &Identity) -> Result<PersonWithGroups, AuthError> {
        if let Some(dir) = self
            .directory
            .as_ref()
            .filter(|d| d.source() == identity.idp)
        {
            let found = match dir.person(&identity.sub).await {
                Ok(found) => found,
                // Refresh-token mode before the first consent: only an `[admin] users`
                // member gets in (unprovisioned), to connect the directory.
                Err(DirectoryError::NotConnected) if self.is_admin_user(&identity.email) => {
                    return Err(AuthError::new(DenialReason::ProvisioningFailed, BOOTSTRAP));
                }
                Err(e) => {
                    return Err(AuthError::new(
                        DenialReason::ProvisioningFailed,
                        format!("directory lookup failed: {e}"),
                    ))
                }
            };
            let Some(p) = found else {
                return Err(AuthError::new(
                    DenialReason::NotInDirectory,
                    "the directory does not know this subject",
                ));
            };
            if !p.person.is_active() {
                return Err(AuthError::new(
                    DenialReason::Suspended,
                    "suspended or archived in the directory",
                ));
            }
            return Ok(p);
        }
        Ok(claims_person(identity))
    }

    /// Whether `email` is listed in `[admin] users` (groups cannot be known
    /// without the directory).
    fn is_admin_user(&self, email: &str) -> bool {
        self.settings
            .admin
            .users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(email))
    }

    /// An `[admin] users` member signing in while the directory awaits its first
    /// consent: admitted from the ID token alone, nothing provisioned, no groups.
    fn bootstrap_admin(&self, identity: &Identity) -> Result<Admitted, AuthError> {
        tracing::warn!(
            admin = %identity.email,
            "the directory is not connected yet; the admin signs in without provisioning to connect it at /_usher/admin/connect/google"
        );
        let mapper = self.mappers.get(&identity.idp).ok_or_else(|| {
            AuthError::new(DenialReason::Misconfigured, "identity from an unknown idp")
        })?;
        let desired = mapper
            .map(&claims_person(identity))
            .map_err(|skip| AuthError::new(DenialReason::InvalidUsername, skip.reason))?;
        Ok(Admitted {
            username: desired.username.clone(),
            groups: Vec::new(),
            display_name: desired.display_name.clone(),
            idp_groups: Vec::new(),
        })
    }

    fn allowed(&self, idp: &str, groups: &[GroupRef]) -> bool {
        let Some(settings) = self.settings.idps.iter().find(|i| i.name == idp) else {
            return false;
        };
        let allowed = &settings.allowed_groups;
        allowed.is_empty()
            || groups.iter().any(|g| {
                allowed
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&g.email) || a.eq_ignore_ascii_case(&g.name))
            })
    }

    /// The whole login-time step within `[provisioning.login] timeout`. A target
    /// that runs out of time is a target failure, so `on_failure` decides (an
    /// existing, linked account may still get in); a directory that runs out of
    /// time denies (suspension cannot be checked).
    async fn provision(&self, identity: &Identity) -> Result<Admitted, AuthError> {
        let limit = self.settings.provisioning.login.timeout;
        let deadline = Instant::now() + limit;
        let late = |what: &str| format!("{what} took longer than the login timeout ({limit:?})");
        let source = tokio::time::timeout(limit, self.source_person(identity))
            .await
            .map_err(|_| {
                AuthError::new(
                    DenialReason::ProvisioningFailed,
                    late("the directory lookup"),
                )
            })?;
        let source = match source {
            Err(e) if e.detail == BOOTSTRAP => return self.bootstrap_admin(identity),
            other => other?,
        };
        if let Err(e) = self.known.remember(&identity.idp, &source.groups) {
            tracing::warn!(error = %e, "the person's groups were not recorded as known");
        }
        if !self.allowed(&identity.idp, &source.groups) {
            return Err(AuthError::new(
                DenialReason::NotInAllowedGroups,
                "in none of allowed_groups",
            ));
        }
        let mapper = self.mappers.get(&identity.idp).ok_or_else(|| {
            AuthError::new(DenialReason::Misconfigured, "identity from an unknown idp")
        })?;
        let desired = mapper
            .map(&source)
            .map_err(|skip| AuthError::new(DenialReason::InvalidUsername, skip.reason))?;
        let mut username = desired.username.clone();
        if self.settings.provisioning.login.enabled {
            for i in 0..self.targets.len() {
                let Some(target) = self.targets.get(i).cloned() else {
                    break;
                };
                let tname = target.name().to_string();
                let left = deadline.saturating_duration_since(Instant::now());
                let name = match tokio::time::timeout(
                    left,
                    self.provision_into(target, mapper, &source, &desired),
                )
                .await
                {
                    Ok(result) => result?,
                    Err(_) => {
                        let linked = self
                            .links
                            .get(&tname, &desired.external_id)
                            .ok()
                            .flatten()
                            .map(|l| l.username);
                        self.on_failure(&tname, linked, late(&tname))?
                    }
                };
                if i == 0 {
                    username = name;
                }
            }
        }
        Ok(Admitted {
            username,
            groups: desired.groups().map(|g| g.to_string()).collect(),
            display_name: desired.display_name.clone(),
            idp_groups: idp_group_names(&source.groups),
        })
    }

    /// Plans and applies one person into one target; returns the account's username.
    /// (Boxed with an explicit `Send` bound: the compiler cannot prove it for the
    /// `&dyn Target` borrows inside otherwise.)
    fn provision_into<'a>(
        &'a self,
        target: Arc<dyn Target>,
        mapper: &'a Mapper,
        source: &'a PersonWithGroups,
        desired: &'a DesiredAccount,
    ) -> Pin<Box<dyn Future<Output = Result<String, AuthError>> + Send + 'a>> {
        Box::pin(async move {
            let failed = |why: String| AuthError::new(DenialReason::ProvisioningFailed, why);
            let tname = target.name().to_string();
            let links = self
                .links
                .for_target(&tname)
                .map_err(|e| failed(format!("{tname}: identity links unreadable: {e}")))?;
            let link = links.get(&desired.external_id).cloned();
            let actual = match read_person(target.as_ref(), desired, link.as_ref()).await {
                Ok(a) => a,
                Err(e) => {
                    return self.on_failure(
                        &tname,
                        link.map(|l| l.username),
                        format!("reading {tname}: {e}"),
                    );
                }
            };
            // The person's groups, plus every group the rules make of the IdP groups
            // seen so far: a membership the person no longer has a reason for is
            // in scope, so keep_existing = false can remove it.
            let mut scope = mapper.managed_scope(&source.groups);
            let known = self.known_scope(&desired.external_id.source, mapper);
            scope.groups.extend(known.iter().cloned());
            let s = &self.settings;
            // The person's IdP may override [groups] (keep_existing, create_missing).
            let groups = s
                .idps
                .iter()
                .find(|i| i.name == mapper.source())
                .and_then(|i| i.groups.as_ref())
                .unwrap_or(&s.groups);
            let mut policy =
                Policy::from_settings(&s.provisioning, groups, &s.sync, target.capabilities());
            policy.population = Population::Listed;
            let desired_list = std::slice::from_ref(desired);
            let plan = plan_for(PlanInput {
                target: &tname,
                desired: desired_list,
                skipped: &[],
                actual: &actual,
                links: &links,
                scope: &scope,
                policy: &policy,
            });
            if let Some(note) = plan.denied.first() {
                return Err(AuthError::new(
                    DenialReason::AccountConflict,
                    format!("{tname}: {}", note.message),
                ));
            }
            let username = plan
                .accounts
                .get(&desired.external_id)
                .cloned()
                .unwrap_or_else(|| desired.username.clone());
            if plan.is_empty() {
                return Ok(username);
            }
            let by = desired.person_email.clone();
            let report = apply::run(
                target.clone(),
                &plan,
                &ApplyContext::for_person(
                    self.links.as_ref(),
                    self.audit.as_deref(),
                    Actor::Login,
                    &by,
                ),
            )
            .await;
            if report.succeeded() {
                tracing::info!(target = %tname, user = %username, ops = plan.operations.len(), "provisioned at login");
                return Ok(username);
            }
            let existed = actual.user(&username).is_some();
            let why = format!(
                "{tname}: {} operation(s) failed",
                report.counts.failed + report.counts.skipped
            );
            self.on_failure(&tname, existed.then(|| username.clone()), why)
        })
    }

    /// [`Self::provision`] under the person's Redis lock. Another replica's run that
    /// finished while this one waited (or within `refresh_after`) is reused, never
    /// repeated. When Redis cannot be reached, `on_failure = "deny"` refuses the
    /// login and `"allow"` provisions with this replica's own single-flight only.
    async fn provision_shared(
        &self,
        flight: &SharedFlight,
        identity: &Identity,
    ) -> Result<Admitted, AuthError> {
        let login = &self.settings.provisioning.login;
        let (idp, sub) = (identity.idp.as_str(), identity.sub.as_str());
        // The lock outlives one bounded run; a waiter waits about as long.
        let ttl = login.timeout + Duration::from_secs(5);
        let unavailable = |e: crate::replicas::SharedError| -> Result<(), AuthError> {
            match login.on_failure {
                OnFailure::Allow => {
                    tracing::warn!(error = %e, "login provisioning lock unavailable; provisioning without it (on_failure = allow)");
                    Ok(())
                }
                OnFailure::Deny => Err(AuthError::new(
                    DenialReason::ProvisioningFailed,
                    format!("the login provisioning lock is unavailable: {e}"),
                )),
            }
        };
        let before = match flight.peek(idp, sub).await {
            Ok(b) => b,
            Err(e) => {
                unavailable(e)?;
                return self.provision(identity).await;
            }
        };
        if let Some(b) = before
            .as_ref()
            .filter(|b| b.fresh(SystemTime::now(), login.refresh_after))
        {
            return Ok(b.admitted());
        }
        let held = match flight.lock(idp, sub, ttl, ttl).await {
            Ok(Some(held)) => held,
            Ok(None) => {
                return Err(AuthError::new(
                    DenialReason::ProvisioningFailed,
                    format!("another replica is still provisioning this person after {ttl:?}"),
                ))
            }
            Err(e) => {
                unavailable(e)?;
                return self.provision(identity).await;
            }
        };
        let after = flight.peek(idp, sub).await.ok().flatten();
        let result = match reusable(
            before.as_ref(),
            after,
            SystemTime::now(),
            login.refresh_after,
        ) {
            Some(a) => Ok(a),
            None => {
                let r = self.provision(identity).await;
                if let Ok(a) = &r {
                    let keep = login.refresh_after.max(ttl);
                    if let Err(e) = flight.record(idp, sub, a, keep).await {
                        tracing::warn!(error = %e, "could not share the login admission");
                    }
                }
                r
            }
        };
        flight.unlock(&held).await;
        result
    }

    /// `on_failure = "allow"` lets the person in only when their account exists.
    fn on_failure(
        &self,
        target: &str,
        existing: Option<String>,
        why: String,
    ) -> Result<String, AuthError> {
        match (self.settings.provisioning.login.on_failure, existing) {
            (OnFailure::Allow, Some(username)) => {
                tracing::warn!(target, %why, "login-time provisioning failed; letting the person in (on_failure = allow)");
                Ok(username)
            }
            _ => Err(AuthError::new(DenialReason::ProvisioningFailed, why)),
        }
    }
}

impl Admission for LoginProvisioner {
    fn admit<'a>(&'a self, identity: &'a Identity, _now: SystemTime) -> AdmitFuture<'a> {
        Box::pin(async move {
            let key = Self::key(&identity.idp, &identity.sub);
            let refresh = self.settings.provisioning.login.refresh_after;
            if let Some(a) = self.fresh(&key, refresh) {
                return Ok(a);
            }
            // Single flight: concurrent first requests of one person wait for one run.
            let flight = self.flights.entry(key.clone()).or_default().clone();
            let guard = flight.lock().await;
            if let Some(a) = self.fresh(&key, refresh) {
                return Ok(a);
            }
            let result = match &self.shared {
                Some(flight) => self.provision_shared(flight, identity).await,
                None => self.provision(identity).await,
            };
            if let Ok(a) = &result {
                self.recent.insert(key.clone(), (Instant::now(), a.clone()));
                self.verdicts.insert(key.clone(), (Instant::now(), true));
            }
            drop(guard);
            self.flights
                .remove_if(&key, |_, f| Arc::strong_count(f) <= 2);
            result
        })
    }

    fn revalidate<'a>(&'a self, session: &'a Session) -> RevalidateFuture<'a> {
        Box::pin(async move {
            let Some(dir) = self
                .directory
                .as_ref()
                .filter(|d| d.source() == session.idp)
            else {
                // Claims-only providers: nothing to ask between sign-ins.
                return Verdict::from(true);
            };
            let key = Self::key(&session.idp, &session.sub);
            let every = self
                .settings
                .session
                .revalidate_after
                .max(Duration::from_secs(1));
            if let Some(v) = self.verdicts.get(&key).filter(|v| v.0.elapsed() < every) {
                return Verdict::from(v.1);
            }
            let mut idp_groups = None;
            let verdict = match dir.person(&session.sub).await {
                Ok(Some(p)) => {
                    idp_groups = Some(idp_group_names(&p.groups));
                    p.person.is_active() && self.allowed(&session.idp, &p.groups)
                }
                Ok(None) => false,
                Err(e) => {
                    // A directory outage must not sign everyone out: keep the last verdict.
                    tracing::warn!(error = %e, "session revalidation could not reach the directory; keeping the session");
                    return Verdict::from(self.verdicts.get(&key).map(|v| v.1).unwrap_or(true));
                }
            };
            if !verdict {
                self.recent.remove(&key);
                if let Some(flight) = &self.shared {
                    flight.forget(&session.idp, &session.sub).await;
                }
                tracing::info!(user = %session.username, "session revoked at revalidation: suspended, removed or no longer allowed");
            }
            self.verdicts.insert(key, (Instant::now(), verdict));
            Verdict {
                keep: verdict,
                idp_groups,
            }
        })
    }
}

/// The names `[admin] groups` may use for a person's IdP groups: each group's
/// e-mail and display name.
fn idp_group_names(groups: &[GroupRef]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|g| [g.email.clone(), g.name.clone()])
        .filter(|n| !n.is_empty())
        .collect()
}

/// The person as the ID token describes them (claims-only providers).
fn claims_person(identity: &Identity) -> PersonWithGroups {
    let full = identity.name.clone().unwrap_or_default();
    let mut groups: Vec<GroupRef> = identity
        .groups
        .iter()
        .map(|g| GroupRef {
            id: g.clone(),
            email: g.to_ascii_lowercase(),
            name: g.clone(),
        })
        .collect();
    groups.sort_by(|a, b| a.email.cmp(&b.email));
    groups.dedup_by(|a, b| a.email == b.email);
    PersonWithGroups {
        person: Person {
            id: identity.sub.clone(),
            primary_email: identity.email.clone(),
            aliases: Vec::new(),
            given_name: identity.given_name.clone().unwrap_or_default(),
            family_name: identity.family_name.clone().unwrap_or_default(),
            full_name: full,
            suspended: false,
            archived: false,
            org_unit_path: String::new(),
            is_admin: false,
        },
        groups,
    }
}
