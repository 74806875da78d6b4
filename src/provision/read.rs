//! Reading a target's actual state for the planner: all users, all groups and the
//! members of the managed groups, page by page. I/O only; the diff is `plan`'s job.

use crate::target::{Cursor, Target, TargetError};

use super::mapping::ManagedScope;
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
