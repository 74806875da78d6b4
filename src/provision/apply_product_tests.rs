//! The planner's assumptions about each product, checked against every emulator:
//! create, apply, read back, plan again = nothing; then suspend one person and
//! converge again (deactivation, or group removal where the product cannot
//! deactivate). Uses only the `Target` trait, as a real sync does.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{TargetAuth, TargetKind, TargetSettings};
use crate::identity::PersonWithGroups;
use crate::target::Target;

use super::apply::{run, ApplyContext};
use super::audit::Actor;
use super::links::{LinkStore, MemoryLinkStore};
use super::mapping::Mapper;
use super::plan::{plan_for, Plan, PlanInput};
use super::plan_tests::{groups, person, policy, prov, xid};
use super::read::read_actual;

fn target(kind: TargetKind, url: &str, auth: TargetAuth) -> Arc<dyn Target> {
    let settings = TargetSettings {
        name: format!("{kind:?}").to_lowercase(),
        kind,
        url: url::Url::parse(url).unwrap(),
        auth,
        default_project_lead: None,
        default_component_lead: None,
        directory_id: None,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    crate::target::build(&settings).unwrap()
}

fn basic(user: &str, password: &str) -> TargetAuth {
    TargetAuth::Basic {
        username: user.into(),
        password: crate::config::Secret::new(password),
    }
}

async fn plan_once(
    t: &Arc<dyn Target>,
    people: &[PersonWithGroups],
    links: &MemoryLinkStore,
) -> Plan {
    let mut g = groups();
    g.default_new_users = vec![];
    g.keep_existing = false;
    let mapper = Mapper::new("google", &prov(), &g).unwrap();
    let (desired, skipped) = mapper.map_all(people);
    let scope = mapper.managed_scope(people.iter().flat_map(|p| &p.groups));
    let actual = read_actual(t.as_ref(), &scope, 4).await.unwrap();
    let mut pol = policy(&prov(), &g);
    pol.capabilities = t.capabilities();
    plan_for(PlanInput {
        target: t.name(),
        desired: &desired,
        skipped: &skipped,
        actual: &actual,
        links: &links.for_target(t.name()).unwrap(),
        scope: &scope,
        policy: &pol,
    })
}

async fn converges(t: Arc<dyn Target>) {
    let mut people = vec![
        person(
            "1",
            "ann@example.com",
            &["eng@example.com", "ops@example.com"],
        ),
        person("2", "bob@example.com", &["eng@example.com"]),
        person("3", "cid@example.com", &["ops@example.com"]),
    ];
    let links = MemoryLinkStore::default();
    let ctx = ApplyContext {
        concurrency: 3,
        links: Some(&links),
        audit: None,
        actor: Actor::Sync,
        by: None,
        sync_id: None,
    };
    let name = t.name().to_string();
    for round in ["create", "suspend cid", "rename ann"] {
        let plan = plan_once(&t, &people, &links).await;
        assert!(!plan.is_empty(), "{name} {round}: nothing planned");
        let report = run(t.clone(), &plan, &ctx).await;
        assert!(report.succeeded(), "{name} {round}: {report:#?}");
        let again = plan_once(&t, &people, &links).await;
        assert!(
            again.is_empty(),
            "{name} {round}: second plan {:#?}",
            again.operations
        );
        if round == "suspend cid" {
            let expect = if t.capabilities().can_deactivate {
                "deactivate"
            } else {
                "remove-member"
            };
            assert!(
                plan.operations
                    .iter()
                    .any(|o| o.kind() == expect && o.username() == Some("cid")),
                "{name}: {:?}",
                plan.operations
            );
            if t.capabilities().can_deactivate {
                assert!(
                    !t.get_user("cid").await.unwrap().unwrap().active,
                    "{name}: cid still active"
                );
            } else {
                let left = t.user_groups("cid").await.unwrap();
                assert!(
                    !left.iter().any(|g| g == "ops"),
                    "{name}: cid still in ops: {left:?}"
                );
            }
        }
        if round == "rename ann" {
            let caps = t.capabilities();
            let expect = if caps.can_rename { "ann.b" } else { "ann" };
            let u = t.get_user(expect).await.unwrap();
            assert!(u.is_some(), "{name}: no account {expect}");
            assert_eq!(
                links.get(&name, &xid("1")).unwrap().unwrap().username,
                expect
            );
            if caps.can_rename {
                assert!(
                    t.get_user("ann").await.unwrap().is_none(),
                    "{name}: old name left behind"
                );
            }
        }
        match round {
            "create" => people[2].person.suspended = true,
            _ => people[0].person.primary_email = "ann.b@example.com".into(),
        }
    }
    assert_eq!(
        links.for_target(&name).unwrap().len(),
        3,
        "{name}: every account linked"
    );
}

#[tokio::test]
async fn confluence_converges() {
    use crate::sandbox::confluence::{ConfluenceEmulator, ConfluenceSeed};
    let (_emu, running) = ConfluenceEmulator::start(ConfluenceSeed::default())
        .await
        .unwrap();
    converges(target(
        TargetKind::Confluence,
        &running.url(),
        basic("usher-bot", "bot-password"),
    ))
    .await;
    running.stop();
}

#[tokio::test]
async fn bitbucket_converges() {
    use crate::sandbox::bitbucket::{BitbucketEmulator, BitbucketSeed};
    let (_emu, running) = BitbucketEmulator::start(BitbucketSeed::default())
        .await
        .unwrap();
    converges(target(
        TargetKind::Bitbucket,
        &running.url(),
        basic("usher-bot", "bot-password"),
    ))
    .await;
    running.stop();
}

#[tokio::test]
async fn crowd_converges() {
    use crate::sandbox::crowd::{CrowdEmulator, CrowdSeed};
    let (_emu, running) = CrowdEmulator::start(CrowdSeed::default()).await.unwrap();
    let url = format!("{}/crowd", running.url());
    converges(target(
        TargetKind::Crowd,
        &url,
        basic("usher", "app-password"),
    ))
    .await;
    running.stop();
}

#[tokio::test]
async fn scim_converges() {
    use crate::sandbox::scim::{ScimEmulator, ScimSeed};
    let (emu, running) = ScimEmulator::start(ScimSeed::default()).await.unwrap();
    let url = format!("{}{}", running.url(), emu.base_path());
    let auth = TargetAuth::Bearer {
        token: crate::config::Secret::new("directory-key"),
    };
    converges(target(TargetKind::Scim, &url, auth)).await;
    running.stop();
}

#[tokio::test]
async fn jira_converges() {
    use crate::sandbox::jira::{JiraEmulator, JiraSeed};
    let (_emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    converges(target(
        TargetKind::Jira,
        &running.url(),
        basic("usher-bot", "bot-password"),
    ))
    .await;
    running.stop();
}
