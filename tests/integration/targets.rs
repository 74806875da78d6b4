//! Targets through the public API only: `usher::target::build` from plain
//! `TargetSettings`, against each product emulator seeded from one shared
//! `Fixture` — what `usher demo` and the sync wiring do. The exhaustive contract
//! suite lives beside the code (`src/target/contract/`).

use std::sync::Arc;
use std::time::Duration;

use usher::config::{Secret, TargetAuth, TargetKind, TargetSettings};
use usher::sandbox::atlassian::Fixture;
use usher::sandbox::bitbucket::{BitbucketEmulator, BitbucketSeed};
use usher::sandbox::confluence::{ConfluenceEmulator, ConfluenceSeed};
use usher::sandbox::crowd::{CrowdEmulator, CrowdSeed};
use usher::sandbox::http::Running;
use usher::sandbox::jira::{JiraEmulator, JiraSeed};
use usher::sandbox::scim::{ScimEmulator, ScimSeed};
use usher::target::{self, NewUser, Outcome, Target};

fn fixture() -> Fixture {
    Fixture {
        users: vec![(
            "grace".into(),
            "grace@example.com".into(),
            "Grace Hopper".into(),
        )],
        groups: vec![("engineers".into(), vec!["grace".into()])],
    }
}

fn settings(kind: TargetKind, url: String, auth: TargetAuth) -> TargetSettings {
    TargetSettings {
        name: format!("{kind:?}").to_lowercase(),
        kind,
        url: url.parse().unwrap(),
        auth,
        default_project_lead: Some("usher-bot".into()),
        default_component_lead: None,
        directory_id: None,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

fn basic(user: &str, password: &str) -> TargetAuth {
    TargetAuth::Basic {
        username: user.into(),
        password: Secret::new(password),
    }
}

/// Starts every emulator and returns (target, the server handle to stop).
async fn all_targets() -> Vec<(Arc<dyn Target>, Running)> {
    let f = fixture();
    let bot = || basic("usher-bot", "bot-password");
    let mut out = Vec::new();
    let (_, r) = JiraEmulator::start(JiraSeed::default().with_fixture(&f))
        .await
        .unwrap();
    let s = settings(TargetKind::Jira, r.url(), bot());
    out.push((target::build(&s).unwrap(), r));
    let (_, r) = ConfluenceEmulator::start(ConfluenceSeed::default().with_fixture(&f))
        .await
        .unwrap();
    let s = settings(TargetKind::Confluence, r.url(), bot());
    out.push((target::build(&s).unwrap(), r));
    let (_, r) = BitbucketEmulator::start(BitbucketSeed::default().with_fixture(&f))
        .await
        .unwrap();
    let s = settings(TargetKind::Bitbucket, r.url(), bot());
    out.push((target::build(&s).unwrap(), r));
    let (_, r) = CrowdEmulator::start(CrowdSeed::default().with_fixture(&f))
        .await
        .unwrap();
    let s = settings(
        TargetKind::Crowd,
        format!("{}/crowd", r.url()),
        basic("usher", "app-password"),
    );
    out.push((target::build(&s).unwrap(), r));
    let (emu, r) = ScimEmulator::start(ScimSeed::default().with_fixture(&f))
        .await
        .unwrap();
    let s = settings(
        TargetKind::Scim,
        format!("{}{}", r.url(), emu.base_path()),
        TargetAuth::Bearer {
            token: Secret::new("directory-key"),
        },
    );
    out.push((target::build(&s).unwrap(), r));
    out
}

#[tokio::test]
async fn every_target_builds_from_settings_and_provisions() {
    for (t, running) in all_targets().await {
        let kind = t.kind();
        let grace = t.get_user("grace").await.unwrap();
        assert_eq!(
            grace.map(|u| u.display_name).as_deref(),
            Some("Grace Hopper"),
            "{kind:?}"
        );
        let mut engineers = t.list_members_page("engineers", None).await.unwrap().items;
        engineers.sort();
        assert_eq!(engineers, vec!["grace".to_string()], "{kind:?}");

        let ada = NewUser {
            username: "ada".into(),
            email: "ada@example.com".into(),
            display_name: "Ada Lovelace".into(),
            given_name: Some("Ada".into()),
            family_name: Some("Lovelace".into()),
        };
        let created = t.create_user(&ada).await.unwrap();
        assert_eq!(created.username, "ada", "{kind:?}");
        assert_eq!(
            t.add_member("engineers", "ada").await.unwrap(),
            Outcome::Changed,
            "{kind:?}"
        );
        assert_eq!(
            t.add_member("engineers", "ada").await.unwrap(),
            Outcome::Unchanged,
            "{kind:?}"
        );
        assert_eq!(
            t.deactivate_user("ada").await.unwrap(),
            Outcome::Changed,
            "{kind:?}"
        );
        running.stop();
    }
}
