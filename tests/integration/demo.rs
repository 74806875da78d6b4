//! `usher demo` end to end: sign in through the sandbox Google, find the account
//! usher created in the Jira emulator with the mapped groups, adopt an existing
//! account by email, refuse a suspended person, cost nothing on a quick return,
//! provision once for concurrent first logins, and end access after suspension.

use std::time::Duration;

use usher::sandbox::demo;

use crate::signin::Browser;

async fn start() -> demo::Demo {
    // Re-check sessions every second instead of every 20 so the test is quick.
    demo::start_with(0, |t| {
        t.replace("revalidate_after = \"20s\"", "revalidate_after = \"1s\"")
    })
    .await
    .expect("demo starts")
}

fn browser(d: &demo::Demo) -> Browser {
    Browser::for_host(d.addr, &d.addr.to_string())
}

#[tokio::test]
async fn demo_signs_in_provisions_and_ends_access_on_suspension() {
    let d = start().await;
    let mut b = browser(&d);
    let r = b.sign_in("/browse/DEMO-1", "alice@example.com").await;
    assert_eq!(r.status(), 302, "callback accepted");
    let page = b.get("/browse/DEMO-1").await;
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("alice"), "{text}");

    // Jira now has the account, with the mapped groups (nested eng@ via backend@).
    let jira = d.sandbox.jira.state();
    let alice = jira.user("alice").expect("account created at login");
    assert!(alice.active);
    // default_new_users, the manual maps (eng@ via nested backend@, it-admins@) and
    // on-the-fly backend@ -> backend; eng@ has a manual map, which wins over on-the-fly.
    for g in [
        "jira-software-users",
        "jira-developers",
        "jira-administrators",
        "backend",
    ] {
        assert!(
            jira.members(g).contains("alice"),
            "alice in {g}: {:?}",
            jira.members(g)
        );
    }
    assert!(!jira.members("eng").contains("alice"));
    // The locally managed group was never touched.
    assert!(!jira.members("release-managers").contains("alice"));

    // A second sign-in within refresh_after costs no Jira call.
    let before = d.sandbox.jira.gate.requests();
    let mut again = browser(&d);
    assert_eq!(again.sign_in("/", "alice@example.com").await.status(), 302);
    assert_eq!(
        d.sandbox.jira.gate.requests(),
        before,
        "returning person: zero API calls"
    );

    // Suspend alice in the directory: access ends at the next re-check.
    assert!(d.sandbox.suspend("alice@example.com", true));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = b.get("/browse/DEMO-1").await;
    assert_eq!(r.status(), 302, "suspended person is signed out");
    d.shutdown();
}

#[tokio::test]
async fn demo_adopts_an_existing_account_by_email_and_refuses_the_suspended() {
    let d = start().await;
    // Erin already has a Jira account `elopez` with her email: it is adopted (and,
    // with update_users, renamed to the username rule's `erin.lopez`), never duplicated.
    let before = d.sandbox.jira.state().users.len();
    let mut b = browser(&d);
    assert_eq!(b.sign_in("/", "erin.lopez@example.com").await.status(), 302);
    let page = b.get("/").await.text().await.unwrap();
    assert!(page.contains("Signed in as <b>erin.lopez</b>"), "{page}");
    let jira = d.sandbox.jira.state();
    assert_eq!(jira.users.len(), before, "no duplicate account");
    assert!(jira.user("elopez").is_none(), "renamed in place");
    let erin = jira.user("erin.lopez").unwrap();
    assert_eq!(erin.email, "erin.lopez@example.com");
    assert!(
        jira.members("release-managers").contains("erin.lopez"),
        "local group kept"
    );

    // Dave is suspended: the sandbox Google refuses him before usher sees anything.
    let mut c = browser(&d);
    let r = c.get("/_usher/login").await;
    let auth = r.headers()["location"].to_str().unwrap().to_string();
    let r = reqwest::get(format!("{auth}&login_hint=dave%40example.com&auto=1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(d.sandbox.jira.state().user("dave").is_none());
    d.shutdown();
}

#[tokio::test]
async fn concurrent_first_logins_provision_once() {
    let d = start().await;
    let creates_before = d.sandbox.jira.state().users.len();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut b = browser(&d);
        tasks.push(tokio::spawn(async move {
            b.sign_in("/", "bob@example.com").await.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 302);
    }
    let jira = d.sandbox.jira.state();
    assert_eq!(
        jira.users.len(),
        creates_before + 1,
        "exactly one account created"
    );
    assert!(jira.user("bob").is_some());
    d.shutdown();
}

#[tokio::test]
async fn demo_in_a_real_browser() {
    if !crate::peers::require_peers("demo_in_a_real_browser") {
        return;
    }
    let d = start().await;
    let url = format!("{}/browse/DEMO-1", d.url());
    let r = crate::peers::browser_login(&url, "carol@example.com", &url, "demo-signed-in.png")
        .await
        .unwrap_or_else(|e| panic!("browser sign-in failed: {e}"));
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Signed in as carol"), "{}", r.text);
    assert!(r.text.contains("jira-developers"), "{}", r.text);
    assert!(r.screenshot.exists());
    d.shutdown();
}

/// Jira answering 503 to everything (more than the client's retries).
fn jira_down(d: &demo::Demo) {
    d.sandbox
        .jira
        .gate
        .faults
        .set(usher::sandbox::faults::FaultPlan {
            server_errors: 10_000,
            ..Default::default()
        });
}

#[tokio::test]
async fn target_down_denies_a_newcomer_with_on_failure_deny() {
    let d = start().await;
    jira_down(&d);
    let mut b = browser(&d);
    let r = b.sign_in("/", "frank@example.com").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-usher-denial"], "provisioning_failed");
    assert_eq!(b.get("/").await.status(), 302, "no session was issued");
    d.sandbox.jira.gate.faults.clear();
    // Once Jira is back, the same person gets in and is provisioned.
    let mut again = browser(&d);
    assert_eq!(again.sign_in("/", "frank@example.com").await.status(), 302);
    assert!(d.sandbox.jira.state().user("frank").is_some());
    d.shutdown();
}

#[tokio::test]
async fn target_down_lets_existing_accounts_in_with_on_failure_allow() {
    let d = demo::start_with(0, |t| {
        t.replace("on_failure = \"deny\"", "on_failure = \"allow\"")
            .replace("refresh_after = \"1m\"", "refresh_after = \"0s\"")
    })
    .await
    .expect("demo starts");
    // Frank signs in once while Jira works: his account exists from then on.
    let mut b = browser(&d);
    assert_eq!(b.sign_in("/", "frank@example.com").await.status(), 302);
    assert!(d.sandbox.jira.state().user("frank").is_some());
    jira_down(&d);
    // With Jira down, Frank (existing account) is let in ...
    let mut again = browser(&d);
    assert_eq!(again.sign_in("/", "frank@example.com").await.status(), 302);
    // (The emulator's page is served outside its failing REST API.)
    let page = again.get("/").await.text().await.unwrap();
    assert!(page.contains("Signed in as <b>frank</b>"), "{page}");
    // ... but a newcomer without an account is still refused.
    let mut newcomer = browser(&d);
    let r = newcomer.sign_in("/", "bob@example.com").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-usher-denial"], "provisioning_failed");
    d.shutdown();
}

#[tokio::test]
async fn an_existing_account_of_someone_else_is_never_taken_over() {
    let d = start().await;
    // A Jira account `bob` exists already, but with another person's email.
    d.sandbox
        .jira
        .with_state(|s| s.insert_user("bob", "bob@partner.example", "Partner Bob", true))
        .unwrap();
    let mut b = browser(&d);
    let r = b.sign_in("/", "bob@example.com").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-usher-denial"], "account_conflict");
    assert_eq!(b.get("/").await.status(), 302, "no session");
    let jira = d.sandbox.jira.state();
    let other = jira.user("bob").unwrap();
    assert_eq!(
        other.email, "bob@partner.example",
        "the other account is untouched"
    );
    assert!(jira
        .members("jira-software-users")
        .iter()
        .all(|m| m != "bob"));
    d.shutdown();
}

#[tokio::test]
async fn a_person_renamed_in_google_keeps_one_account_renamed_at_the_next_login() {
    // refresh_after 0: the next sign-in reads the directory again at once.
    let d = demo::start_with(0, |t| {
        t.replace("refresh_after = \"1m\"", "refresh_after = \"0s\"")
    })
    .await
    .expect("demo starts");
    let mut b = browser(&d);
    assert_eq!(b.sign_in("/", "bob@example.com").await.status(), 302);
    let (key, groups_before) = {
        let jira = d.sandbox.jira.state();
        let bob = jira.user("bob").expect("account created at login");
        let groups: Vec<String> = ["jira-software-users", "backend", "jira-developers"]
            .into_iter()
            .filter(|g| jira.members(g).contains("bob"))
            .map(String::from)
            .collect();
        (bob.key.clone(), groups)
    };
    assert!(!groups_before.is_empty());
    let count = d.sandbox.jira.state().users.len();

    // The Workspace admin renames bob@ to robert@ (same Google id).
    assert!(d.sandbox.rename("bob@example.com", "robert@example.com"));
    let mut again = browser(&d);
    assert_eq!(again.sign_in("/", "robert@example.com").await.status(), 302);
    let page = again.get("/").await.text().await.unwrap();
    assert!(page.contains("Signed in as <b>robert</b>"), "{page}");

    let jira = d.sandbox.jira.state();
    assert_eq!(jira.users.len(), count, "renamed, never duplicated");
    assert!(jira.user("bob").is_none(), "the old username is gone");
    let robert = jira.user("robert").expect("renamed account");
    assert_eq!(robert.key, key, "the same Jira account (same key)");
    assert_eq!(robert.email, "robert@example.com");
    for g in &groups_before {
        assert!(jira.members(g).contains("robert"), "still in {g}");
    }
    d.shutdown();
}

#[tokio::test]
async fn a_group_change_in_google_reaches_jira_at_the_next_login() {
    let d = demo::start_with(0, |t| {
        t.replace("refresh_after = \"1m\"", "refresh_after = \"0s\"")
    })
    .await
    .expect("demo starts");
    let mut b = browser(&d);
    assert_eq!(b.sign_in("/", "alice@example.com").await.status(), 302);
    assert!(d.sandbox.jira.state().members("backend").contains("alice"));

    // Removed from backend@ in Google (keep_existing = false): the on-the-fly group
    // membership goes at the next sign-in; the default group stays.
    assert!(d
        .sandbox
        .directory
        .set_member("backend@example.com", "alice@example.com", false));
    let mut again = browser(&d);
    assert_eq!(again.sign_in("/", "alice@example.com").await.status(), 302);
    let jira = d.sandbox.jira.state();
    assert!(!jira.members("backend").contains("alice"), "removed");
    assert!(jira.members("jira-software-users").contains("alice"));
    d.shutdown();
}
