//! Tests for `apply`: an in-memory fake target (concurrency, dependent skips, the
//! model agrees with reality) and the Jira emulator end to end.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::TargetKind;
use crate::identity::ExternalId;
use crate::target::{
    Capabilities, Cursor, NewUser, Outcome, Page, Target, TargetError, TargetFuture, TargetGroup,
    TargetUser, UserUpdate,
};

use super::apply::{run, ApplyContext, OpOutcome, GIVE_UP_AFTER};
use super::audit::{Actor, AuditFilter, AuditLog};
use super::links::{LinkStore, LinkedAccount, MemoryLinkStore};
use super::mapping::Mapper;
use super::plan::{plan_for, Operation, Plan, PlanInput, Policy};
use super::plan_tests::{caps, groups, person, policy, prov, user};
use super::read::read_actual;
use super::state::{apply_to_state, fold, model_key, ActualState};

#[derive(Default)]
struct Fake {
    state: Mutex<ActualState>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    fail_groups: HashSet<String>,
    fail_users: HashSet<String>,
    /// Every write answers "unavailable".
    down: bool,
}

impl Fake {
    async fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    fn err(what: &str) -> TargetError {
        TargetError::Rejected {
            target: "fake".into(),
            what: what.into(),
            status: 400,
            message: "injected".into(),
        }
    }
    fn with<R>(&self, f: impl FnOnce(&mut ActualState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
    fn set_active(&self, username: &str, active: bool) -> Result<Outcome, TargetError> {
        self.with(|s| match s.users.get_mut(&fold(username)) {
            Some(u) if u.active == active => Ok(Outcome::Unchanged),
            Some(u) => {
                u.active = active;
                Ok(Outcome::Changed)
            }
            None => Err(Fake::err("no such user")),
        })
    }
}

impl Target for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> TargetKind {
        TargetKind::Jira
    }
    fn capabilities(&self) -> Capabilities {
        caps()
    }
    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move { Ok(self.with(|s| s.user(username).cloned())) })
    }
    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        Box::pin(async move {
            Ok(self.with(|s| {
                s.users
                    .values()
                    .find(|u| {
                        u.email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(email))
                    })
                    .cloned()
            }))
        })
    }
    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            self.enter().await;
            let r = if self.fail_users.contains(&user.username) {
                Err(Fake::err("create user"))
            } else {
                let u = TargetUser {
                    username: user.username.clone(),
                    key: Some(model_key(&user.username)),
                    email: Some(user.email.clone()),
                    display_name: user.display_name.clone(),
                    active: true,
                };
                self.with(|s| s.insert_user(u.clone()));
                Ok(u)
            };
            self.leave();
            r
        })
    }
    fn update_user<'a>(
        &'a self,
        username: &'a str,
        update: &'a UserUpdate,
    ) -> TargetFuture<'a, TargetUser> {
        Box::pin(async move {
            self.enter().await;
            let r = self.with(|s| {
                let mut u = s
                    .users
                    .remove(&fold(username))
                    .ok_or_else(|| Fake::err("no such user"))?;
                if let Some(e) = &update.email {
                    u.email = Some(e.clone());
                }
                if let Some(d) = &update.display_name {
                    u.display_name = d.clone();
                }
                if let Some(n) = &update.new_username {
                    for m in s.members.values_mut() {
                        if m.remove(&fold(username)) {
                            m.insert(fold(n));
                        }
                    }
                    u.username = n.clone();
                }
                s.insert_user(u.clone());
                Ok(u)
            });
            self.leave();
            r
        })
    }
    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move { self.set_active(username, false) })
    }
    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move { self.set_active(username, true) })
    }
    fn list_users_page<'a>(&'a self, _: Option<&'a Cursor>) -> TargetFuture<'a, Page<TargetUser>> {
        Box::pin(async move {
            Ok(Page {
                items: self.with(|s| s.users.values().cloned().collect()),
                next: None,
            })
        })
    }
    fn list_groups_page<'a>(
        &'a self,
        _: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        Box::pin(async move {
            let items = self.with(|s| {
                s.groups
                    .values()
                    .map(|n| TargetGroup { name: n.clone() })
                    .collect()
            });
            Ok(Page { items, next: None })
        })
    }
    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            self.enter().await;
            let r = if self.fail_groups.contains(name) {
                Err(Fake::err("create group"))
            } else if self.with(|s| s.groups.contains_key(&fold(name))) {
                Ok(Outcome::Unchanged)
            } else {
                self.with(|s| s.insert_group(name));
                Ok(Outcome::Changed)
            };
            self.leave();
            r
        })
    }
    fn list_members_page<'a>(
        &'a self,
        group: &'a str,
        _: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<String>> {
        Box::pin(async move {
            let items = self.with(|s| {
                s.members
                    .get(&fold(group))
                    .map(|m| m.iter().cloned().collect())
                    .unwrap_or_default()
            });
            Ok(Page { items, next: None })
        })
    }
    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        Box::pin(async move {
            self.with(|s| {
                if s.user(username).is_none() {
                    return Err(TargetError::NotFound {
                        target: "fake".into(),
                        what: username.into(),
                        message: "no such user".into(),
                    });
                }
                Ok(s.groups_of(username)
                    .into_iter()
                    .filter_map(|g| s.groups.get(&g).cloned())
                    .collect())
            })
        })
    }
    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            self.enter().await;
            let r = self.with(|s| {
                if self.down {
                    return Err(TargetError::Unavailable {
                        target: "fake".into(),
                        message: "down".into(),
                    });
                }
                if !s.groups.contains_key(&fold(group)) || s.user(username).is_none() {
                    return Err(Fake::err("add member"));
                }
                let changed = s
                    .members
                    .entry(fold(group))
                    .or_default()
                    .insert(fold(username));
                Ok(if changed {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                })
            });
            self.leave();
            r
        })
    }
    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        Box::pin(async move {
            self.enter().await;
            let removed = self.with(|s| {
                s.members
                    .get_mut(&fold(group))
                    .is_some_and(|m| m.remove(&fold(username)))
            });
            self.leave();
            Ok(if removed {
                Outcome::Changed
            } else {
                Outcome::Unchanged
            })
        })
    }
}

fn xid(id: &str) -> ExternalId {
    ExternalId {
        source: "google".into(),
        id: id.into(),
    }
}

/// A scenario with every kind of operation.
fn scenario() -> (
    Vec<crate::identity::PersonWithGroups>,
    ActualState,
    BTreeMap<ExternalId, LinkedAccount>,
) {
    let mut people: Vec<_> = (0..12)
        .map(|i| {
            person(
                &format!("n{i:02}"),
                &format!("new{i:02}@example.com"),
                &["eng@example.com", "ops@example.com"],
            )
        })
        .collect();
    people.push(person("r", "ren.new@example.com", &["eng@example.com"]));
    people.push(person("b", "back@example.com", &[]));
    let mut actual = ActualState::default();
    actual.insert_group("jira-software-users");
    actual.insert_group("ops");
    for (name, active) in [("ren", true), ("back", false), ("gone", true)] {
        actual.insert_user(user(name, &format!("{name}@example.com"), active));
    }
    actual.insert_member("ops", "gone");
    let mut links = BTreeMap::new();
    for (id, name) in [("r", "ren"), ("b", "back"), ("g", "gone")] {
        links.insert(
            xid(id),
            LinkedAccount {
                username: name.into(),
                key: Some(format!("KEY-{name}")),
                pending: false,
            },
        );
    }
    (people, actual, links)
}

fn make_plan(
    people: &[crate::identity::PersonWithGroups],
    actual: &ActualState,
    links: &BTreeMap<ExternalId, LinkedAccount>,
    pol: &Policy,
) -> Plan {
    let g = groups();
    let mapper = Mapper::new("google", &prov(), &g).unwrap();
    let (desired, skipped) = mapper.map_all(people);
    let scope = mapper.managed_scope(people.iter().flat_map(|p| &p.groups));
    plan_for(PlanInput {
        target: "fake",
        desired: &desired,
        skipped: &skipped,
        actual,
        links,
        scope: &scope,
        policy: pol,
    })
}

#[tokio::test]
async fn applying_to_a_fake_target_matches_the_model_with_bounded_concurrency() {
    let (people, actual, links) = scenario();
    let pol = policy(&prov(), &groups());
    let plan = make_plan(&people, &actual, &links, &pol);
    let kinds: BTreeSet<&str> = plan.operations.iter().map(Operation::kind).collect();
    for k in [
        "create-group",
        "create-user",
        "reactivate",
        "update-user",
        "add-member",
        "deactivate",
    ] {
        assert!(kinds.contains(k), "scenario lacks {k}: {kinds:?}");
    }
    let fake = Arc::new(Fake {
        state: Mutex::new(actual.clone()),
        ..Fake::default()
    });
    let store = MemoryLinkStore::default();
    for (id, l) in &links {
        store.put("fake", id, l).unwrap();
    }
    let tmp = crate::test_support::temp_dir("apply");
    let dir = tmp.path().join("state");
    let audit = AuditLog::open(&dir).unwrap();
    let ctx = ApplyContext {
        concurrency: 3,
        links: Some(&store),
        audit: Some(&audit),
        actor: Actor::Sync,
        by: None,
        sync_id: Some("sync-1"),
    };
    let report = run(fake.clone(), &plan, &ctx).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.counts.done, plan.operations.len());
    let max = fake.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
    // Reality equals the model.
    let (mut model, mut model_links) = (actual.clone(), links.clone());
    apply_to_state(&mut model, &mut model_links, &plan);
    assert_eq!(*fake.state.lock().unwrap(), model);
    assert_eq!(store.for_target("fake").unwrap(), model_links);
    // Reading back and planning again: nothing to do.
    let read = read_actual(
        fake.as_ref(),
        &Mapper::new("google", &prov(), &groups())
            .unwrap()
            .managed_scope(people.iter().flat_map(|p| &p.groups)),
        3,
    )
    .await
    .unwrap();
    assert!(make_plan(&people, &read, &model_links, &pol).is_empty());
    // One audit line per operation, tagged with the sync id.
    let lines = audit.read(&AuditFilter::default()).unwrap();
    assert_eq!(lines.len(), plan.operations.len());
    assert!(lines.iter().all(|l| l.sync_id.as_deref() == Some("sync-1")));
}

#[tokio::test]
async fn failures_skip_only_dependent_operations() {
    let (people, actual, links) = scenario();
    let pol = policy(&prov(), &groups());
    let plan = make_plan(&people, &actual, &links, &pol);
    let fake = Arc::new(Fake {
        state: Mutex::new(actual),
        fail_groups: ["eng".to_string()].into(),
        fail_users: ["new03".to_string()].into(),
        ..Fake::default()
    });
    let ctx = ApplyContext {
        concurrency: 4,
        links: None,
        audit: None,
        actor: Actor::Admin,
        by: Some("it@example.com"),
        sync_id: None,
    };
    let report = run(fake.clone(), &plan, &ctx).await;
    for r in &report.results {
        let expect_skip = match &r.op {
            Operation::AddMember { group, username } => group == "eng" || username == "new03",
            _ => false,
        };
        let failed = matches!(r.op, Operation::CreateGroup { ref group } if group == "eng")
            || matches!(r.op, Operation::CreateUser { ref account, .. } if account.username == "new03");
        match &r.outcome {
            OpOutcome::Skipped { .. } => assert!(expect_skip, "{r:?}"),
            OpOutcome::Failed { transient, .. } => assert!(failed && !transient, "{r:?}"),
            OpOutcome::Done => assert!(!expect_skip && !failed, "{r:?}"),
            OpOutcome::AlreadyDone => panic!("{r:?}"),
        }
    }
    assert_eq!(report.counts.failed, 2);
    assert!(report.counts.skipped >= 13, "{:?}", report.counts);
    // Independent work went through: the ops group got its members, gone was deactivated.
    let s = fake.state.lock().unwrap();
    assert!(s.is_member("ops", "new00") && !s.user("gone").unwrap().active);
}

#[tokio::test]
async fn a_target_that_stays_down_is_given_up_on() {
    let (people, mut actual, links) = scenario();
    for g in ["eng", "ops", "jira-software-users"] {
        actual.insert_group(g);
    }
    let mut pol = policy(&prov(), &groups());
    pol.deprovision = crate::config::Deprovision::None;
    let plan = make_plan(&people, &actual, &links, &pol);
    let fake = Arc::new(Fake {
        state: Mutex::new(actual),
        down: true,
        ..Fake::default()
    });
    let ctx = ApplyContext {
        concurrency: 2,
        links: None,
        audit: None,
        actor: Actor::Sync,
        by: None,
        sync_id: None,
    };
    // Only add-member ops hit the "down" fake; everything else succeeds first.
    let report = run(fake, &plan, &ctx).await;
    let adds = plan
        .operations
        .iter()
        .filter(|o| matches!(o, Operation::AddMember { .. }))
        .count();
    assert!(adds > GIVE_UP_AFTER + 2, "{adds}");
    assert!(
        (GIVE_UP_AFTER..=GIVE_UP_AFTER + 2).contains(&report.counts.failed),
        "{:?}",
        report.counts
    );
    assert_eq!(report.counts.skipped, adds - report.counts.failed);
}

fn added_groups(plan: &Plan, username: &str) -> BTreeSet<String> {
    plan.operations
        .iter()
        .filter_map(|op| match op {
            Operation::AddMember { group, username: u } if u == username => Some(group.clone()),
            _ => None,
        })
        .collect()
}

fn no_op_ctx(store: &MemoryLinkStore) -> ApplyContext<'_> {
    ApplyContext {
        concurrency: 2,
        links: Some(store),
        audit: None,
        actor: Actor::Sync,
        by: None,
        sync_id: None,
    }
}

#[tokio::test]
async fn a_create_cut_short_by_a_crash_is_finished_by_the_next_run() {
    let people = vec![person("n", "newbie@example.com", &["eng@example.com"])];
    let pol = policy(&prov(), &groups());
    let mut actual = ActualState::default();
    actual.insert_group("jira-software-users");
    actual.insert_group("eng");
    // The account exists (the run that created it died) but has none of its groups.
    actual.insert_user(user("newbie", "newbie@example.com", true));

    // Met for the first time (no link): adopted, so only the mapped groups.
    let adopted = make_plan(&people, &actual, &BTreeMap::new(), &pol);
    assert_eq!(added_groups(&adopted, "newbie"), ["eng".to_string()].into());
    assert!(adopted.confirm_created.is_empty());

    // usher's own unfinished create (pending link): the creation groups are owed too.
    let mut links = BTreeMap::new();
    links.insert(
        xid("n"),
        LinkedAccount {
            username: "newbie".into(),
            key: None,
            pending: true,
        },
    );
    let plan = make_plan(&people, &actual, &links, &pol);
    assert_eq!(
        added_groups(&plan, "newbie"),
        ["eng".to_string(), "jira-software-users".to_string()].into()
    );
    assert_eq!(plan.confirm_created, vec![xid("n")]);

    let fake = Arc::new(Fake {
        state: Mutex::new(actual),
        ..Fake::default()
    });
    let store = MemoryLinkStore::default();
    store.put("fake", &xid("n"), &links[&xid("n")]).unwrap();
    let report = run(fake.clone(), &plan, &no_op_ctx(&store)).await;
    assert!(report.succeeded(), "{report:#?}");
    assert!(!store.get("fake", &xid("n")).unwrap().unwrap().pending);
    assert!(fake
        .state
        .lock()
        .unwrap()
        .is_member("jira-software-users", "newbie"));
    let scope = Mapper::new("google", &prov(), &groups())
        .unwrap()
        .managed_scope(people.iter().flat_map(|p| &p.groups));
    let read = read_actual(fake.as_ref(), &scope, 2).await.unwrap();
    let again = make_plan(&people, &read, &store.for_target("fake").unwrap(), &pol);
    assert!(again.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn a_create_stays_pending_until_its_groups_are_in_and_a_failed_create_leaves_no_link() {
    let people = vec![
        person("a", "ann@example.com", &["brand-new@example.com"]),
        person("f", "fails@example.com", &[]),
    ];
    let pol = policy(&prov(), &groups());
    let mut actual = ActualState::default();
    actual.insert_group("jira-software-users");
    let plan = make_plan(&people, &actual, &BTreeMap::new(), &pol);
    assert_eq!(plan.confirm_created.len(), 2);
    let fake = Arc::new(Fake {
        state: Mutex::new(actual),
        // The on-the-fly group cannot be created: ann's add to it is skipped.
        fail_groups: ["brand-new".to_string()].into(),
        fail_users: ["fails".to_string()].into(),
        ..Fake::default()
    });
    let store = MemoryLinkStore::default();
    let report = run(fake.clone(), &plan, &no_op_ctx(&store)).await;
    assert_eq!(report.counts.failed, 2, "{report:#?}");
    let ann = store.get("fake", &xid("a")).unwrap().expect("ann linked");
    assert!(
        ann.pending,
        "a creation-time group is missing: still pending"
    );
    assert_eq!(ann.key.as_deref(), Some(model_key("ann").as_str()));
    assert!(
        store.get("fake", &xid("f")).unwrap().is_none(),
        "nothing was created for the failed create, so no link"
    );
}
