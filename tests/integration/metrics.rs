//! Metrics and health on the `admin_listen` listener, end to end: usher in front of
//! the sandbox (Google OIDC + Directory + Jira), a proxied request, a sign-in with
//! login-time provisioning and a full sync, then `/metrics` scraped, parsed and
//! checked series by series. `/metrics` is never served on the public listener.
//!
//! The recorder is process-wide and other tests in this binary record too, so
//! every check compares a scrape before and after, and exact deltas are asserted
//! only for series whose labels belong to this test alone (its upstream name).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use usher::admin::metrics::{self as m, Scrape};
use usher::config::{self, SystemEnv};
use usher::sandbox::faults::FaultPlan;
use usher::sandbox::google_directory::GoogleFault;
use usher::sandbox::run::{self, SandboxOptions};
use usher::sync::job::RunStatus;
use usher::sync::SyncStatus;
use usher::App;

use crate::harness::{self, CALLBACK};
use crate::signin::Browser;

async fn scrape(admin: SocketAddr) -> Scrape {
    let r = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], m::CONTENT_TYPE);
    let text = r.text().await.unwrap();
    Scrape::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Scrapes until `done` holds (or 5 s pass, then returns the last scrape): a
/// request is counted when its response body is dropped, which can trail the
/// client's last byte by a moment.
async fn scrape_when(admin: SocketAddr, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(admin).await;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `after - before` for one exact series (absent = 0).
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

/// The label names of every sample of `name` are exactly `want`.
fn assert_label_names(s: &Scrape, name: &str, want: &[&str]) {
    let mut seen = 0;
    for sample in s.series(name) {
        let names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "{name}: {:?}", sample.labels);
        seen += 1;
    }
    assert!(seen > 0, "{name} is not in the scrape");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_request_a_login_and_a_sync() {
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let sandbox = run::start(SandboxOptions {
        port: 0,
        seed: None,
        redirect_uris: vec![CALLBACK.into()],
    })
    .await
    .unwrap();
    let state = harness::temp_dir("metrics-state");
    // The demo's config (sign-in, provisioning into Jira, sync of every sandbox
    // target) on ephemeral ports, with an admin listener and an upstream name no
    // other test uses.
    let text = usher::sandbox::demo::config_text(0, &sandbox, &state)
        .replace(
            "public_url = \"http://127.0.0.1:0\"",
            "public_url = \"http://jira.test\"",
        )
        .replace("workers = 1", "workers = 1\nadmin_listen = \"127.0.0.1:0\"")
        .replace(
            "name = \"jira\"\nhost = \"127.0.0.1\"",
            "name = \"jira-metrics-it\"\nhost = \"jira.test\"",
        );
    assert!(text.contains("jira-metrics-it"), "{text}");
    let settings = config::parse(&text, "<metrics test>", &SystemEnv).unwrap();
    let app = App::build(settings).await.unwrap();
    let addr = app.local_addr();
    let admin = app.admin_addr().expect("admin_listen is configured");
    assert_ne!(admin.port(), addr.port());
    let sync = app
        .sync
        .clone()
        .expect("[directory] and targets: syncs are possible");
    let (stop, stopped) = watch::channel(false);
    let workers = app.run(stopped).unwrap();

    // Health on the admin listener.
    let health = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "IdP discovery loads and Jira answers");
    let missing = reqwest::get(format!("http://{admin}/_usher/healthz"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "only /metrics, /healthz, /readyz");

    let before = scrape(admin).await;

    // A sign-in (provisions alice into Jira at login) and a proxied page.
    let mut b = Browser::new(addr);
    assert_eq!(
        b.sign_in("/browse/DEMO-1", "alice@example.com")
            .await
            .status(),
        302
    );
    let page = b.get("/browse/DEMO-1").await;
    assert_eq!(page.status(), 200);
    // `/metrics` on the public port belongs to the upstream: forwarded there (for
    // the signed-in browser) or sent to sign in, never usher's metrics text.
    let public = b.get("/metrics").await;
    let public_status = public.status().as_u16();
    let body = public.text().await.unwrap();
    assert!(!body.contains("# TYPE usher_"), "public /metrics: {body}");
    let anonymous = harness::client()
        .get(format!("http://{addr}/metrics"))
        .header("host", "jira.test")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 302, "signed out: sent to sign in");
    assert!(!anonymous.text().await.unwrap().contains("usher_"));

    // A callback nobody started is refused (counted by reason), and signing out
    // ends the session.
    let forged = Browser::new(addr)
        .get("/_usher/callback?code=x&state=y")
        .await;
    assert_eq!(forged.headers()["x-usher-denial"], "state_mismatch");
    b.get("/_usher/logout").await;

    // A full sync, as the admin console starts it, through one rate-limited answer
    // from the directory and from Jira, and one Jira outage answer: all retried.
    sandbox.directory.inject(GoogleFault::TooManyRequests, 1);
    sandbox.jira.gate.faults.set(FaultPlan {
        rate_limited: 1,
        retry_after_secs: 1,
        server_errors: 1,
        ..FaultPlan::default()
    });
    let id = sync.start_now(false, None, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        if let Some(RunStatus::Done { report }) = sync.status(&id).await {
            break report;
        }
        assert!(Instant::now() < deadline, "sync {id} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let up = ("upstream", "jira-metrics-it");
    let after = scrape_when(admin, |s| {
        delta(&before, s, "usher_request_duration_seconds_count", &[up]) >= 2.0
    })
    .await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);

    // Requests: exactly what this test sent to its upstream (the page, and the
    // forwarded /metrics with whatever status the emulator gave it).
    let public_code = public_status.to_string();
    if public_status == 200 {
        assert_eq!(d(m::REQUESTS_TOTAL, &[up, ("status", "200")]), 2.0);
    } else {
        assert_eq!(d(m::REQUESTS_TOTAL, &[up, ("status", "200")]), 1.0);
        assert_eq!(d(m::REQUESTS_TOTAL, &[up, ("status", &public_code)]), 1.0);
    }
    assert_eq!(
        d("usher_request_duration_seconds_count", &[up]),
        2.0,
        "one latency sample per request"
    );
    assert!(d("usher_request_duration_seconds_sum", &[up]) > 0.0);
    assert_eq!(
        after.value(
            "usher_request_duration_seconds_bucket",
            &[up, ("le", "+Inf")]
        ),
        after.value("usher_request_duration_seconds_count", &[up])
    );
    assert_eq!(after.types[m::REQUEST_DURATION], "histogram");
    // usher's own answers: the redirects of the sign-in (at least these three).
    assert!(
        d(
            m::REQUESTS_TOTAL,
            &[("upstream", "usher"), ("status", "302")]
        ) >= 4.0
    );
    assert_eq!(
        d(m::UPSTREAM_ERRORS, &[up, ("kind", "bad_gateway")]),
        0.0,
        "nothing failed"
    );
    assert_label_names(&after, m::REQUESTS_TOTAL, &["upstream", "status"]);

    // The sign-in and its provisioning.
    let google = ("idp", "google");
    assert!(d(m::LOGINS, &[google, ("result", "success")]) >= 1.0);
    assert!(d("usher_login_admission_duration_seconds_count", &[google]) >= 1.0);
    assert_label_names(&after, m::LOGINS, &["idp", "result"]);
    assert!(
        d(
            m::PROVISION_OPERATIONS,
            &[
                ("target", "jira"),
                ("operation", "create-user"),
                ("result", "done"),
                ("trigger", "login")
            ]
        ) >= 1.0,
        "alice's account was created at login"
    );
    assert!(
        d(
            m::TARGET_REQUESTS,
            &[
                ("target", "jira"),
                ("product", "jira"),
                ("method", "POST"),
                ("status", "201")
            ]
        ) >= 1.0,
        "the create-user call"
    );
    assert_label_names(
        &after,
        m::TARGET_REQUESTS,
        &["target", "product", "method", "status"],
    );
    let directory_ok: f64 = ["users.get", "users.list", "groups.list", "members.list"]
        .iter()
        .map(|method| {
            d(
                m::DIRECTORY_REQUESTS,
                &[("method", method), ("status", "200")],
            )
        })
        .sum();
    assert!(directory_ok >= 2.0, "person at login, everyone at sync");

    assert!(d(m::LOGIN_DENIALS, &[("reason", "state_mismatch")]) >= 1.0);
    assert!(d(m::SESSIONS_ENDED, &[("reason", "logout")]) >= 1.0);

    // Retries and rate-limit waits of the sync's calls.
    let retries = |api, name, reason| {
        d(
            m::API_RETRIES,
            &[("api", api), ("name", name), ("reason", reason)],
        )
    };
    assert!(retries("directory", "google", "rate_limited") >= 1.0);
    assert!(retries("target", "jira", "rate_limited") >= 1.0);
    assert!(retries("target", "jira", "server_error") >= 1.0);
    let waits = "usher_api_rate_limit_wait_seconds_count";
    assert!(d(waits, &[("api", "directory"), ("name", "google")]) >= 1.0);
    assert!(d(waits, &[("api", "target"), ("name", "jira")]) >= 1.0);
    assert!(
        d(
            "usher_api_rate_limit_wait_seconds_sum",
            &[("api", "target"), ("name", "jira")]
        ) >= 1.0,
        "Retry-After: 1 was honoured"
    );
    let jira_get = |status| {
        d(
            m::TARGET_REQUESTS,
            &[
                ("target", "jira"),
                ("product", "jira"),
                ("method", "GET"),
                ("status", status),
            ],
        )
    };
    assert!(jira_get("429") >= 1.0 && jira_get("503") >= 1.0);
    let directory_429: f64 = ["users.list", "groups.list", "members.list"]
        .iter()
        .map(|method| {
            d(
                m::DIRECTORY_REQUESTS,
                &[("method", method), ("status", "429")],
            )
        })
        .sum();
    assert!(directory_429 >= 1.0);

    // The sync.
    let status = match report.status {
        SyncStatus::Succeeded => "succeeded",
        SyncStatus::Failed => "failed",
        SyncStatus::Stopped => "stopped",
        SyncStatus::Planned => "planned",
        SyncStatus::Running => "running",
    };
    assert!(
        d(m::SYNC_RUNS, &[("trigger", "admin"), ("status", status)]) >= 1.0,
        "{}",
        report.summary_line()
    );
    assert!(d("usher_sync_duration_seconds_count", &[("dry_run", "false")]) >= 1.0);
    if report.status == SyncStatus::Succeeded {
        let last = after
            .get(m::SYNC_LAST_SUCCESS, &[])
            .expect("set by the sync");
        assert!(last >= t0.as_secs() as f64, "{last} < {t0:?}");
    }
    for t in report.targets.iter().filter(|t| t.applied.is_some()) {
        for (op, n) in t.planned.iter().filter(|(op, _)| op.as_str() != "link") {
            assert!(
                d(m::SYNC_CHANGES, &[("target", &t.name), ("operation", op)]) >= *n as f64,
                "{} {op}",
                t.name
            );
        }
    }
    for t in report.targets.iter().filter(|t| t.over_limit()) {
        assert!(
            after
                .series(m::SYNC_SAFETY_HITS)
                .any(|s| s.labels["target"] == t.name),
            "brake on {} not counted",
            t.name
        );
    }

    // No personal data in any label: no emails, no paths, no user names.
    for sample in &after.samples {
        for (k, v) in &sample.labels {
            assert!(!v.contains('@'), "{} {k}={v}", sample.name);
            assert!(!v.starts_with('/'), "{} {k}={v}", sample.name);
            assert_ne!(v, "alice", "{} {k}", sample.name);
        }
    }

    // Shutdown stops the admin listener with the rest.
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || workers.join())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let gone = reqwest::Client::new()
            .get(format!("http://{admin}/healthz"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_err();
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admin listener still serving after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sandbox.stop();
}

#[tokio::test]
async fn upstream_failures_are_counted_by_kind() {
    // Nothing listens on the upstream port: connection refused -> 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let text = harness::open_config(&dead_url, "admin_listen = \"127.0.0.1:0\"", "")
        .replace("name = \"jira\"", "name = \"dead-metrics-it\"");
    let app = App::build(harness::settings(&text)).await.unwrap();
    let addr = app.local_addr();
    let admin = app.admin_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let workers = app.run(stopped).unwrap();
    let before = scrape(admin).await;
    for _ in 0..3 {
        let r = harness::client()
            .get(format!("http://{addr}/x"))
            .header("host", "jira.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
    }
    let up = ("upstream", "dead-metrics-it");
    let after = scrape_when(admin, |s| {
        delta(&before, s, m::REQUESTS_TOTAL, &[up, ("status", "502")]) >= 3.0
    })
    .await;
    assert_eq!(
        delta(
            &before,
            &after,
            m::UPSTREAM_ERRORS,
            &[up, ("kind", "bad_gateway")]
        ),
        3.0
    );
    assert_eq!(
        delta(&before, &after, m::REQUESTS_TOTAL, &[up, ("status", "502")]),
        3.0
    );
    // The readiness probe sees the dead upstream.
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || workers.join())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_admin_listener_is_optional_and_its_port_must_be_free() {
    let upstream = crate::upstream::start().await;
    let plain = App::build(harness::settings(&harness::open_config(
        &upstream.url(),
        "",
        "",
    )))
    .await
    .unwrap();
    assert_eq!(plain.admin_addr(), None);
    drop(plain);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = harness::open_config(
        &upstream.url(),
        &format!("admin_listen = \"127.0.0.1:{port}\""),
        "",
    );
    let err = match App::build(harness::settings(&text)).await {
        Ok(_) => panic!("built on a taken admin port"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
}
