//! Reading a target's actual state for the planner: everything in the managed scope
//! (full sync) or just what one person's plan needs (login time). I/O only; the diff
//! is `plan`'s job.

use crate::target::{Cursor, Target, TargetError};

use super::links::LinkedAccount;
use super::mapping::{DesiredAccount, ManagedScope};
use super::state::{fold, ActualState};

/// Reads everything the planner needs from one target. Any error aborts the read
/// (a partial snapshot must never drive deprovisioning); the caller decides whether
/// to stop or to plan additions only with `Policy::complete_read = false`.
pub async fn read_actual(
    target: &dyn Target,
    scope: &ManagedScope,
) -> Result<ActualState, TargetError> {
    let mut state = ActualState::default();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = target.list_users_page(cursor.as_ref()).await?;
        for u in page.items {
            state.insert_user(u);
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = target.list_groups_page(cursor.as_ref()).await?;
        for g in page.items {
            state.insert_group(&g.name);
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let managed: Vec<String> = scope
        .groups
        .iter()
        .filter_map(|g| state.groups.get(&fold(g)).cloned())
        .collect();
    for group in managed {
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = target.list_members_page(&group, cursor.as_ref()).await?;
            for m in page.items {
                state.insert_member(&group, &m);
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    Ok(state)
}

/// Reads what planning one person needs (login time, `Population::Listed`): the
/// account with the desired username, the linked account, the account with the
/// person's e-mail (skipped when the target can only find it by scanning every user),
/// their group memberships, and whether each wanted group they are not in exists
/// (one member-page request per such group; "not found" means missing).
pub async fn read_person(
    target: &dyn Target,
    desired: &DesiredAccount,
    link: Option<&LinkedAccount>,
) -> Result<ActualState, TargetError> {
    let mut state = ActualState::default();
    let mut names = vec![desired.username.as_str()];
    names.extend(link.map(|l| l.username.as_str()));
    for name in names {
        if state.user(name).is_none() {
            if let Some(u) = target.get_user(name).await? {
                state.insert_user(u);
            }
        }
    }
    if !target.capabilities().email_lookup_scans {
        if let Some(u) = target.find_user_by_email(&desired.person_email).await? {
            state.insert_user(u);
        }
    }
    let found: Vec<String> = state.users.values().map(|u| u.username.clone()).collect();
    for name in found {
        for g in target.user_groups(&name).await? {
            state.insert_member(&g, &name);
        }
    }
    let wanted: Vec<String> = desired
        .groups()
        .chain(desired.groups_on_create.iter())
        .filter(|g| !state.groups.contains_key(&fold(g)))
        .map(|g| g.to_string())
        .collect();
    for g in wanted {
        match target.list_members_page(&g, None).await {
            Ok(_) => state.insert_group(&g),
            Err(TargetError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(state)
}
