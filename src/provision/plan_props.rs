//! Property tests for mapping + planning over random people, accounts, links and
//! policies: deterministic, phase-ordered, scope and protected users respected, and
//! applying the plan to the model then planning again yields nothing.

use proptest::prelude::*;

use crate::config::{Deprovision, GroupMap, GroupsMode, LinkExisting};
use crate::identity::PersonWithGroups;

use super::links::LinkedAccount;
use super::mapping::{DesiredAccount, ManagedScope, Mapper};
use super::plan::{plan_for, Operation, Plan, PlanInput, Policy, Population};
use super::plan_tests::{person, policy, user, xid, World};
use super::state::apply_to_state;

const NAMES: [&str; 7] = ["ann", "ben", "cat", "dov", "eve", "admin", "fox"];
const IDP_GROUPS: [&str; 4] = [
    "eng@example.com",
    "ops@example.com",
    "sales@example.com",
    "eng-x@other.org",
];
const TARGET_GROUPS: [&str; 5] = ["eng", "ops", "sales", "local", "jira-software-users"];

#[derive(Debug, Clone)]
struct Case {
    people: Vec<(usize, bool, Vec<bool>)>,
    accounts: Vec<(usize, bool, bool, Vec<bool>)>,
    existing_groups: Vec<bool>,
    links: Vec<(usize, usize, bool)>,
    flags: Vec<bool>,
    deprovision: usize,
    link_existing: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (
                0..NAMES.len(),
                prop::bool::weighted(0.2),
                prop::collection::vec(any::<bool>(), 4),
            ),
            0..7,
        ),
        prop::collection::vec(
            (
                0..NAMES.len(),
                any::<bool>(),
                prop::bool::weighted(0.7),
                prop::collection::vec(any::<bool>(), 5),
            ),
            0..6,
        ),
        prop::collection::vec(any::<bool>(), 5),
        prop::collection::vec((0..7usize, 0..NAMES.len(), any::<bool>()), 0..8),
        prop::collection::vec(any::<bool>(), 10),
        0..3usize,
        0..3usize,
    )
        .prop_map(
            |(people, accounts, existing_groups, links, flags, deprovision, link_existing)| Case {
                people,
                accounts,
                existing_groups,
                links,
                flags,
                deprovision,
                link_existing,
            },
        )
}

fn world(c: &Case) -> World {
    let people: Vec<PersonWithGroups> = c
        .people
        .iter()
        .enumerate()
        .map(|(i, (n, suspended, gs))| {
            let groups: Vec<&str> = IDP_GROUPS
                .iter()
                .zip(gs)
                .filter(|(_, on)| **on)
                .map(|(g, _)| *g)
                .collect();
            let mut p = person(
                &format!("p{i}"),
                &format!("{}@example.com", NAMES[*n]),
                &groups,
            );
            p.person.suspended = *suspended;
            p
        })
        .collect();
    let desired_names: Vec<&str> = c.people.iter().map(|(n, _, _)| NAMES[*n]).collect();
    let mut w = World::new(people);
    for (g, on) in TARGET_GROUPS.iter().zip(&c.existing_groups) {
        if *on {
            w.actual.insert_group(g);
        }
    }
    for (n, own_email, active, gs) in &c.accounts {
        let name = NAMES[*n];
        let email = if *own_email {
            format!("{name}@example.com")
        } else {
            format!("old-{name}@example.com")
        };
        w.actual.insert_user(user(name, &email, *active));
        for (g, on) in TARGET_GROUPS.iter().zip(gs) {
            if *on {
                w.actual.insert_member(g, name);
            }
        }
    }
    for (p, n, with_key) in &c.links {
        let name = NAMES[*n];
        // A link to an account another person wants by name would need two
        // rounds (rename away, then create): keep generated links one-round.
        let own = c.people.get(*p).map(|(m, _, _)| NAMES[*m]);
        if desired_names.iter().any(|d| *d == name && Some(*d) != own) {
            continue;
        }
        // usher never links two people to one account (decide_link refuses).
        if w.links.values().any(|l| l.username == name) {
            continue;
        }
        let key = with_key.then(|| format!("KEY-{name}"));
        w.links.insert(
            xid(&format!("p{p}")),
            LinkedAccount {
                username: name.into(),
                key,
                pending: false,
            },
        );
    }
    let f = &c.flags;
    w.prov.create_users = f[0];
    w.prov.update_users = f[1];
    w.groups.keep_existing = f[2];
    w.groups.create_missing = f[3];
    w.groups.mode = if f[4] {
        GroupsMode::OnTheFly
    } else {
        GroupsMode::Manual
    };
    w.groups.map = vec![GroupMap {
        idp: "sales@example.com".into(),
        target: vec!["sales".into(), "ops".into()],
    }];
    w.prov.link_existing = [
        LinkExisting::Email,
        LinkExisting::Username,
        LinkExisting::Never,
    ][c.link_existing];
    w.tweak = [
        |p: &mut Policy| p.deprovision = Deprovision::Deactivate,
        |p: &mut Policy| p.deprovision = Deprovision::RemoveGroups,
        |p: &mut Policy| p.deprovision = Deprovision::None,
    ][c.deprovision];
    w
}

fn caps_tweak(w: &World, f: &[bool]) -> Policy {
    let mut pol = policy(&w.prov, &w.groups);
    (w.tweak)(&mut pol);
    pol.capabilities.can_rename = f[5];
    pol.capabilities.can_deactivate = f[6];
    pol.capabilities.can_update_email = f[7];
    pol.complete_read = f[8];
    pol.population = if f[9] {
        Population::Everyone
    } else {
        Population::Listed
    };
    pol
}

fn plan_with(w: &World, pol: &Policy) -> (Plan, Vec<DesiredAccount>, ManagedScope) {
    let mapper = Mapper::new("google", &w.prov, &w.groups).unwrap();
    let (desired, skipped) = mapper.map_all(&w.people);
    let scope = mapper.managed_scope(w.people.iter().flat_map(|p| &p.groups));
    let plan = plan_for(PlanInput {
        target: "jira",
        desired: &desired,
        skipped: &skipped,
        actual: &w.actual,
        links: &w.links,
        scope: &scope,
        policy: pol,
    });
    (plan, desired, scope)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn apply_then_replan_is_empty_and_scope_is_respected(c in case()) {
        let mut w = world(&c);
        let pol = caps_tweak(&w, &c.flags);
        let (plan, desired, scope) = plan_with(&w, &pol);
        // Deterministic.
        prop_assert_eq!(&plan, &plan_with(&w, &pol).0);
        // Ordered by phase.
        prop_assert!(plan.operations.windows(2).all(|o| o[0].phase() <= o[1].phase()));
        for op in &plan.operations {
            // Protected users never appear.
            prop_assert!(op.username() != Some("admin"), "{:?}", op);
            // Unmanaged groups never appear.
            if let Operation::AddMember { group, .. } | Operation::RemoveMember { group, .. } | Operation::CreateGroup { group } = op {
                prop_assert!(scope.groups.iter().any(|g| g.eq_ignore_ascii_case(group)), "{:?} outside {:?}", op, scope);
                prop_assert!(group != "local");
            }
            if !pol.complete_read {
                prop_assert!(!matches!(op, Operation::RemoveMember { .. } | Operation::Deactivate { .. }), "{:?}", op);
            }
        }
        apply_to_state(&mut w.actual, &mut w.links, &plan);
        let (again, _, _) = plan_with(&w, &pol);
        prop_assert!(again.is_empty(), "second plan: {:#?}\nfirst: {:#?}", again.operations, plan.operations);
        // The desired state holds inside the managed scope.
        for d in desired.iter().filter(|d| d.active) {
            let Some(name) = plan.accounts.get(&d.external_id) else { continue };
            let u = w.actual.user(name).unwrap();
            if pol.deprovision != Deprovision::None && pol.capabilities.can_deactivate {
                prop_assert!(u.active);
            }
            for g in d.groups() {
                if w.actual.groups.contains_key(&g.to_lowercase()) {
                    prop_assert!(w.actual.is_member(g, name), "{} not in {}", name, g);
                }
            }
            if !pol.keep_existing && pol.complete_read {
                for g in w.actual.groups_of(name) {
                    let managed = scope.groups.iter().any(|s| s.to_lowercase() == g)
                        && !scope.create_only.iter().any(|s| s.to_lowercase() == g);
                    prop_assert!(!managed || d.groups().any(|k| k.to_lowercase() == g), "{} kept in {}", name, g);
                }
            }
        }
    }
}
