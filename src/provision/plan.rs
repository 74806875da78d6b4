//! The plan's vocabulary and entry point: policy, operations, phases, the plan and
//! `plan_for` (desired accounts + actual state + links + policy -> ordered
//! operations; the rules live in `planner`). Pure; executing is `apply`'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{
    Deprovision, GroupsSettings, LinkExisting, ProvisioningSettings, SyncSettings, UserPattern,
};
use crate::identity::ExternalId;
use crate::target::Capabilities;

use super::links::LinkedAccount;
use super::mapping::{DesiredAccount, ManagedScope, Skip};
use super::state::ActualState;

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
    /// `[provisioning] create_users`: create accounts that do not exist.
    pub create_users: bool,
    /// `[provisioning] update_users`: rename and update e-mail/display name.
    pub update_users: bool,
    /// `[provisioning] link_existing`: when an unlinked account may be taken over.
    pub link_existing: LinkExisting,
    /// `[sync] deprovision`: what happens to accounts of people gone or suspended.
    pub deprovision: Deprovision,
    /// `[groups] keep_existing`: never remove memberships of active people.
    pub keep_existing: bool,
    /// `[groups] create_missing`: create managed groups the target lacks.
    pub create_missing_groups: bool,
    /// What the target can do (rename, deactivate, create groups, ...).
    pub capabilities: Capabilities,
    /// `[provisioning] protected_users`: never changed, deactivated or stripped.
    pub protected: Vec<UserPattern>,
    /// `false` when reading the source or the target failed part-way: then nothing
    /// is deprovisioned and no membership is removed.
    pub complete_read: bool,
    /// Whether people missing from `desired` are gone (full sync) or just not listed.
    pub population: Population,
    /// The source a full sync read (`[directory] idp`): only people linked from it can
    /// be gone. People another `[[idp]]` provisioned (a second OIDC provider, SCIM
    /// pushes) are not in that directory and must never be deprovisioned by its sync.
    /// `None` = every linked person counts (a single-source setup).
    pub source: Option<String>,
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
            source: None,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
}

/// One field's value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub before: String,
    pub after: String,
}

/// What an update changes; `None` fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Removal {
    /// `keep_existing = false` and no rule justifies the membership any more.
    NotJustified,
    /// The person is gone or suspended and `deprovision = "remove-groups"` (or the
    /// target cannot deactivate).
    Deprovision,
}

/// One change to a target. Never a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// People whose account usher creates in this plan (or created in a run that
    /// did not finish): once their creation-time groups are in, apply clears the
    /// pending mark on their link.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub confirm_created: Vec<ExternalId>,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty() && self.confirm_created.is_empty()
    }

    /// Operations per kind (`create-user` -> 3, ...), for dry-run output and reports.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for op in &self.operations {
            *out.entry(op.kind()).or_default() += 1;
        }
        out
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
    super::planner::Planner::new(input).run()
}
