//! `apply` (and the readers) against the Jira emulator: a full sync with a project
//! lead hand-over before deactivation, and the one-person login-time path.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{TargetAuth, TargetKind, TargetSettings};
use crate::identity::ExternalId;
use crate::sandbox::jira::{JiraEmulator, JiraSeed};

use super::apply::{run, ApplyContext};
use super::audit::Actor;
use super::links::{LinkStore, LinkedAccount, MemoryLinkStore};
use super::mapping::Mapper;
use super::plan::{plan_for, Operation, PlanInput};
use super::plan_tests::{groups, person, policy, prov, xid};
use super::read::{read_actual, read_person};
use super::state::ActualState;

/// Settings for the emulator's bot account.
fn settings(url: &str) -> TargetSettings {
    TargetSettings {
        name: "jira".into(),
        kind: TargetKind::Jira,
        url: url::Url::parse(url).unwrap(),
        auth: TargetAuth::Basic {
            username: "usher-bot".into(),
            password: crate::config::Secret::new("bot-password"),
        },
        default_project_lead: Some("jira-admin".into()),
        default_component_lead: Some("jira-admin".into()),
        directory_id: None,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

#[tokio::test]
async fn jira_emulator_end_to_end_with_lead_handover() {
    let seed = JiraSeed {
        users: vec![
            (
                "jira-admin".into(),
                "jira-admin@example.com".into(),
                "Jira Admin".into(),
            ),
            (
                "lead".into(),
                "lead@example.com".into(),
                "Project Lead".into(),
            ),
            (
                "local".into(),
                "local@example.com".into(),
                "Local Account".into(),
            ),
        ],
        groups: vec![
            ("jira-software-users".into(), vec![]),
            ("local-admins".into(), vec!["local".into()]),
        ],
        projects: vec![("PRJ".into(), "lead".into())],
        ..JiraSeed::default()
    };
    let (emu, running) = JiraEmulator::start(seed).await.unwrap();
    let settings = settings(&running.url());
    let target = crate::target::build(&settings).unwrap();
    let people = vec![
        person("a", "ann@example.com", &["eng@example.com"]),
        person("l2", "local@example.com", &[]),
    ];
    let store = MemoryLinkStore::default();
    store
        .put(
            "jira",
            &xid("lead"),
            &LinkedAccount {
                username: "lead".into(),
                key: None,
                pending: false,
            },
        )
        .unwrap();
    let mut p = prov();
    p.link_existing = crate::config::LinkExisting::Never;
    let g = groups();
    let mapper = Mapper::new("google", &p, &g).unwrap();
    let (desired, skipped) = mapper.map_all(&people);
    let scope = mapper.managed_scope(people.iter().flat_map(|p| &p.groups));
    let mut pol = policy(&p, &g);
    pol.capabilities = target.capabilities();
    let plan_now = |actual: &ActualState, links: &BTreeMap<ExternalId, LinkedAccount>| {
        plan_for(PlanInput {
            target: "jira",
            desired: &desired,
            skipped: &skipped,
            actual,
            links,
            scope: &scope,
            policy: &pol,
        })
    };
    let actual = read_actual(target.as_ref(), &scope, 4).await.unwrap();
    let plan = plan_now(&actual, &store.for_target("jira").unwrap());
    // The existing "local" account is not handed to a newcomer (link_existing = never).
    assert!(
        plan.denied.iter().any(|d| d.subject == "local"),
        "{:?}",
        plan.denied
    );
    let ctx = ApplyContext {
        concurrency: 4,
        links: Some(&store),
        audit: None,
        actor: Actor::Sync,
        by: None,
        sync_id: None,
    };
    let report = run(target.clone(), &plan, &ctx).await;
    assert!(report.succeeded(), "{report:#?}");
    let st = emu.state();
    let ann = st.user("ann").expect("ann created");
    assert!(st.groups["eng"].contains(&ann.key));
    assert!(st.groups["jira-software-users"].contains(&ann.key));
    assert!(!st.user("lead").unwrap().active, "lead deactivated");
    assert_eq!(
        st.projects["PRJ"].lead, "jira-admin",
        "project lead handed over first"
    );
    assert!(st.user("local").unwrap().active && st.groups["local-admins"].len() == 1);
    assert_eq!(
        store.get("jira", &xid("a")).unwrap().unwrap().username,
        "ann"
    );
    // Second run: nothing left to do.
    let actual = read_actual(target.as_ref(), &scope, 4).await.unwrap();
    let again = plan_now(&actual, &store.for_target("jira").unwrap());
    assert!(again.is_empty(), "{:#?}", again.operations);
    running.stop();
}

#[tokio::test]
async fn login_time_path_for_one_person_against_jira() {
    let seed = JiraSeed {
        groups: vec![
            ("jira-software-users".into(), vec![]),
            ("ops".into(), vec![]),
        ],
        ..JiraSeed::default()
    };
    let (emu, running) = JiraEmulator::start(seed).await.unwrap();
    let settings = settings(&running.url());
    let target = crate::target::build(&settings).unwrap();
    let mut g = groups();
    g.create_missing = false; // "eng" does not exist and must not be created
    let mapper = Mapper::new("google", &prov(), &g).unwrap();
    let pwg = person(
        "w",
        "wes@example.com",
        &["ops@example.com", "eng@example.com"],
    );
    let d = mapper.map(&pwg).unwrap();
    let scope = mapper.managed_scope(&pwg.groups);
    let mut pol = policy(&prov(), &g);
    pol.population = crate::provision::plan::Population::Listed;
    pol.capabilities = target.capabilities();
    let store = MemoryLinkStore::default();
    let once = |actual: ActualState, links: BTreeMap<ExternalId, LinkedAccount>| {
        plan_for(PlanInput {
            target: "jira",
            desired: std::slice::from_ref(&d),
            skipped: &[],
            actual: &actual,
            links: &links,
            scope: &scope,
            policy: &pol,
        })
    };
    let actual = read_person(target.as_ref(), &d, None).await.unwrap();
    let plan = once(actual, store.for_target("jira").unwrap());
    let kinds: Vec<&str> = plan.operations.iter().map(Operation::kind).collect();
    assert_eq!(
        kinds,
        vec!["create-user", "add-member", "add-member"],
        "{:?}",
        plan.operations
    );
    assert!(plan.notes.iter().any(|n| n.subject == "eng"));
    let ctx = ApplyContext {
        concurrency: 2,
        links: Some(&store),
        audit: None,
        actor: Actor::Login,
        by: Some("wes@example.com"),
        sync_id: None,
    };
    assert!(run(target.clone(), &plan, &ctx).await.succeeded());
    let st = emu.state();
    let key = &st.user("wes").unwrap().key;
    assert!(st.groups["ops"].contains(key) && st.groups["jira-software-users"].contains(key));
    assert!(!st.groups.contains_key("eng"));
    // The next login finds everything in place.
    let link = store.get("jira", &d.external_id).unwrap();
    let actual = read_person(target.as_ref(), &d, link.as_ref())
        .await
        .unwrap();
    let again = once(actual, store.for_target("jira").unwrap());
    assert!(again.is_empty(), "{:?}", again.operations);
    running.stop();
}
