//! Sign-in across replicas: a session from A works on B, logout on A ends it on B,
//! identity links and "provisioned recently" are shared, concurrent first logins over
//! both replicas create one account, the admin API answers the same everywhere, and
//! with Redis down nothing needing it is guessed.

use std::time::{Duration, Instant};

use usher::config::Secret;
use usher::provision::redis_links::RedisLinkStore;
use usher::provision::LinkStore;
use usher::sandbox::redis_server::RedisServer;
use usher::sync::job::{Refused, RUN_KEY};

use super::Cluster;
use crate::signin::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_logout_and_links_are_shared_between_replicas() {
    let Some(c) = Cluster::start("sessions_logout_and_links_are_shared", "").await else {
        return;
    };
    let a = c.replica().await;
    let b = c.replica().await;

    // Signed in through A; the next request lands on B with the same cookie.
    let mut on_a = c.browser(&a);
    assert_eq!(
        on_a.sign_in("/browse/DEMO-1", "alice@example.com")
            .await
            .status(),
        302
    );
    let mut on_b = on_a.at(b.addr);
    let page = on_b.get("/browse/DEMO-1").await;
    assert_eq!(page.status(), 200, "B serves A's session");
    assert!(page.text().await.unwrap().contains("alice"));

    // The identity link A recorded is in Redis for every replica.
    let links = RedisLinkStore::connect(&Secret::new(c.redis.url.clone())).unwrap();
    let jira_links = links.for_target("jira").unwrap();
    assert_eq!(
        jira_links
            .values()
            .map(|l| l.username.as_str())
            .collect::<Vec<_>>(),
        vec!["alice"]
    );
    assert!(!a.state.join("links.jsonl").exists(), "no local link file");

    // Alice signing in again on B within refresh_after costs B no Jira call: A's
    // provisioning is shared.
    let before = c.sandbox.jira.gate.requests();
    let mut fresh_b = c.browser(&b);
    assert_eq!(
        fresh_b.sign_in("/", "alice@example.com").await.status(),
        302
    );
    assert_eq!(
        c.sandbox.jira.gate.requests(),
        before,
        "no Jira call from B"
    );

    // Logout on A ends the session on B too.
    let r = on_a.get("/_usher/logout").await;
    assert!(r.status().is_success() || r.status().is_redirection());
    let r = on_b.get("/browse/DEMO-1").await;
    assert_eq!(r.status(), 302, "the old cookie no longer works on B");
    assert!(crate::signin::location(&r).contains("/_usher/login"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_first_logins_over_two_replicas_create_one_account() {
    let Some(c) = Cluster::start("five_concurrent_first_logins", "").await else {
        return;
    };
    let a = c.replica().await;
    let b = c.replica().await;
    // Slow Jira answers widen the window in which both replicas would provision.
    c.sandbox
        .jira
        .gate
        .faults
        .set(usher::sandbox::faults::FaultPlan {
            latency: Duration::from_millis(120),
            ..Default::default()
        });
    let users_before = c.sandbox.jira.state().users.len();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut br = c.browser(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            br.sign_in("/", "bob@example.com").await.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 302, "every login succeeds");
    }
    c.sandbox.jira.gate.faults.clear();
    let jira = c.sandbox.jira.state();
    assert_eq!(jira.users.len(), users_before + 1, "exactly one account");
    assert_eq!(
        jira.users
            .values()
            .filter(|u| u.email.eq_ignore_ascii_case("bob@example.com"))
            .count(),
        1
    );
    // One create in the audit logs of both replicas together; one replica did the
    // group changes, the other reused its result.
    let creates = a.audit("create-user").len() + b.audit("create-user").len();
    assert_eq!(creates, 1, "provisioned once across replicas");
    let adds_a = a.audit("add-member").len();
    let adds_b = b.audit("add-member").len();
    assert!(adds_a == 0 || adds_b == 0, "a: {adds_a}, b: {adds_b}");
    assert!(adds_a + adds_b > 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_provisioning_logins_are_refused_until_it_returns() {
    let Some(mut c) = Cluster::start("with_redis_down", "").await else {
        return;
    };
    // Sessions in cookies here, so only the shared provisioning state is missing.
    c.text = c.text.replace("store = \"redis\"", "store = \"cookie\"");
    let a = c.replica().await;
    assert_eq!(
        c.browser(&a)
            .sign_in("/", "alice@example.com")
            .await
            .status(),
        302
    );
    c.redis.kill().await.unwrap();

    // Provisioned by this replica within refresh_after: still admitted.
    assert_eq!(
        c.browser(&a)
            .sign_in("/", "alice@example.com")
            .await
            .status(),
        302
    );
    // A first login needs the lock and the links: refused (on_failure = "deny"),
    // nothing created.
    let r = c.browser(&a).sign_in("/", "bob@example.com").await;
    assert_eq!(r.status(), 503);
    assert!(c.sandbox.jira.state().user("bob").is_none());
    // "sync now" refuses rather than risk two syncs at once.
    assert!(matches!(
        a.sync().start_now(false, None, None).await,
        Err(Refused::SharedStateUnavailable(_))
    ));

    // Redis back (same address): everything resumes without a restart.
    let _again = RedisServer::start_on(c.redis.port).await.unwrap();
    assert_eq!(
        c.browser(&a).sign_in("/", "bob@example.com").await.status(),
        302,
        "the first login after redis returned"
    );
    assert!(c.sandbox.jira.state().user("bob").is_some());
    a.shutdown().await;
}

const JSON: (&str, &str) = ("accept", "application/json");

async fn api(b: &mut Browser, path: &str) -> (u16, serde_json::Value) {
    let r = b.get_with(path, &[JSON]).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_the_same_on_every_replica() {
    let Some(c) = Cluster::start("the_admin_api_answers_the_same", "").await else {
        return;
    };
    let a = c.replica().await;
    let b = c.replica().await;
    // alice is an [admin] user of the demo config; her session works on both.
    let mut on_a = c.browser(&a);
    assert_eq!(on_a.sign_in("/", "alice@example.com").await.status(), 302);
    let mut on_b = on_a.at(b.addr);
    let token = on_a.get("/_usher/admin/").await.headers()["x-usher-csrf"]
        .to_str()
        .unwrap()
        .to_string();
    let r = on_a
        .post_with("/_usher/admin/sync", &[("x-usher-csrf", &token), JSON], "")
        .await;
    assert_eq!(r.status(), 202);
    let started: serde_json::Value = r.json().await.unwrap();
    let id = started["id"].as_str().unwrap().to_string();

    // B answers for A's run: running, then done, and as the last report.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let (status, v) = api(&mut on_b, &format!("/_usher/admin/sync/{id}")).await;
        assert_eq!(status, 200, "{v}");
        if v["state"] == "done" {
            break v["report"].clone();
        }
        assert_eq!(v["state"], "running", "{v}");
        assert!(Instant::now() < deadline, "sync {id} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["replica"].as_str(), a.sync().replica());
    for browser in [&mut on_a, &mut on_b] {
        let (status, v) = api(browser, "/_usher/admin/sync/last").await;
        assert_eq!(status, 200);
        assert_eq!(v["report"]["id"], id.as_str());
    }

    // The console says which replica answered.
    let html = on_b.get("/_usher/admin/").await.text().await.unwrap();
    let me = format!("Replica <code>{}</code>", b.sync().replica().unwrap());
    assert!(html.contains(&me), "{html}");
    assert!(
        html.contains("sync leader: none"),
        "no schedule here: {html}"
    );

    // A run held elsewhere: "sync now" on B is 409 and names it.
    let other = c.shared().await;
    let held = other
        .try_lock(
            RUN_KEY,
            "20990101T000000000Z-cafe t0k3n".into(),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .unwrap();
    let r = on_b
        .post_with("/_usher/admin/sync", &[("x-usher-csrf", &token), JSON], "")
        .await;
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["running"], "20990101T000000000Z-cafe", "{v}");
    assert!(other.release(&held).await.unwrap());
    a.shutdown().await;
    b.shutdown().await;
}
