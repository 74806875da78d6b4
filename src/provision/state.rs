//! The actual state of one target as the planner sees it (users, groups, memberships
//! in the managed scope), indexed case-insensitively like the Atlassian products,
//! plus `apply_to_state`: the pure model of what a plan does to it. No I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::identity::ExternalId;
use crate::target::TargetUser;

use super::links::LinkedAccount;
use super::plan::{Operation, Plan};

/// Case-folds a username or group name the way Atlassian products compare them.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// [`fold`] without allocating when the name is already lower-case (the usual case);
/// for lookups on the planner's hot path.
pub fn folded(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_uppercase) {
        Cow::Owned(name.to_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// What a target holds right now. Build it from the paged listings with the
/// `insert_*` methods; only memberships of managed groups need to be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualState {
    /// Folded username -> user.
    pub users: BTreeMap<String, TargetUser>,
    /// Folded group name -> the name as the target spells it.
    pub groups: BTreeMap<String, String>,
    /// Folded group name -> folded usernames of its members.
    pub members: BTreeMap<String, BTreeSet<String>>,
}

impl ActualState {
    /// Records one user.
    pub fn insert_user(&mut self, user: TargetUser) {
        self.users.insert(fold(&user.username), user);
    }

    /// Records that a group exists.
    pub fn insert_group(&mut self, name: &str) {
        self.groups
            .entry(fold(name))
            .or_insert_with(|| name.to_string());
    }

    /// Records one membership (the group is recorded too).
    pub fn insert_member(&mut self, group: &str, username: &str) {
        self.insert_group(group);
        self.members
            .entry(fold(group))
            .or_default()
            .insert(fold(username));
    }

    /// The user with this name (any case).
    pub fn user(&self, username: &str) -> Option<&TargetUser> {
        self.users.get(&fold(username))
    }

    /// Whether `username` is a member of `group` (any case).
    pub fn is_member(&self, group: &str, username: &str) -> bool {
        self.members
            .get(&fold(group))
            .is_some_and(|m| m.contains(&fold(username)))
    }

    /// The groups (folded) `username` belongs to among those read.
    pub fn groups_of(&self, username: &str) -> BTreeSet<String> {
        let u = fold(username);
        self.members
            .iter()
            .filter(|(_, m)| m.contains(&u))
            .map(|(g, _)| g.clone())
            .collect()
    }
}

/// The key a model-created account gets (real targets assign their own).
pub fn model_key(username: &str) -> String {
    format!("model-key-{}", fold(username))
}

/// Applies a plan to a copy of the state and links, as a perfect target would. Used
/// by property tests (apply, then plan again = nothing to do) and dry-run previews.
pub fn apply_to_state(
    state: &mut ActualState,
    links: &mut BTreeMap<ExternalId, LinkedAccount>,
    plan: &Plan,
) {
    for op in &plan.operations {
        match op {
            Operation::CreateGroup { group } => state.insert_group(group),
            Operation::CreateUser { person, account } => {
                let key = model_key(&account.username);
                state.insert_user(TargetUser {
                    username: account.username.clone(),
                    key: Some(key.clone()),
                    email: Some(account.email.clone()),
                    display_name: account.display_name.clone(),
                    active: true,
                });
                links.insert(
                    person.clone(),
                    LinkedAccount {
                        username: account.username.clone(),
                        key: Some(key),
                        pending: false,
                    },
                );
            }
            Operation::Link {
                person,
                username,
                key,
            } => {
                links.insert(
                    person.clone(),
                    LinkedAccount {
                        username: username.clone(),
                        key: key.clone(),
                        pending: false,
                    },
                );
            }
            Operation::Reactivate { username, .. } => {
                if let Some(u) = state.users.get_mut(&fold(username)) {
                    u.active = true;
                }
            }
            Operation::Deactivate { username, .. } => {
                if let Some(u) = state.users.get_mut(&fold(username)) {
                    u.active = false;
                }
            }
            Operation::UpdateUser {
                person,
                username,
                changes,
            } => {
                let Some(mut u) = state.users.remove(&fold(username)) else {
                    continue;
                };
                if let Some(c) = &changes.email {
                    u.email = Some(c.after.clone());
                }
                if let Some(c) = &changes.display_name {
                    u.display_name = c.after.clone();
                }
                if let Some(c) = &changes.username {
                    let (old, new) = (fold(&c.before), fold(&c.after));
                    for m in state.members.values_mut() {
                        if m.remove(&old) {
                            m.insert(new.clone());
                        }
                    }
                    u.username = c.after.clone();
                    if let Some(l) = links.get_mut(person) {
                        l.username = c.after.clone();
                    }
                }
                state.insert_user(u);
            }
            Operation::AddMember { group, username } => state.insert_member(group, username),
            Operation::RemoveMember {
                group, username, ..
            } => {
                if let Some(m) = state.members.get_mut(&fold(group)) {
                    m.remove(&fold(username));
                }
            }
        }
    }
}
