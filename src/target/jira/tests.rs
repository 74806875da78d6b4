//! Jira client tests beyond the shared contract: lead hand-over, old Jira, truncation,
//! permissions, renames and the token-bucket rate limit.

use std::sync::Arc;

use super::*;
use crate::sandbox::faults::FaultPlan;
use crate::sandbox::jira::{JiraEmulator, JiraSeed};
use crate::target::contract::{basic, jira::client};
use crate::target::http::RecordingClock;

/// The Jira client signed in as the seeded admin bot, which most tests act as.
async fn bot_client(url: &str, page: usize) -> Arc<dyn Target> {
    client(
        url,
        basic("usher-bot", "bot-password"),
        Arc::default(),
        page,
    )
    .await
}

fn seed_with_leads() -> JiraSeed {
    JiraSeed {
        users: vec![
            (
                "jira-admin".into(),
                "jira-admin@example.com".into(),
                "Jira Admin".into(),
            ),
            (
                "lead".into(),
                "lead@example.com".into(),
                "Lead Person".into(),
            ),
        ],
        projects: vec![
            ("PRJ".into(), "lead".into()),
            ("OTH".into(), "jira-admin".into()),
        ],
        components: vec![
            (10, "PRJ".into(), "backend".into(), Some("lead".into())),
            (11, "OTH".into(), "ui".into(), Some("lead".into())),
            (12, "OTH".into(), "docs".into(), None),
        ],
        ..JiraSeed::default()
    }
}

#[tokio::test]
async fn deactivating_a_lead_hands_projects_and_components_over() {
    let (emu, running) = JiraEmulator::start(seed_with_leads()).await.unwrap();
    let t = bot_client(&running.url(), 50).await;
    assert_eq!(t.deactivate_user("lead").await.unwrap(), Outcome::Changed);
    let s = emu.state();
    assert!(!s.user("lead").unwrap().active);
    assert_eq!(s.projects["PRJ"].lead, "jira-admin");
    assert_eq!(s.components[&10].lead.as_deref(), Some("jira-admin"));
    assert_eq!(s.components[&11].lead.as_deref(), Some("jira-admin"));
    assert_eq!(s.components[&12].lead, None);
}

#[tokio::test]
async fn emulator_refuses_to_deactivate_a_project_lead() {
    let (_emu, running) = JiraEmulator::start(seed_with_leads()).await.unwrap();
    let resp = reqwest::Client::new()
        .put(format!("{}/rest/api/2/user?username=lead", running.url()))
        .basic_auth("usher-bot", Some("bot-password"))
        .json(&json!({"active": "false"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["errors"]["active"]
        .as_str()
        .unwrap()
        .contains("project lead"));
}

#[tokio::test]
async fn no_default_lead_is_a_clear_rejection() {
    let (emu, running) = JiraEmulator::start(seed_with_leads()).await.unwrap();
    let mut s = crate::target::contract::settings(
        TargetKind::Jira,
        &running.url(),
        basic("usher-bot", "bot-password"),
    );
    s.default_project_lead = None;
    let rest = RestClient::new(&s, super::super::http::Flavor::Jira).unwrap();
    let t = JiraTarget::new(&s, rest);
    let err = t.deactivate_user("lead").await.unwrap_err();
    assert!(err.to_string().contains("default_project_lead"), "{err}");
    assert!(emu.state().user("lead").unwrap().active, "nothing changed");
}

#[tokio::test]
async fn old_jira_without_active_support_is_unsupported() {
    let seed = JiraSeed {
        honours_active: false,
        ..JiraSeed::default()
    };
    let (emu, running) = JiraEmulator::start(seed).await.unwrap();
    let t = bot_client(&running.url(), 50).await;
    let err = t.deactivate_user("jira-admin").await.unwrap_err();
    assert!(matches!(err, TargetError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("8.3"));
    assert!(emu.state().user("jira-admin").unwrap().active);
}

#[tokio::test]
async fn truncated_member_page_is_detected() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    emu.with_state(|s| {
        for k in 0..6 {
            s.insert_user(&format!("m{k}"), &format!("m{k}@example.com"), "M", true);
            s.insert_member("big", &format!("m{k}"));
        }
    });
    emu.gate.faults.set(FaultPlan {
        truncate_pages: true,
        ..FaultPlan::default()
    });
    let t = bot_client(&running.url(), 4).await;
    let err = t.list_members_page("big", None).await.unwrap_err();
    assert!(matches!(err, TargetError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"));
}

#[tokio::test]
async fn non_admin_gets_forbidden_naming_the_permission() {
    let seed = JiraSeed {
        basic: vec![
            ("usher-bot".into(), "bot-password".into()),
            ("joe".into(), "pw".into()),
        ],
        ..JiraSeed::default()
    };
    let (_emu, running) = JiraEmulator::start(seed).await.unwrap();
    let t = client(
        &running.url(),
        basic("joe", "pw"),
        Arc::new(RecordingClock::default()),
        50,
    )
    .await;
    let err = t.create_group("x").await.unwrap_err();
    assert!(matches!(err, TargetError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("Jira Administrators"), "{err}");
}

#[tokio::test]
async fn rename_keeps_the_key_and_memberships() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let t = bot_client(&running.url(), 50).await;
    let before = t.get_user("jira-admin").await.unwrap().unwrap();
    t.add_member("jira-software-users", "jira-admin")
        .await
        .unwrap();
    let update = UserUpdate {
        new_username: Some("jadmin".into()),
        ..UserUpdate::default()
    };
    let after = t.update_user("jira-admin", &update).await.unwrap();
    assert_eq!(after.username, "jadmin");
    assert_eq!(after.key, before.key);
    assert!(emu
        .state()
        .members("jira-software-users")
        .contains("jadmin"));
    // An update that changes nothing is not an error.
    let same = UserUpdate {
        display_name: Some(after.display_name.clone()),
        ..UserUpdate::default()
    };
    assert_eq!(
        t.update_user("jadmin", &same).await.unwrap().username,
        "jadmin"
    );
}

/// The emulator's DC token bucket (with `X-RateLimit-*` and `Retry-After`) and the
/// client's real clock: a burst over the limit is slowed down, not failed.
#[tokio::test]
async fn token_bucket_rate_limit_is_waited_out_with_the_real_clock() {
    use crate::sandbox::atlassian::RateLimit;
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    emu.gate.set_rate_limit(
        Some(RateLimit {
            capacity: 2,
            fill_rate: 1,
            interval: std::time::Duration::from_secs(1),
        }),
        &[],
    );
    let s = crate::target::contract::settings(
        TargetKind::Jira,
        &running.url(),
        basic("usher-bot", "bot-password"),
    );
    let t = JiraTarget::new(
        &s,
        RestClient::new(&s, super::super::http::Flavor::Jira).unwrap(),
    );
    let started = std::time::Instant::now();
    for _ in 0..4 {
        assert!(t.get_user("jira-admin").await.unwrap().is_some());
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        emu.gate.requests() > 4,
        "some requests were answered 429 and retried"
    );
}

/// Seraph's CAPTCHA lockout: after failed logins the right password is refused too,
/// and the error tells the operator to sign in once in a browser.
#[tokio::test]
async fn captcha_lockout_is_unauthorized_with_the_browser_fix() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    emu.gate.set_captcha_after(2);
    let url = running.url();
    let bad = client(&url, basic("usher-bot", "typo"), Arc::default(), 50).await;
    for _ in 0..2 {
        let err = bad.get_user("jira-admin").await.unwrap_err();
        assert!(!err.to_string().contains("CAPTCHA"), "{err}");
    }
    let good = client(&url, basic("usher-bot", "bot-password"), Arc::default(), 50).await;
    let err = good.get_user("jira-admin").await.unwrap_err();
    assert!(matches!(err, TargetError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sign in once in a browser"),
        "{err}"
    );
}

/// Injected latency beyond the client's timeout: each attempt times out, the GET is
/// retried a bounded number of times, and the caller gets a transient error.
#[tokio::test]
async fn slow_answers_time_out_and_are_retried_boundedly() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    emu.gate.faults.set(FaultPlan {
        latency: std::time::Duration::from_millis(400),
        ..FaultPlan::default()
    });
    let mut s = crate::target::contract::settings(
        TargetKind::Jira,
        &running.url(),
        basic("usher-bot", "bot-password"),
    );
    s.timeout = std::time::Duration::from_millis(100);
    let clock = Arc::new(RecordingClock::default());
    let rest = RestClient::new(&s, super::super::http::Flavor::Jira)
        .unwrap()
        .with_clock(clock.clone());
    let t = JiraTarget::new(&s, rest);
    let err = t.get_user("jira-admin").await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("timed out"),
        "{err}"
    );
    assert_eq!(clock.sleeps().len(), 5);
}

/// Before Jira 10.3 there is no `/user/list`: listing falls back to `/user/search`
/// paging, and both modes list every user (active and inactive) exactly once.
#[tokio::test]
async fn user_listing_works_with_and_without_user_list() {
    for v10 in [true, false] {
        let seed = JiraSeed {
            v10,
            ..JiraSeed::default()
        };
        let (emu, running) = JiraEmulator::start(seed).await.unwrap();
        emu.with_state(|s| {
            for k in 0..7 {
                s.insert_user(
                    &format!("p{k}"),
                    &format!("p{k}@example.com"),
                    "P",
                    k % 2 == 0,
                );
            }
        });
        let t = bot_client(&running.url(), 3).await;
        let (mut names, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = t.list_users_page(cursor.as_ref()).await.unwrap();
            pages += 1;
            if let Some(c) = &page.next {
                assert_eq!(c.0.starts_with("list:"), v10, "{c:?}");
            }
            names.extend(page.items.into_iter().map(|u| u.username));
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        names.sort();
        let mut want: Vec<String> = emu.state().users.values().map(|u| u.name.clone()).collect();
        want.sort();
        assert_eq!(names, want, "v10={v10}");
        assert!(pages >= 3);
    }
}

/// Checklist statuses the client does not use itself: delete user 204 (refused for a
/// project lead), delete group 200 with an empty body.
#[tokio::test]
async fn emulator_delete_statuses() {
    let (emu, running) = JiraEmulator::start(seed_with_leads()).await.unwrap();
    let http = reqwest::Client::new();
    let del = |q: &str| {
        http.delete(format!("{}/rest/api/2/{q}", running.url()))
            .basic_auth("usher-bot", Some("bot-password"))
            .send()
    };
    assert_eq!(del("user?username=lead").await.unwrap().status(), 400);
    assert_eq!(
        del("user?username=jira-admin").await.unwrap().status(),
        400,
        "leads OTH"
    );
    emu.with_state(|s| s.insert_user("temp", "t@example.com", "T", true));
    assert_eq!(del("user?username=temp").await.unwrap().status(), 204);
    assert_eq!(del("user?username=temp").await.unwrap().status(), 404);
    let g = del("group?groupname=jira-software-users").await.unwrap();
    assert_eq!(g.status(), 200);
    assert!(g.bytes().await.unwrap().is_empty());
    assert_eq!(
        del("group?groupname=jira-software-users")
            .await
            .unwrap()
            .status(),
        404
    );
}

/// Outside `/rest/` the emulator is the demo upstream: it shows the identity headers
/// and the provisioned account, HTML-escaped.
#[tokio::test]
async fn emulator_whoami_page_shows_the_provisioned_account() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    emu.with_state(|s| {
        s.insert_user("eve", "eve@example.com", "Eve <script>", true);
        s.insert_member("jira-software-users", "eve");
    });
    let page = reqwest::Client::new()
        .get(format!("{}/secure/Dashboard.jspa", running.url()))
        .header("x-forwarded-user", "eve")
        .header("x-forwarded-email", "eve@example.com")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Signed in as <b>eve</b>"), "{page}");
    assert!(page.contains("Jira groups: jira-software-users"), "{page}");
    assert!(
        page.contains("Eve &lt;script&gt;") && !page.contains("<script>"),
        "{page}"
    );
    let anonymous = reqwest::get(format!("{}/", running.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(anonymous.contains("No identity header"));
}
