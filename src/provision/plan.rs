//! The planner: desired accounts + a target's actual state + identity links +
//! policy -> an ordered list of operations. Pure and deterministic (sorted input,
//! BTreeMaps); never deletes an account and never touches a group outside the
//! managed scope or a protected user. Executing the plan is `apply`'s job.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::{
    Deprovision, GroupsSettings, LinkExisting, ProvisioningSettings, SyncSettings, UserPattern,
};
use crate::identity::ExternalId;
use crate::target::{Capabilities, TargetUser};

use super::links::{decide_link, Candidate, LinkDecision, LinkedAccount};
use super::mapping::{DesiredAccount, ManagedScope, Skip};
use super::state::{fold, ActualState};

/// Whose accounts the input covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Population {
    /// Everyone in the source (full sync): linked people missing from it are gone.
    Everyone,
    /// Only the people given (login-time): nobody else is deprovisioned.
    Listed,
}

/// The rules the planner follows for one target.
#[derive(Debug, Clone)]
pub struct Policy {
    pub create_users: bool,
    pub update_users: bool,
    pub link_existing: LinkExisting,
    pub deprovision: Deprovision,
    /// `[groups] keep_existing`: never remove memberships of active people.
    pub keep_existing: bool,
    /// `[groups] create_missing`: create managed groups the target lacks.
    pub create_missing_groups: bool,
    pub capabilities: Capabilities,
    pub protected: Vec<UserPattern>,
    /// `false` when reading the source or the target failed part-way: then nothing
    /// is deprovisioned and no membership is removed.
    pub complete_read: bool,
    pub population: Population,
}

impl Policy {
    /// The policy from the validated settings, for a complete full sync.
    pub fn from_settings(
        provisioning: &ProvisioningSettings,
        groups: &GroupsSettings,
        sync: &SyncSettings,
        capabilities: Capabilities,
    ) -> Self {
        Policy {
            create_users: provisioning.create_users,
            update_users: provisioning.update_users,
            link_existing: provisioning.link_existing,
            deprovision: sync.deprovision,
            keep_existing: groups.keep_existing,
            create_missing_groups: groups.create_missing,
            capabilities,
            protected: provisioning.protected_users.clone(),
            complete_read: true,
            population: Population::Everyone,
        }
    }

    /// Whether `username` is a protected account (never changed).
    pub fn is_protected(&self, username: &str) -> bool {
        self.protected.iter().any(|p| match p {
            UserPattern::Exact(n) => n.eq_ignore_ascii_case(username),
            UserPattern::Regex(r) => r.is_match(username),
        })
    }
}

/// The fields of an account usher creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
}

/// One field's value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub before: String,
    pub after: String,
}

/// What an update changes; `None` fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<Change>,
}

impl AccountChanges {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.email.is_none() && self.display_name.is_none()
    }
}

/// Why a membership is removed (safety limits count deprovisioning separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Removal {
    /// `keep_existing = false` and no rule justifies the membership any more.
    NotJustified,
    /// The person is gone or suspended and `deprovision = "remove-groups"` (or the
    /// target cannot deactivate).
    Deprovision,
}

/// One change to a target. Never a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    CreateGroup {
        group: String,
    },
    /// Creates an active account and links it to `person`.
    CreateUser {
        person: ExternalId,
        account: Box<NewAccount>,
    },
    /// Records that `person` owns this existing account (first meeting).
    Link {
        person: ExternalId,
        username: String,
        key: Option<String>,
    },
    Reactivate {
        username: String,
        person: Option<ExternalId>,
    },
    /// Rename and/or e-mail/display-name change of `person`'s account `username`.
    UpdateUser {
        person: ExternalId,
        username: String,
        changes: Box<AccountChanges>,
    },
    AddMember {
        group: String,
        username: String,
    },
    RemoveMember {
        group: String,
        username: String,
        why: Removal,
    },
    /// Deactivates (never deletes). Jira targets hand project/component leads to
    /// `default_project_lead`/`default_component_lead` first, inside this operation.
    Deactivate {
        username: String,
        person: Option<ExternalId>,
    },
}

/// Execution phases; a phase starts when the previous one has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Groups,
    Accounts,
    Updates,
    AddMembers,
    RemoveMembers,
    Deactivate,
}

impl Operation {
    /// The phase this operation runs in: groups and accounts exist (and have their
    /// final names) before memberships are added; deactivation comes last.
    pub fn phase(&self) -> Phase {
        match self {
            Operation::CreateGroup { .. } => Phase::Groups,
            Operation::CreateUser { .. }
            | Operation::Link { .. }
            | Operation::Reactivate { .. } => Phase::Accounts,
            Operation::UpdateUser { .. } => Phase::Updates,
            Operation::AddMember { .. } => Phase::AddMembers,
            Operation::RemoveMember { .. } => Phase::RemoveMembers,
            Operation::Deactivate { .. } => Phase::Deactivate,
        }
    }

    /// Short kebab-case name (reports, audit lines, filters).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::CreateGroup { .. } => "create-group",
            Operation::CreateUser { .. } => "create-user",
            Operation::Link { .. } => "link",
            Operation::Reactivate { .. } => "reactivate",
            Operation::UpdateUser { .. } => "update-user",
            Operation::AddMember { .. } => "add-member",
            Operation::RemoveMember { .. } => "remove-member",
            Operation::Deactivate { .. } => "deactivate",
        }
    }

    /// Whether this changes the target (a `Link` only changes usher's own state).
    pub fn changes_target(&self) -> bool {
        !matches!(self, Operation::Link { .. })
    }

    /// The account this operation is about, if any (the name it has when it runs).
    pub fn username(&self) -> Option<&str> {
        match self {
            Operation::CreateGroup { .. } => None,
            Operation::CreateUser { account, .. } => Some(&account.username),
            Operation::Link { username, .. }
            | Operation::Reactivate { username, .. }
            | Operation::UpdateUser { username, .. }
            | Operation::AddMember { username, .. }
            | Operation::RemoveMember { username, .. }
            | Operation::Deactivate { username, .. } => Some(username),
        }
    }
}

/// A person the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The person, when the note is about one.
    pub person: Option<ExternalId>,
    /// The account or group concerned.
    pub subject: String,
    pub message: String,
}

/// Numbers the safety limits are computed against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanStats {
    /// Active accounts usher manages (linked or adopted) before the plan runs.
    pub managed_active_accounts: usize,
    /// Current member count of every group the plan removes members from.
    pub group_sizes: BTreeMap<String, usize>,
}

/// The ordered changes for one target plus what was left alone and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub target: String,
    /// Sorted by phase; within a phase by person / account.
    pub operations: Vec<Operation>,
    /// The username each provisioned person has once the plan is applied (what the
    /// identity header must carry).
    pub accounts: BTreeMap<ExternalId, String>,
    /// People refused an account in this target (link conflicts), with the reason.
    pub denied: Vec<Note>,
    /// Everything else left undone on purpose (protected, missing group, policy off).
    pub notes: Vec<Note>,
    pub stats: PlanStats,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

/// Everything the planner reads, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub target: &'a str,
    /// Mapped people (any order; the planner sorts).
    pub desired: &'a [DesiredAccount],
    /// People present in the source but not mapped: never treated as gone.
    pub skipped: &'a [Skip],
    pub actual: &'a ActualState,
    /// This target's links.
    pub links: &'a BTreeMap<ExternalId, LinkedAccount>,
    pub scope: &'a ManagedScope,
    pub policy: &'a Policy,
}

/// Plans one target. See [`PlanInput`]; the result is deterministic.
pub fn plan_for(input: PlanInput<'_>) -> Plan {
    Planner::new(input).run()
}

struct Planner<'a> {
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
    fn new(i: PlanInput<'a>) -> Self {
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

    fn run(mut self) -> Plan {
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
            .get(&fold(&d.username))
            .map(|u| Candidate {
                user: u,
                linked_to: self.owner.get(&fold(&u.username)).copied(),
            });
        let candidates = |email: &str| -> Vec<Candidate<'a>> {
            self.by_email
                .get(&fold(email))
                .map(|v| {
                    v.iter()
                        .map(|u| Candidate {
                            user: u,
                            linked_to: self.owner.get(&fold(&u.username)).copied(),
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
        let collides = self.wanted.get(&fold(&d.username)).copied().unwrap_or(0) > 1
            && linked.is_none_or(|u| fold(&u.username) != fold(&d.username));
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
                self.i.actual.users.get(&fold(username))
            }
            LinkDecision::Rename { from, .. } => self.i.actual.users.get(&fold(from)),
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
        self.existing(d, u);
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
        for g in d.groups().chain(d.groups_on_create.iter()) {
            self.add(Some(id), g, &d.username);
        }
    }

    fn existing(&mut self, d: &DesiredAccount, u: &'a TargetUser) {
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
        let renamed = fold(&u.username) != fold(&d.username);
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
            .get(fold(&u.username).as_str())
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let want: BTreeSet<String> = d.groups().map(|g| fold(g)).collect();
        for g in d.groups() {
            if !have.contains(fold(g).as_str()) {
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
        let f = fold(group);
        let name = match self.i.actual.groups.get(&f) {
            Some(actual) => actual.clone(),
            None if self.new_groups.contains_key(&f) => group.to_string(),
            None if self.i.policy.create_missing_groups
                && self.i.policy.capabilities.can_create_groups =>
            {
                self.new_groups.insert(f, group.to_string());
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
                .get(fold(&u.username).as_str())
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
        for (id, l) in links {
            if present.contains(id) {
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
