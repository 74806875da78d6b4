//! The planning rules: for each person decide the link, then create / adopt /
//! rename / update / reactivate, add and (when allowed) remove managed memberships,
//! and deprovision people who are gone or suspended. Pure and deterministic (sorted
//! input); never deletes an account, never touches an unmanaged group or a
//! protected user.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::Deprovision;
use crate::identity::ExternalId;
use crate::target::TargetUser;

use super::links::{decide_link, Candidate, LinkDecision, LinkedAccount};
use super::mapping::DesiredAccount;
use super::plan::{
    AccountChanges, Change, NewAccount, Note, Operation, Plan, PlanInput, PlanStats, Population,
    Removal,
};
use super::state::{fold, folded};

/// One planning run's indexes and output.
pub(crate) struct Planner<'a> {
    i: PlanInput<'a>,
    by_key: HashMap<&'a str, &'a TargetUser>,
    by_email: HashMap<String, Vec<&'a TargetUser>>,
    /// Folded username -> the person linked to it.
    owner: HashMap<String, &'a ExternalId>,
    /// Folded usernames -> the (folded) groups read for them.
    user_groups: HashMap<&'a str, Vec<&'a str>>,
    /// Folded desired usernames -> how many people want them.
    wanted: HashMap<String, usize>,
    claimed: BTreeSet<String>,
    removable: BTreeSet<String>,
    managed: BTreeSet<String>,
    new_groups: BTreeMap<String, String>,
    ops: Vec<Operation>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(i: PlanInput<'a>) -> Self {
        let mut by_key = HashMap::new();
        let mut by_email: HashMap<String, Vec<&TargetUser>> = HashMap::new();
        for u in i.actual.users.values() {
            if let Some(k) = &u.key {
                by_key.insert(k.as_str(), u);
            }
            if let Some(e) = &u.email {
                by_email.entry(fold(e)).or_default().push(u);
            }
        }
        let managed: BTreeSet<String> = i.scope.groups.iter().map(|g| fold(g)).collect();
        let create_only: BTreeSet<String> = i.scope.create_only.iter().map(|g| fold(g)).collect();
        let removable = managed.difference(&create_only).cloned().collect();
        let mut user_groups: HashMap<&str, Vec<&str>> = HashMap::new();
        for (g, members) in &i.actual.members {
            for m in members {
                user_groups.entry(m.as_str()).or_default().push(g.as_str());
            }
        }
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for d in i.desired {
            *wanted.entry(fold(&d.username)).or_default() += 1;
        }
        let mut p = Planner {
            i,
            by_key,
            by_email,
            owner: HashMap::new(),
            user_groups,
            wanted,
            claimed: BTreeSet::new(),
            removable,
            managed,
            new_groups: BTreeMap::new(),
            ops: Vec::new(),
            plan: Plan {
                target: i.target.to_string(),
                operations: Vec::new(),
                accounts: BTreeMap::new(),
                denied: Vec::new(),
                notes: Vec::new(),
                stats: PlanStats::default(),
                confirm_created: Vec::new(),
            },
        };
        let mut active = 0;
        for (id, l) in i.links {
            if let Some(u) = p.resolve(l) {
                p.owner.insert(fold(&u.username), id);
                active += usize::from(u.active);
            }
        }
        p.plan.stats.managed_active_accounts = active;
        p
    }

    /// The account a link points at: by stable key first, then by username.
    fn resolve(&self, l: &LinkedAccount) -> Option<&'a TargetUser> {
        if let Some(u) = l.key.as_deref().and_then(|k| self.by_key.get(k)) {
            return Some(u);
        }
        self.i
            .actual
            .users
            .get(&fold(&l.username))
            .filter(|u| l.key.is_none() || u.key.is_none() || u.key == l.key)
    }

    fn note(&mut self, person: Option<&ExternalId>, subject: &str, message: String) {
        self.plan.notes.push(Note {
            person: person.cloned(),
            subject: subject.to_string(),
            message,
        });
    }

    pub(crate) fn run(mut self) -> Plan {
        let mut desired: Vec<&DesiredAccount> = self.i.desired.iter().collect();
        desired.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        for d in &desired {
            self.person(d);
        }
        if self.i.policy.population == Population::Everyone {
            self.absent(&desired);
        }
        for name in std::mem::take(&mut self.new_groups).into_values() {
            self.ops.push(Operation::CreateGroup { group: name });
        }
        let mut ops = std::mem::take(&mut self.ops);
        ops.sort_by_key(Operation::phase);
        for op in &ops {
            if let Operation::RemoveMember { group, .. } = op {
                let size = self
                    .i
                    .actual
                    .members
                    .get(&fold(group))
                    .map_or(0, |m| m.len());
                self.plan.stats.group_sizes.insert(group.clone(), size);
            }
        }
        self.plan.operations = ops;
        self.plan
    }

    fn person(&mut self, d: &DesiredAccount) {
        let id = &d.external_id;
        let linked = self.i.links.get(id).and_then(|l| self.resolve(l));
        let by_username = self
            .i
            .actual
            .users
            .get(&*folded(&d.username))
            .map(|u| Candidate {
                user: u,
                linked_to: self.owner.get(&*folded(&u.username)).copied(),
            });
        let candidates = |email: &str| -> Vec<Candidate<'a>> {
            self.by_email
                .get(&*folded(email))
                .map(|v| {
                    v.iter()
                        .map(|u| Candidate {
                            user: u,
                            linked_to: self.owner.get(&*folded(&u.username)).copied(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut by_email = candidates(&d.person_email);
        if by_email.is_empty() {
            for a in &d.aliases {
                for c in candidates(a) {
                    if !by_email.iter().any(|b| b.user.username == c.user.username) {
                        by_email.push(c);
                    }
                }
            }
        }
        let mut decision = decide_link(
            d,
            linked,
            by_username,
            &by_email,
            self.i.policy.link_existing,
        );
        let collides = self.wanted.get(&*folded(&d.username)).copied().unwrap_or(0) > 1
            && linked.is_none_or(|u| folded(&u.username) != folded(&d.username));
        if collides && !matches!(decision, LinkDecision::Conflict(_)) {
            decision = LinkDecision::Conflict(format!(
                "several people map to the username {}; adjust provisioning.username so each person gets a distinct one",
                d.username
            ));
        }
        let account = match &decision {
            LinkDecision::Conflict(reason) => {
                self.plan.denied.push(Note {
                    person: Some(id.clone()),
                    subject: d.username.clone(),
                    message: reason.clone(),
                });
                return;
            }
            LinkDecision::Create => None,
            LinkDecision::UseLinked { username } | LinkDecision::Adopt { username } => {
                self.i.actual.users.get(&*folded(username))
            }
            LinkDecision::Rename { from, .. } => self.i.actual.users.get(&*folded(from)),
        };
        let Some(u) = account else {
            return self.create(d);
        };
        if !self.claimed.insert(fold(&u.username)) {
            self.plan.denied.push(Note {
                person: Some(id.clone()),
                subject: u.username.clone(),
                message: format!(
                    "the account {} is already claimed by another person in this sync",
                    u.username
                ),
            });
            return;
        }
        if self.i.policy.is_protected(&u.username) || self.i.policy.is_protected(&d.username) {
            self.note(
                Some(id),
                &u.username,
                "protected user: left unchanged".into(),
            );
            return;
        }
        let adopt = matches!(
            decision,
            LinkDecision::Adopt { .. } | LinkDecision::Rename { adopt: true, .. }
        );
        if adopt {
            self.plan.stats.managed_active_accounts += usize::from(u.active);
            self.ops.push(Operation::Link {
                person: id.clone(),
                username: u.username.clone(),
                key: u.key.clone(),
            });
        }
        if !d.active {
            return self.deprovision(u, Some(id));
        }
        // A link still marked pending: usher created this account in a run that
        // did not finish; it still owes the creation-time groups.
        let unfinished_create = !adopt && self.i.links.get(id).is_some_and(|l| l.pending);
        self.existing(d, u, unfinished_create);
    }

    fn create(&mut self, d: &DesiredAccount) {
        let id = &d.external_id;
        if !d.active {
            return;
        }
        if self.i.policy.is_protected(&d.username) {
            return self.note(Some(id), &d.username, "protected user: not created".into());
        }
        if !self.i.policy.create_users {
            return self.note(
                Some(id),
                &d.username,
                "no account and provisioning.create_users = false: not created".into(),
            );
        }
        self.claimed.insert(fold(&d.username));
        self.ops.push(Operation::CreateUser {
            person: id.clone(),
            account: Box::new(NewAccount {
                username: d.username.clone(),
                email: d.email.clone(),
                display_name: d.display_name.clone(),
                given_name: d.given_name.clone(),
                family_name: d.family_name.clone(),
            }),
        });
        self.plan.accounts.insert(id.clone(), d.username.clone());
        self.plan.confirm_created.push(id.clone());
        for g in d.groups().chain(d.groups_on_create.iter()) {
            self.add(Some(id), g, &d.username);
        }
    }

    /// An account the person already has; `unfinished_create` adds the groups
    /// usher owes from creating it (`default_new_users`).
    fn existing(&mut self, d: &DesiredAccount, u: &'a TargetUser, unfinished_create: bool) {
        let id = &d.external_id;
        let pol = self.i.policy;
        let caps = pol.capabilities;
        if !u.active && pol.deprovision != Deprovision::None && caps.can_deactivate {
            self.ops.push(Operation::Reactivate {
                username: u.username.clone(),
                person: Some(id.clone()),
            });
        }
        let mut changes = AccountChanges::default();
        let mut final_name = u.username.clone();
        let renamed = folded(&u.username) != folded(&d.username);
        if pol.update_users {
            if renamed && caps.can_rename {
                changes.username = Some(Change {
                    before: u.username.clone(),
                    after: d.username.clone(),
                });
                final_name = d.username.clone();
            }
            // A target that hides e-mails (None) is never "corrected" blindly.
            let email_differs = u
                .email
                .as_deref()
                .is_some_and(|e| !e.eq_ignore_ascii_case(&d.email));
            if email_differs && caps.can_update_email {
                changes.email = Some(Change {
                    before: u.email.clone().unwrap_or_default(),
                    after: d.email.clone(),
                });
            }
            if u.display_name != d.display_name && caps.can_update_display_name {
                changes.display_name = Some(Change {
                    before: u.display_name.clone(),
                    after: d.display_name.clone(),
                });
            }
        }
        if renamed && changes.username.is_none() {
            let why = if pol.update_users {
                "the target cannot rename accounts"
            } else {
                "provisioning.update_users = false"
            };
            self.note(
                Some(id),
                &u.username,
                format!(
                    "kept the username {} instead of {} ({why})",
                    u.username, d.username
                ),
            );
        }
        if !changes.is_empty() {
            self.ops.push(Operation::UpdateUser {
                person: id.clone(),
                username: u.username.clone(),
                changes: Box::new(changes),
            });
        }
        self.plan.accounts.insert(id.clone(), final_name.clone());
        let have: BTreeSet<&str> = self
            .user_groups
            .get(&*folded(&u.username))
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let on_create: &[super::mapping::GroupName] = if unfinished_create {
            self.plan.confirm_created.push(id.clone());
            &d.groups_on_create
        } else {
            &[]
        };
        let want: BTreeSet<std::borrow::Cow<'_, str>> =
            d.groups().chain(on_create).map(|g| folded(g)).collect();
        for g in d.groups().chain(on_create) {
            if !have.contains(&*folded(g)) {
                self.add(Some(id), g, &final_name);
            }
        }
        if !pol.keep_existing && pol.complete_read {
            let drop: Vec<&str> = have
                .iter()
                .copied()
                .filter(|g| self.removable.contains(*g) && !want.contains(*g))
                .collect();
            for g in drop {
                self.remove(g, &final_name, Removal::NotJustified);
            }
        }
    }

    /// Adds a membership, creating the group first if allowed.
    fn add(&mut self, person: Option<&ExternalId>, group: &str, username: &str) {
        let f = folded(group);
        let name = match self.i.actual.groups.get(&*f) {
            Some(actual) => actual.clone(),
            None if self.new_groups.contains_key(&*f) => group.to_string(),
            None if self.i.policy.create_missing_groups
                && self.i.policy.capabilities.can_create_groups =>
            {
                self.new_groups.insert(f.into_owned(), group.to_string());
                group.to_string()
            }
            None => {
                return self.note(
                    person,
                    group,
                    format!("group {group} does not exist in the target and groups.create_missing = false (or the target cannot create groups): {username} not added"),
                )
            }
        };
        self.ops.push(Operation::AddMember {
            group: name,
            username: username.to_string(),
        });
    }

    fn remove(&mut self, folded_group: &str, username: &str, why: Removal) {
        let group = self
            .i
            .actual
            .groups
            .get(folded_group)
            .cloned()
            .unwrap_or_else(|| folded_group.to_string());
        self.ops.push(Operation::RemoveMember {
            group,
            username: username.to_string(),
            why,
        });
    }

    /// A gone or suspended person's account: deactivate or strip managed groups.
    fn deprovision(&mut self, u: &'a TargetUser, person: Option<&ExternalId>) {
        let pol = self.i.policy;
        if pol.is_protected(&u.username) {
            return self.note(
                person,
                &u.username,
                "protected user: not deprovisioned".into(),
            );
        }
        if !pol.complete_read {
            return self.note(
                person,
                &u.username,
                "not deprovisioned: this read of the source or target was incomplete".into(),
            );
        }
        let strip = match pol.deprovision {
            Deprovision::None => return,
            Deprovision::Deactivate if pol.capabilities.can_deactivate => {
                if u.active {
                    self.ops.push(Operation::Deactivate {
                        username: u.username.clone(),
                        person: person.cloned(),
                    });
                }
                return;
            }
            Deprovision::Deactivate => {
                self.note(
                    person,
                    &u.username,
                    "the target cannot deactivate accounts: removing managed groups instead".into(),
                );
                true
            }
            Deprovision::RemoveGroups => true,
        };
        if strip {
            let groups: Vec<&str> = self
                .user_groups
                .get(&*folded(&u.username))
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|g| self.managed.contains(*g))
                        .collect()
                })
                .unwrap_or_default();
            for g in groups {
                self.remove(g, &u.username, Removal::Deprovision);
            }
        }
    }

    /// Linked people no longer in the source (full sync only).
    fn absent(&mut self, desired: &[&DesiredAccount]) {
        let present: BTreeSet<&ExternalId> = desired
            .iter()
            .map(|d| &d.external_id)
            .chain(self.i.skipped.iter().map(|s| &s.external_id))
            .collect();
        let links = self.i.links;
        let source = self.i.policy.source.as_deref();
        for (id, l) in links {
            if present.contains(id) || source.is_some_and(|s| s != id.source) {
                continue;
            }
            if let Some(u) = self.resolve(l) {
                if self.claimed.insert(fold(&u.username)) {
                    self.deprovision(u, Some(id));
                }
            }
        }
    }
}
