//! The admin console end to end, with `usher demo`'s sandbox (Google OIDC +
//! Directory, Jira and the other emulators): who may enter (sign-in redirect, 401,
//! 403, admins by e-mail or IdP group), the pages, CSRF and same-origin checks on
//! POST, a dry run that changes nothing, a real sync, the safety brake and "apply
//! anyway" with the approver recorded, audit filters, the person lookup, and the
//! console in a real Chromium (screenshots under tests/artifacts/admin-*.png).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use usher::sandbox::demo;
use usher::sandbox::faults::FaultPlan;

use crate::signin::{location, Browser};

async fn start_with(edit: impl FnOnce(String) -> String) -> demo::Demo {
    demo::start_with(0, edit).await.expect("demo starts")
}

fn browser(d: &demo::Demo) -> Browser {
    Browser::for_host(d.addr, &d.addr.to_string())
}

/// A browser signed in as `email`.
async fn signed_in(d: &demo::Demo, email: &str) -> Browser {
    let mut b = browser(d);
    let r = b.sign_in("/_usher/login?rd=%2F", email).await;
    assert_eq!(r.status(), 302, "{email} signs in");
    b
}

const JSON: (&str, &str) = ("accept", "application/json");

/// The CSRF token from a console page's hidden field.
fn token_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

async fn page(b: &mut Browser, path: &str) -> (u16, String) {
    let r = b.get(path).await;
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn json(b: &mut Browser, path: &str) -> (u16, Value) {
    let r = b.get_with(path, &[JSON]).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Polls the sync until it is done; returns its report.
async fn wait_done(b: &mut Browser, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = json(b, &format!("/_usher/admin/sync/{id}")).await;
        assert_eq!(status, 200, "{v}");
        if v["state"] == "done" {
            return v["report"].clone();
        }
        assert_eq!(v["state"], "running", "{v}");
        assert!(Instant::now() < deadline, "sync {id} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a sync with the console's form; returns the id from the 303.
async fn submit(b: &mut Browser, origin: &str, fields: &str) -> String {
    let (_, html) = page(b, "/_usher/admin/").await;
    let token = token_in(&html);
    let r = b
        .post_with(
            "/_usher/admin/sync",
            &[("origin", origin), ("sec-fetch-site", "same-origin")],
            &format!("csrf={token}&{fields}"),
        )
        .await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let to = location(&r);
    to.strip_prefix("/_usher/admin/report/")
        .unwrap_or_else(|| panic!("redirect to the report page, got {to}"))
        .to_string()
}

#[tokio::test]
async fn only_admins_enter_and_nothing_is_forwarded() {
    let d = start_with(|t| t).await;
    // Signed out: the sign-in redirect for a browser, 401 JSON for an API client.
    let mut anon = browser(&d);
    let r = anon.get("/_usher/admin/").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/_usher/login?rd=%2F_usher%2Fadmin%2F");
    let (status, v) = json(&mut anon, "/_usher/admin/sync/last").await;
    assert_eq!((status, v["status"].as_u64()), (401, Some(401)));

    // bob is signed in but not in [admin]: 403 on pages, API and POSTs.
    let mut bob = signed_in(&d, "bob@example.com").await;
    let before = d.sandbox.jira.gate.requests();
    let (status, html) = page(&mut bob, "/_usher/admin/").await;
    assert_eq!(status, 403);
    assert!(html.contains("[admin] users or groups"), "{html}");
    let (status, v) = json(&mut bob, "/_usher/admin/sync/last").await;
    assert_eq!((status, v["status"].as_u64()), (403, Some(403)));
    let r = bob.post_with("/_usher/admin/sync", &[], "dry_run=1").await;
    assert_eq!(r.status(), 403);
    for path in [
        "/_usher/admin/audit",
        "/_usher/admin/person?email=alice%40example.com",
    ] {
        assert_eq!(bob.get(path).await.status(), 403, "{path}");
    }

    // alice is in [admin] users. Unknown admin paths are usher's 404, never Jira's.
    let mut alice = signed_in(&d, "alice@example.com").await;
    let before_alice = d.sandbox.jira.gate.requests();
    for path in [
        "/_usher/admin/nope",
        "/_usher/admin/static/../admin.css",
        "/_usher/adminx",
    ] {
        let r = alice.get(path).await;
        assert_ne!(r.status(), 200, "{path}");
        assert!(r.headers().get("x-request-id").is_some());
    }
    assert_eq!(
        d.sandbox.jira.gate.requests(),
        before_alice,
        "no admin path reached the upstream"
    );
    assert!(before <= before_alice);
    d.shutdown();
}

#[tokio::test]
async fn admins_by_idp_group_are_decided_at_sign_in() {
    // [admin] names only the directory group support@ (frank is in it, alice is not).
    let d = start_with(|t| {
        t.replace(
            "users = [\"alice@example.com\"]",
            "users = []\ngroups = [\"Support@example.com\"]",
        )
        .replace("revalidate_after = \"20s\"", "revalidate_after = \"1s\"")
    })
    .await;
    let mut frank = signed_in(&d, "frank@example.com").await;
    let (status, html) = page(&mut frank, "/_usher/admin/").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("frank@example.com"));
    let mut alice = signed_in(&d, "alice@example.com").await;
    assert_eq!(alice.get("/_usher/admin/").await.status(), 403);

    // frank leaves support@ in Google: at the next revalidation he is no admin.
    assert!(d
        .sandbox
        .directory
        .set_member("support@example.com", "frank@example.com", false));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = page(&mut frank, "/_usher/admin/").await;
    assert_eq!(status, 403, "admin access ends with the group membership");
    // Still signed in (he is active and allowed), just not an admin.
    assert_eq!(frank.get("/").await.status(), 200);
    d.shutdown();
}

#[tokio::test]
async fn pages_render_and_posts_need_the_token_and_the_same_origin() {
    let d = start_with(|t| t).await;
    let origin = format!("http://{}", d.addr);
    let mut a = signed_in(&d, "alice@example.com").await;

    let r = a.get("/_usher/admin/").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let header_token = r.headers()["x-usher-csrf"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert_eq!(token_in(&html), header_token);
    for want in [
        "usher 0.1.0",
        "Uptime",
        "Recent syncs",
        "No sync has finished since usher started.",
        "Safety brake not engaged",
        "Preview plan (dry run)",
        "Synchronize",
        "<td>google</td>",
        "<td>jira</td>",
        "not synced yet",
    ] {
        assert!(html.contains(want), "status page lacks {want:?}:\n{html}");
    }
    let (status, html) = page(&mut a, "/_usher/admin/plan").await;
    assert_eq!(status, 200);
    assert!(html.contains("No plan yet"), "{html}");
    let (status, html) = page(&mut a, "/_usher/admin/audit").await;
    assert_eq!(status, 200);
    assert!(html.contains("name=\"since\""), "{html}");
    let (status, _) = page(&mut a, "/_usher/admin/person").await;
    assert_eq!(status, 200);
    let r = a.get("/_usher/admin/static/admin.css").await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");

    // Refused POSTs start nothing.
    let refused: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![("origin", &origin)], "dry_run=1".into()),
        (vec![("origin", &origin)], "csrf=forged&dry_run=1".into()),
        (
            vec![("origin", "https://evil.example")],
            format!("csrf={header_token}&dry_run=1"),
        ),
        (
            vec![("sec-fetch-site", "cross-site")],
            format!("csrf={header_token}&dry_run=1"),
        ),
        (vec![("origin", "null")], format!("csrf={header_token}")),
    ];
    for (headers, body) in &refused {
        let r = a.post_with("/_usher/admin/sync", headers, body).await;
        assert_eq!(r.status(), 403, "{headers:?} {body}");
    }
    // Another admin session's token is no good here.
    let mut other = signed_in(&d, "alice@example.com").await;
    let (_, html) = page(&mut other, "/_usher/admin/").await;
    let foreign = token_in(&html);
    assert_ne!(foreign, header_token, "tokens are per session");
    let r = a
        .post_with(
            "/_usher/admin/sync",
            &[("origin", &origin)],
            &format!("csrf={foreign}"),
        )
        .await;
    assert_eq!(r.status(), 403);
    let (status, v) = json(&mut a, "/_usher/admin/sync/last").await;
    assert_eq!(status, 404, "nothing ran: {v}");
    assert_eq!(v["running"], Value::Null);

    // The JSON API: token in the header, 202 with the id; a second start is a 409.
    d.sandbox.jira.gate.faults.set(FaultPlan {
        latency: Duration::from_millis(300),
        ..Default::default()
    });
    let r = a
        .post_with(
            "/_usher/admin/sync?dry_run=true",
            &[
                ("x-usher-csrf", &header_token),
                JSON,
                ("content-type", "application/json"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["dry_run"], true);
    let r = a
        .post_with(
            "/_usher/admin/sync",
            &[
                ("x-usher-csrf", &header_token),
                JSON,
                ("content-type", "application/json"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["running"], id.as_str(), "{v}");
    // While it runs, the report page refreshes itself and carries the progress hook.
    let (status, html) = page(&mut a, &format!("/_usher/admin/report/{id}")).await;
    assert_eq!(status, 200);
    if html.contains("Sync running") {
        assert!(
            html.contains("data-sync-id=") && html.contains("http-equiv=\"refresh\""),
            "{html}"
        );
    }
    d.sandbox.jira.gate.faults.clear();
    let report = wait_done(&mut a, &id).await;
    assert_eq!(report["status"], "planned");
    d.shutdown();
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_the_plan_is_filterable() {
    let d = start_with(|t| t).await;
    let origin = format!("http://{}", d.addr);
    let mut a = signed_in(&d, "alice@example.com").await;
    let before = d.sandbox.jira.state();
    let id = submit(&mut a, &origin, "dry_run=1").await;
    let report = wait_done(&mut a, &id).await;
    assert_eq!(report["status"], "planned", "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        d.sandbox.jira.state(),
        before,
        "a dry run changes nothing in Jira"
    );

    let (status, html) = page(&mut a, &format!("/_usher/admin/report/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Plan report") && html.contains("Sync planned (dry run)."),
        "{html}"
    );
    // The plan preview picks the newest dry run; every filter narrows the table.
    let (_, all) = page(&mut a, "/_usher/admin/plan").await;
    assert!(all.contains(&id), "{all}");
    for op in ["create-user", "add-member"] {
        assert!(
            all.contains(&format!("<code>{op}</code>")),
            "{op} in\n{all}"
        );
    }
    let (_, creates) = page(&mut a, "/_usher/admin/plan?target=jira&op=creates").await;
    assert!(creates.contains("<code>create-user</code>"), "{creates}");
    assert!(!creates.contains("<code>add-member</code>"));
    let rows = |html: &str| html.matches("<tr><td>").count();
    assert!(rows(&creates) < rows(&all));
    assert!(creates.matches("<tr><td>jira</td>").count() == rows(&creates));
    let (_, bob) = page(&mut a, "/_usher/admin/plan?person=bob").await;
    assert!(rows(&bob) > 0);
    assert!(!bob.contains("carol"), "only bob's operations: {bob}");
    let (_, none) = page(&mut a, "/_usher/admin/plan?person=nobody-at-all").await;
    assert!(none.contains("No planned operation matches."));
    // The audit log has nothing from a dry run.
    let (status, v) = json(&mut a, "/_usher/admin/audit").await;
    assert_eq!(status, 200);
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["sync_id"] != id.as_str()),
        "{v}"
    );
    d.shutdown();
}

#[tokio::test]
async fn a_real_sync_applies_and_the_audit_and_person_lookup_explain_it() {
    let d = start_with(|t| t).await;
    let origin = format!("http://{}", d.addr);
    let mut a = signed_in(&d, "alice@example.com").await;
    assert!(d.sandbox.jira.state().user("bob").is_none());
    let id = submit(&mut a, &origin, "").await;
    let report = wait_done(&mut a, &id).await;
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["approved_by"], Value::Null);
    assert_eq!(report["requested_by"], "alice@example.com", "who clicked");
    let jira = d.sandbox.jira.state();
    assert!(jira.user("bob").is_some(), "bob created by the sync");
    assert!(jira.members("jira-developers").contains("carol"));
    let (_, last) = json(&mut a, "/_usher/admin/sync/last").await;
    assert_eq!(last["report"]["id"], id.as_str());
    let (_, html) = page(&mut a, "/_usher/admin/").await;
    assert!(html.contains(&id) && html.contains("succeeded"), "{html}");
    assert!(
        html.contains("<span class=\"ok\">ok</span>"),
        "targets show the outcome: {html}"
    );

    // Audit filters: target + operation, person, time range.
    let (status, v) = json(&mut a, "/_usher/admin/audit?target=jira&op=create-user").await;
    assert_eq!(status, 200);
    let entries = v["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{v}");
    for e in entries {
        assert_eq!(
            (e["target"].as_str(), e["operation"].as_str()),
            (Some("jira"), Some("create-user"))
        );
    }
    assert!(entries.iter().any(|e| e["username"] == "bob"
        && e["sync_id"] == id.as_str()
        && e["actor"] == "admin"
        && e["by"] == "alice@example.com"));
    let (_, v) = json(&mut a, "/_usher/admin/audit?person=bob&limit=1000").await;
    let bobs = v["entries"].as_array().unwrap();
    assert!(!bobs.is_empty());
    assert!(bobs.iter().all(|e| e["username"] == "bob"), "{v}");
    let (_, v) = json(&mut a, "/_usher/admin/audit?since=2099-01-01").await;
    assert_eq!(v["count"], 0);
    let (_, v) = json(&mut a, "/_usher/admin/audit?until=1h").await;
    assert_eq!(v["count"], 0, "nothing is older than an hour");
    let (_, v) = json(&mut a, "/_usher/admin/audit?since=1h&target=JIRA&limit=2").await;
    assert_eq!(v["count"], 2);
    let (status, v) = json(&mut a, "/_usher/admin/audit?since=soon").await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("since"), "{v}");
    let (status, html) = page(&mut a, "/_usher/admin/audit?target=jira&person=bob").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<code>create-user</code>") && html.contains(">bob<"),
        "{html}"
    );

    // Person lookup: alice gets jira-developers through eng@ (nesting backend@) and
    // jira-administrators through it-admins@; bob lacks the latter, with the reason.
    let (status, v) = json(&mut a, "/_usher/admin/person?email=alice%40example.com").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["username"], "alice");
    assert_eq!(v["usher_admin"], true);
    let group = |v: &Value, name: &str| {
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {v}"))
    };
    let dev = group(&v, "jira-developers");
    assert_eq!(dev["grant"], "has");
    assert!(
        dev["why"]
            .as_str()
            .unwrap()
            .contains("groups.map (member of eng@example.com)"),
        "{dev}"
    );
    let adm = group(&v, "jira-administrators");
    assert_eq!(adm["grant"], "has");
    let (_, v) = json(&mut a, "/_usher/admin/person?email=bob%40example.com").await;
    let adm = group(&v, "jira-administrators");
    assert_eq!(adm["grant"], "lacks");
    assert!(
        adm["why"]
            .as_str()
            .unwrap()
            .contains("it-admins@example.com"),
        "{adm}"
    );
    assert_eq!(v["usher_admin"], false);
    let (status, html) = page(&mut a, "/_usher/admin/person?email=bob%40example.com").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("jira-administrators")
            && html.contains("groups.map gives it to members of it-admins@example.com"),
        "{html}"
    );
    // The accounts as they are now: erin's linked Jira account keeps the local
    // release-managers group, which no rule gives.
    let (_, v) = json(
        &mut a,
        "/_usher/admin/person?email=erin.lopez%40example.com",
    )
    .await;
    let jira = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "jira")
        .cloned()
        .unwrap_or_else(|| panic!("no jira view: {v}"));
    assert_eq!(
        (
            jira["account"].as_str(),
            jira["linked"].as_bool(),
            jira["active"].as_bool()
        ),
        (Some("erin.lopez"), Some(true), Some(true)),
        "{jira}"
    );
    let held = jira["groups"].as_array().unwrap();
    let local = held
        .iter()
        .find(|g| g["group"] == "release-managers")
        .unwrap_or_else(|| panic!("{jira}"));
    assert_eq!(local["justified"], false);
    assert!(
        local["note"]
            .as_str()
            .unwrap()
            .contains("only the groups it manages"),
        "{local}"
    );
    assert!(
        held.iter()
            .any(|g| g["group"] == "sales" && g["justified"] == true),
        "{jira}"
    );
    assert_eq!(
        jira["missing"],
        serde_json::json!([]),
        "the sync gave everything"
    );
    let (status, _) = json(&mut a, "/_usher/admin/person?email=nobody%40example.com").await;
    assert_eq!(status, 404);
    d.shutdown();
}

#[tokio::test]
async fn the_brake_stops_a_sync_and_apply_anyway_records_the_approver() {
    let d = start_with(|t| {
        t.replace(
            "deprovision = \"deactivate\"",
            "deprovision = \"deactivate\"\nmax_changes = 1",
        )
    })
    .await;
    let origin = format!("http://{}", d.addr);
    let mut a = signed_in(&d, "alice@example.com").await;
    let before = d.sandbox.jira.state();
    let id = submit(&mut a, &origin, "").await;
    let report = wait_done(&mut a, &id).await;
    assert_eq!(report["status"], "stopped", "{report}");
    assert_eq!(d.sandbox.jira.state(), before, "the brake changed nothing");
    let (_, html) = page(&mut a, "/_usher/admin/").await;
    assert!(
        html.contains("Safety brake engaged") && html.contains("max_changes"),
        "{html}"
    );
    assert!(html.contains("Apply anyway"));

    let approved = submit(&mut a, &origin, "approve=1").await;
    let report = wait_done(&mut a, &approved).await;
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["approved_by"], "alice@example.com");
    assert!(d.sandbox.jira.state().user("bob").is_some());
    let (_, v) = json(&mut a, "/_usher/admin/audit?target=jira&limit=5000").await;
    let mine: Vec<&Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sync_id"] == approved.as_str())
        .collect();
    assert!(!mine.is_empty());
    assert!(
        mine.iter().all(|e| e["by"] == "alice@example.com"),
        "{mine:?}"
    );
    let (_, html) = page(&mut a, &format!("/_usher/admin/report/{approved}")).await;
    assert!(
        html.contains("applied anyway as approved") && html.contains("alice@example.com"),
        "{html}"
    );
    let (_, html) = page(&mut a, "/_usher/admin/").await;
    assert!(html.contains("Safety brake not engaged"), "{html}");
    d.shutdown();
}

#[tokio::test]
async fn without_a_sync_service_the_api_says_why() {
    // The demo config minus its targets: no sync service.
    let d = start_with(|t| {
        let mut out = String::new();
        let mut skip = false;
        for line in t.lines() {
            if line.starts_with("[[target]]") {
                skip = true;
            } else if line.starts_with('[') {
                skip = false;
            }
            if !skip && !line.starts_with("targets = ") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    })
    .await;
    let mut a = signed_in(&d, "alice@example.com").await;
    let (status, v) = json(&mut a, "/_usher/admin/sync/last").await;
    assert_eq!(status, 404);
    assert!(
        v["message"].as_str().unwrap().contains("[directory]"),
        "{v}"
    );
    let token = a.get("/_usher/admin/").await.headers()["x-usher-csrf"]
        .to_str()
        .unwrap()
        .to_string();
    let r = a
        .post_with("/_usher/admin/sync", &[("x-usher-csrf", &token), JSON], "")
        .await;
    assert_eq!(r.status(), 404);
    let (status, html) = page(&mut a, "/_usher/admin/").await;
    assert_eq!(status, 200);
    assert!(html.contains("No sync is configured"), "{html}");
    d.shutdown();
}

/// Screenshots `tests/browser/admin.mjs` saves, one per page.
const SCREENSHOTS: &[&str] = &[
    "admin-status.png",
    "admin-plan-empty.png",
    "admin-plan-report.png",
    "admin-plan.png",
    "admin-sync-report.png",
    "admin-audit.png",
    "admin-person.png",
    "admin-forbidden.png",
];

#[tokio::test]
async fn admin_console_in_a_real_browser() {
    if !crate::peers::require_peers("admin_console_in_a_real_browser") {
        return;
    }
    let d = start_with(|t| t).await;
    // Beside the other browser screenshots (tests/artifacts/, gitignored).
    let dir = crate::peers::artifact_path("");
    for s in SCREENSHOTS {
        let _ = std::fs::remove_file(dir.join(s));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/admin.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--base", &d.url()])
        .args(["--admin", "alice@example.com"])
        .args(["--user", "bob@example.com"])
        .arg("--out")
        .arg(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("admin.mjs finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "admin.mjs failed: {stderr}\n{stdout}");
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    let v: Value = serde_json::from_str(line).unwrap();
    // The admin saw the plan, synchronized and got the report; bob got a 403.
    assert!(v["plan"].as_str().unwrap().contains("create-user"), "{v}");
    assert!(
        v["report"].as_str().unwrap().contains("Sync succeeded."),
        "{v}"
    );
    assert_eq!(v["forbidden_status"], 403, "{v}");
    assert!(
        d.sandbox.jira.state().user("bob").is_some(),
        "the click applied the plan"
    );
    for s in SCREENSHOTS {
        let bytes = std::fs::read(dir.join(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(bytes.len() > 1000, "{s} is too small");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{s} is a PNG");
    }
    d.shutdown();
}
