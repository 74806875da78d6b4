//! Safety brakes: checks a plan against `[sync] max_deprovision`, `max_changes` and
//! `max_group_removals` BEFORE anything is applied, and says which limit was hit
//! with the numbers. Pure; stopping the run and exiting 3 is the caller's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{Limit, SyncSettings};
use crate::provision::plan::{Operation, Plan, Removal};

/// The limits of one sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Accounts deactivated or stripped of groups, as a count or a % of the
    /// managed active accounts.
    pub max_deprovision: Limit,
    /// Target changes of any kind in one run.
    pub max_changes: u64,
    /// Members removed from any single group, as a count or a % of its size.
    pub max_group_removals: Limit,
}

impl Limits {
    /// The limits from `[sync]`.
    pub fn from_settings(sync: &SyncSettings) -> Self {
        Limits {
            max_deprovision: sync.max_deprovision,
            max_changes: sync.max_changes,
            max_group_removals: sync.max_group_removals,
        }
    }
}

/// How many of `base` a limit allows.
pub fn allowed(limit: Limit, base: usize) -> u64 {
    match limit {
        Limit::Count(n) => n,
        Limit::Percent(p) => ((p / 100.0) * base as f64).floor().max(0.0) as u64,
    }
}

/// One limit that the plan exceeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "kebab-case")]
pub enum LimitHit {
    /// `max_deprovision`: `count` accounts would be deprovisioned, `allowed` may be
    /// (of `base` managed active accounts).
    Deprovision {
        count: u64,
        allowed: u64,
        base: usize,
    },
    /// `max_changes`.
    Changes { count: u64, allowed: u64 },
    /// `max_group_removals` for one group of `size` members.
    GroupRemovals {
        group: String,
        count: u64,
        allowed: u64,
        size: usize,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Deprovision { count, allowed, base } => write!(
                f,
                "{count} accounts would be deprovisioned but sync.max_deprovision allows {allowed} (of {base} managed active accounts); check the source for a mass suspension or raise the limit"
            ),
            LimitHit::Changes { count, allowed } => write!(
                f,
                "{count} changes planned but sync.max_changes allows {allowed}; preview with --dry-run and raise the limit if they are expected"
            ),
            LimitHit::GroupRemovals { group, count, allowed, size } => write!(
                f,
                "{count} members would be removed from group {group} ({size} members) but sync.max_group_removals allows {allowed}; check the group mapping or raise the limit"
            ),
        }
    }
}

/// The numbers a plan was checked with (reported whether or not a limit was hit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SafetyCounts {
    pub deprovisions: u64,
    pub changes: u64,
    pub managed_active_accounts: usize,
    /// Group -> members the plan removes.
    pub group_removals: BTreeMap<String, u64>,
}

/// The verdict: every limit hit (empty = the plan may run) and the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafetyReport {
    pub hits: Vec<LimitHit>,
    pub counts: SafetyCounts,
}

impl SafetyReport {
    /// Whether the plan may be applied.
    pub fn passed(&self) -> bool {
        self.hits.is_empty()
    }
}

/// Checks a plan against the limits.
pub fn check(plan: &Plan, limits: &Limits) -> SafetyReport {
    let mut counts = SafetyCounts {
        managed_active_accounts: plan.stats.managed_active_accounts,
        ..SafetyCounts::default()
    };
    let mut deprovisioned: BTreeSet<&str> = BTreeSet::new();
    for op in &plan.operations {
        if op.changes_target() {
            counts.changes += 1;
        }
        match op {
            Operation::Deactivate { username, .. } => {
                deprovisioned.insert(username);
            }
            Operation::RemoveMember {
                group,
                username,
                why,
            } => {
                *counts.group_removals.entry(group.clone()).or_default() += 1;
                if *why == Removal::Deprovision {
                    deprovisioned.insert(username);
                }
            }
            _ => {}
        }
    }
    counts.deprovisions = deprovisioned.len() as u64;
    let mut hits = Vec::new();
    let base = counts.managed_active_accounts;
    let allow = allowed(limits.max_deprovision, base);
    if counts.deprovisions > allow {
        hits.push(LimitHit::Deprovision {
            count: counts.deprovisions,
            allowed: allow,
            base,
        });
    }
    if counts.changes > limits.max_changes {
        hits.push(LimitHit::Changes {
            count: counts.changes,
            allowed: limits.max_changes,
        });
    }
    for (group, n) in &counts.group_removals {
        let size = plan.stats.group_sizes.get(group).copied().unwrap_or(0);
        let allow = allowed(limits.max_group_removals, size);
        if *n > allow {
            hits.push(LimitHit::GroupRemovals {
                group: group.clone(),
                count: *n,
                allowed: allow,
                size,
            });
        }
    }
    SafetyReport { hits, counts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ExternalId;
    use crate::provision::plan::{PlanStats, Removal};

    fn plan(ops: Vec<Operation>, active: usize, sizes: &[(&str, usize)]) -> Plan {
        Plan {
            target: "jira".into(),
            operations: ops,
            accounts: BTreeMap::new(),
            denied: vec![],
            notes: vec![],
            stats: PlanStats {
                managed_active_accounts: active,
                group_sizes: sizes.iter().map(|(g, n)| (g.to_string(), *n)).collect(),
            },
            confirm_created: vec![],
        }
    }

    fn deactivate(n: usize) -> Vec<Operation> {
        (0..n)
            .map(|i| Operation::Deactivate {
                username: format!("u{i}"),
                person: None,
            })
            .collect()
    }

    fn removals(group: &str, n: usize, why: Removal) -> Vec<Operation> {
        (0..n)
            .map(|i| Operation::RemoveMember {
                group: group.into(),
                username: format!("u{i}"),
                why,
            })
            .collect()
    }

    fn limits(dep: Limit, changes: u64, group: Limit) -> Limits {
        Limits {
            max_deprovision: dep,
            max_changes: changes,
            max_group_removals: group,
        }
    }

    #[test]
    fn percent_of_managed_active_accounts() {
        let l = limits(Limit::Percent(5.0), 1000, Limit::Count(1000));
        let ok = check(&plan(deactivate(5), 100, &[]), &l);
        assert!(ok.passed(), "{:?}", ok.hits);
        let hit = check(&plan(deactivate(6), 100, &[]), &l);
        assert_eq!(
            hit.hits,
            vec![LimitHit::Deprovision {
                count: 6,
                allowed: 5,
                base: 100
            }]
        );
    }

    #[test]
    fn count_limit_and_remove_groups_counts_people_not_memberships() {
        let l = limits(Limit::Count(2), 1000, Limit::Count(1000));
        // 3 people stripped of 2 groups each = 3 deprovisions.
        let mut ops = removals("a", 3, Removal::Deprovision);
        ops.extend(removals("b", 3, Removal::Deprovision));
        let r = check(&plan(ops, 50, &[("a", 10), ("b", 10)]), &l);
        assert_eq!(r.counts.deprovisions, 3);
        assert!(matches!(
            r.hits[..],
            [LimitHit::Deprovision {
                count: 3,
                allowed: 2,
                ..
            }]
        ));
        // Unjustified removals are not deprovisioning.
        let r = check(
            &plan(removals("a", 3, Removal::NotJustified), 50, &[("a", 10)]),
            &l,
        );
        assert_eq!(r.counts.deprovisions, 0);
        assert!(r.passed());
    }

    #[test]
    fn max_changes_ignores_link_records() {
        let l = limits(Limit::Count(100), 2, Limit::Count(100));
        let mut ops = deactivate(2);
        ops.push(Operation::Link {
            person: ExternalId {
                source: "google".into(),
                id: "1".into(),
            },
            username: "x".into(),
            key: None,
        });
        assert!(check(&plan(ops.clone(), 100, &[]), &l).passed());
        ops.extend(deactivate(3));
        let r = check(&plan(ops, 100, &[]), &l);
        assert_eq!(
            r.hits,
            vec![LimitHit::Changes {
                count: 5,
                allowed: 2
            }]
        );
    }

    #[test]
    fn per_group_removals_against_group_size() {
        let l = limits(Limit::Count(100), 1000, Limit::Percent(50.0));
        let ops = [
            removals("small", 3, Removal::NotJustified),
            removals("big", 3, Removal::NotJustified),
        ]
        .concat();
        let r = check(&plan(ops, 10, &[("small", 4), ("big", 100)]), &l);
        assert_eq!(
            r.hits,
            vec![LimitHit::GroupRemovals {
                group: "small".into(),
                count: 3,
                allowed: 2,
                size: 4
            }]
        );
        assert!(r.hits[0].to_string().contains("max_group_removals"));
    }

    #[test]
    fn zero_base_percent_allows_nothing_and_empty_plan_passes() {
        let l = limits(Limit::Percent(10.0), 0, Limit::Percent(10.0));
        assert!(check(&plan(vec![], 0, &[]), &l).passed());
        assert!(!check(&plan(deactivate(1), 0, &[]), &l).passed());
    }
}
