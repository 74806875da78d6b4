//! Inbound SCIM 2.0 (`/_usher/scim/v2/{idp}/`) end to end through a running usher:
//! bearer auth and the endpoint being off without a token, ETags and `If-Match`,
//! persistence across a restart, the scim2-tester compliance run, and a real SCIM
//! client (scim2-client, tests/scim/push.py) pushing people whose accounts and
//! mapped groups then appear in the Jira emulator, and are deactivated again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use usher::sandbox::jira::{JiraEmulator, JiraSeed, JiraState};

use crate::harness::{self, settings, temp_dir};
use crate::peers::require_peers;
use crate::upstream;

const TOKEN: &str = "scim-token-0123456789abcdef";

/// usher with an `okta` IdP that pushes with [`TOKEN`], a `partners` IdP without a
/// token, state under `state`, and `extra` appended (targets, groups).
fn config(upstream_url: &str, state: &Path, upstream_extra: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://jira.test"
workers = 1

[session]
secret = "${{USHER_SESSION_SECRET}}"

[[idp]]
name = "okta"
kind = "oidc"
issuer = "{issuer}"
client_id = "okta-client"
client_secret = "okta-secret"
allowed_domains = ["example.com"]
scim_token = "{TOKEN}"

[[idp]]
name = "partners"
kind = "oidc"
issuer = "{issuer}"
client_id = "p"
client_secret = "p"

[state]
dir = "{state}"

[[upstream]]
name = "jira"
host = "jira.test"
url = "{upstream_url}"
{upstream_extra}
{extra}
"#,
        issuer = harness::NO_ISSUER,
        state = state.display()
    )
}

fn base(proxy: &harness::Proxy) -> String {
    proxy.url("/_usher/scim/v2/okta")
}

async fn call(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = harness::client()
        .request(method, url)
        .header("authorization", format!("Bearer {TOKEN}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, h, v)
}

#[tokio::test]
async fn scim_needs_the_idps_bearer_token_and_is_off_without_one() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&config(&up.url(), &temp_dir("scim"), "", ""))).await;
    let http = harness::client();
    let users = format!("{}/Users", base(&proxy));

    // No token, a wrong token, another scheme: 401 with a SCIM error and a challenge.
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic c2NpbTp4"),
    ] {
        let mut req = http.get(&users);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(body["status"], "401");
    }
    // A token prefix or a longer token is no match either.
    let (s, _, _) = call(reqwest::Method::GET, &users, &[], None).await;
    assert_eq!(s, 200);
    let r = http
        .get(&users)
        .header(
            "authorization",
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An IdP without scim_token, an unknown IdP, the bare prefix: plain 404 (off).
    for path in [
        "/_usher/scim/v2/partners/Users",
        "/_usher/scim/v2/nobody/Users",
        "/_usher/scim/v2/",
        "/_usher/scim",
    ] {
        let r = http
            .get(proxy.url(path))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // Unknown endpoints under a live IdP are SCIM 404s.
    let (s, _, body) = call(
        reqwest::Method::GET,
        &format!("{}/Nope", base(&proxy)),
        &[],
        None,
    )
    .await;
    assert_eq!((s, body["status"].as_str()), (404, Some("404")));

    // Bodies beyond 1 MiB are refused before they are read whole.
    let big = json!({"userName": "x".repeat(1_100_000)});
    let (s, _, body) = call(reqwest::Method::POST, &users, &[], Some(big)).await;
    assert_eq!(s, 413, "{body}");

    // Nothing under /_usher/scim ever reached the upstream, and no sign-in was asked for.
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn etags_if_match_filters_paging_and_a_restart_keep_answers_consistent() {
    let up = upstream::start().await;
    let state = temp_dir("scim-restart");
    let text = config(&up.url(), &state, "", "");
    let proxy = harness::start(settings(&text)).await;
    let users = format!("{}/Users", base(&proxy));
    let mut ids = Vec::new();
    for (i, name) in ["ann", "bob", "cat"].iter().enumerate() {
        let (s, h, body) = call(
            reqwest::Method::POST,
            &users,
            &[],
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("{name}@example.com"),
                "externalId": format!("ext-{i}"),
                "name": {"givenName": name, "familyName": "Test"},
                "active": true
            })),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        assert_eq!(
            h["etag"].to_str().unwrap(),
            body["meta"]["version"].as_str().unwrap()
        );
        assert!(h["location"]
            .to_str()
            .unwrap()
            .ends_with(body["id"].as_str().unwrap()));
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (s, _, body) = call(
        reqwest::Method::POST,
        &users,
        &[],
        Some(json!({"userName": "ANN@example.com"})),
    )
    .await;
    assert_eq!((s, body["scimType"].as_str()), (409, Some("uniqueness")));

    let ann = format!("{users}/{}", ids[0]);
    let (_, h, _) = call(reqwest::Method::GET, &ann, &[], None).await;
    let etag = h["etag"].to_str().unwrap().to_string();
    // If-None-Match with the current ETag: 304.
    let (s, _, _) = call(
        reqwest::Method::GET,
        &ann,
        &[("if-none-match", &etag)],
        None,
    )
    .await;
    assert_eq!(s, 304);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Engineer"}]});
    let (s, h2, body) = call(
        reqwest::Method::PATCH,
        &ann,
        &[("if-match", &etag)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let newer = h2["etag"].to_str().unwrap().to_string();
    assert_ne!(newer, etag);
    // The old ETag is stale now: 412 and no change.
    let (s, _, _) = call(
        reqwest::Method::PATCH,
        &ann,
        &[("if-match", &etag)],
        Some(patch),
    )
    .await;
    assert_eq!(s, 412);
    let (s, _, body) = call(reqwest::Method::DELETE, &ann, &[("if-match", &etag)], None).await;
    assert_eq!(s, 412, "{body}");

    // Filters and paging.
    let q = |f: &str| {
        format!(
            "{users}?filter={}",
            url::form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
        )
    };
    let (_, _, body) = call(
        reqwest::Method::GET,
        &q(r#"userName sw "B" or externalId eq "ext-2""#),
        &[],
        None,
    )
    .await;
    assert_eq!(body["totalResults"], 2, "{body}");
    let (_, _, body) = call(reqwest::Method::GET, &q("title pr"), &[], None).await;
    assert_eq!(body["Resources"][0]["id"], ids[0]);
    let (s, _, body) = call(reqwest::Method::GET, &q("userName eq"), &[], None).await;
    assert_eq!((s, body["scimType"].as_str()), (400, Some("invalidFilter")));
    let (_, _, page) = call(
        reqwest::Method::GET,
        &format!("{users}?startIndex=2&count=1&attributes=userName"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (
            page["totalResults"].as_u64(),
            page["itemsPerPage"].as_u64(),
            page["startIndex"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(page["Resources"][0]["userName"], "bob@example.com");
    assert!(
        page["Resources"][0].get("name").is_none(),
        "attributes= limits the answer"
    );

    // A group holding bob; bob's read-only `groups` shows it.
    let (s, _, group) = call(
        reqwest::Method::POST,
        &format!("{}/Groups", base(&proxy)),
        &[],
        Some(json!({"displayName": "Engineering", "members": [{"value": ids[1]}]})),
    )
    .await;
    assert_eq!(s, 201);
    let (_, _, found) = call(
        reqwest::Method::GET,
        &format!(
            "{}/Groups?filter={}",
            base(&proxy),
            url::form_urlencoded::byte_serialize(
                format!("members.value eq \"{}\"", ids[1]).as_bytes()
            )
            .collect::<String>()
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(found["Resources"][0]["id"], group["id"]);

    let (_, _, before_ann) = call(reqwest::Method::GET, &ann, &[], None).await;
    let (_, _, before_bob) = call(
        reqwest::Method::GET,
        &format!("{users}/{}", ids[1]),
        &[],
        None,
    )
    .await;
    assert_eq!(before_bob["groups"][0]["display"], "Engineering");
    proxy.shutdown().await;

    // Same state dir, new process: identical answers, ETags included.
    let proxy = harness::start(settings(&text)).await;
    let users2 = format!("{}/Users", base(&proxy));
    let (s, h, after_ann) = call(
        reqwest::Method::GET,
        &format!("{users2}/{}", ids[0]),
        &[],
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(after_ann, before_ann);
    assert_eq!(h["etag"].to_str().unwrap(), newer);
    let (_, _, after_bob) = call(
        reqwest::Method::GET,
        &format!("{users2}/{}", ids[1]),
        &[],
        None,
    )
    .await;
    assert_eq!(after_bob, before_bob);
    let (_, _, list) = call(reqwest::Method::GET, &users2, &[], None).await;
    assert_eq!(list["totalResults"], 3);
    assert!(state.join("scim/okta.json").is_file());
    proxy.shutdown().await;
}

fn venv_python() -> PathBuf {
    std::env::var_os("USHER_PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv"))
        .join("bin/python")
}

/// Runs a script under tests/scim with the peers venv's Python; (exit ok, stdout, stderr).
async fn python(script: &str, args: &[&str]) -> (bool, String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scim")
        .join(script);
    let run = tokio::process::Command::new(venv_python())
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 240 s"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", venv_python().display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn scim2_tester_passes_against_the_inbound_server() {
    if !require_peers("scim2_tester_passes_against_the_inbound_server") {
        return;
    }
    let up = upstream::start().await;
    let proxy = harness::start(settings(&config(
        &up.url(),
        &temp_dir("scim-tester"),
        "",
        "",
    )))
    .await;
    // No exceptions are allowed: every check must be SUCCESS.
    let (ok, out, err) = python("check_server.py", &[&base(&proxy), TOKEN, "[]"]).await;
    let line = out
        .lines()
        .find(|l| l.starts_with("scim2-tester:"))
        .unwrap_or_else(|| panic!("no result line; stdout:\n{out}\nstderr:\n{err}"));
    eprintln!("{line}");
    assert!(ok, "scim2-tester found problems:\n{out}\n{err}");
    assert!(line.contains(" 0 other; 0 not allowed"), "{line}");
    proxy.shutdown().await;
}

/// Polls the Jira emulator until `done` holds (pushes are applied in the background).
async fn wait_for(jira: &JiraEmulator, what: &str, done: impl Fn(&JiraState) -> bool) -> JiraState {
    let start = Instant::now();
    loop {
        let state = jira.state();
        if done(&state) {
            return state;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for: {what}; Jira has users {:?} groups {:?}",
            state
                .users
                .values()
                .map(|u| (&u.name, u.active))
                .collect::<Vec<_>>(),
            state.groups
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn member(state: &JiraState, group: &str, user: &str) -> bool {
    let Some(u) = state.user(user) else {
        return false;
    };
    state.groups.get(group).is_some_and(|m| m.contains(&u.key))
}

#[tokio::test]
async fn a_scim_client_pushes_people_into_jira_with_mapped_groups_then_deactivates() {
    if !require_peers("a_scim_client_pushes_people_into_jira_with_mapped_groups_then_deactivates") {
        return;
    }
    let seed = JiraSeed {
        groups: vec![
            ("jira-software-users".into(), vec![]),
            ("jira-developers".into(), vec![]),
        ],
        ..JiraSeed::default()
    };
    let (jira, jira_run) = JiraEmulator::start(seed).await.unwrap();
    let up = upstream::start().await;
    let extra = format!(
        r#"
[[target]]
name = "jira"
kind = "jira"
url = "{jira}"
auth = {{ username = "usher-bot", password = "bot-password" }}

[groups]
mode = "manual"
default_new_users = ["jira-software-users"]
keep_existing = false
create_missing = true

[[groups.map]]
idp = "engineering"
target = ["jira-developers"]

[[groups.map]]
idp = "sales"
target = ["sales-team"]
"#,
        jira = jira_run.url()
    );
    let state_dir = temp_dir("scim-e2e");
    let proxy = harness::start(settings(&config(&up.url(), &state_dir, "", &extra))).await;
    let b = base(&proxy);

    let (ok, out, err) = python("push.py", &[&b, TOKEN, "create"]).await;
    assert!(ok, "push.py create failed:\n{out}\n{err}");
    let ids: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let id = |k: &str| ids[k].as_str().unwrap().to_string();

    let state = wait_for(&jira, "ann and bob with their mapped groups", |s| {
        member(s, "jira-developers", "ann")
            && member(s, "jira-developers", "bob")
            && member(s, "sales-team", "bob")
    })
    .await;
    let ann = state.user("ann").unwrap();
    assert_eq!(
        (ann.email.as_str(), ann.display_name.as_str(), ann.active),
        ("ann@example.com", "Ann Lee", true)
    );
    assert!(
        member(&state, "jira-software-users", "ann"),
        "default_new_users on creation"
    );
    assert!(!member(&state, "sales-team", "ann"));

    // Bob leaves Engineering: with keep_existing = false he loses jira-developers.
    let (ok, out, err) = python("push.py", &[&b, TOKEN, "leave", &id("eng"), &id("bob")]).await;
    assert!(ok, "push.py leave failed:\n{out}\n{err}");
    let state = wait_for(&jira, "bob out of jira-developers", |s| {
        !member(s, "jira-developers", "bob")
    })
    .await;
    assert!(
        member(&state, "sales-team", "bob"),
        "other mapped groups stay"
    );
    assert!(member(&state, "jira-developers", "ann"));

    // active: false deactivates the account (never deletes it).
    let (ok, out, err) = python("push.py", &[&b, TOKEN, "deactivate", &id("ann")]).await;
    assert!(ok, "push.py deactivate failed:\n{out}\n{err}");
    let state = wait_for(&jira, "ann deactivated", |s| {
        s.user("ann").is_some_and(|u| !u.active)
    })
    .await;
    assert!(state.user("bob").unwrap().active);

    // A deleted SCIM user is deprovisioned too.
    let (ok, out, err) = python("push.py", &[&b, TOKEN, "delete", &id("bob")]).await;
    assert!(ok, "push.py delete failed:\n{out}\n{err}");
    wait_for(&jira, "bob deactivated after DELETE", |s| {
        s.user("bob").is_some_and(|u| !u.active)
    })
    .await;

    // Every change is in the audit log, attributed to the push.
    let audit = std::fs::read_to_string(state_dir.join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["actor"] == "scim"
            && l["operation"] == "deactivate"
            && l["username"] == "ann"),
        "{audit}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["actor"] == "scim" && l["by"] == "scim:okta"),
        "{audit}"
    );
    proxy.shutdown().await;
    drop(jira_run);
}

#[tokio::test]
async fn a_full_sync_with_source_okta_reads_the_pushed_people() {
    let (jira, jira_run) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let up = upstream::start().await;
    let state = temp_dir("scim-sync");
    // First usher has no targets: pushes are only stored.
    let proxy = harness::start(settings(&config(&up.url(), &state, "", ""))).await;
    let users = format!("{}/Users", base(&proxy));
    let mut ids = Vec::new();
    for (name, active) in [("dan", true), ("eve", false)] {
        let (s, _, body) = call(
            reqwest::Method::POST,
            &users,
            &[],
            Some(
                json!({"userName": format!("{name}@example.com"), "active": active,
                        "name": {"givenName": name.to_uppercase(), "familyName": "Pushed"}}),
            ),
        )
        .await;
        assert_eq!(s, 201);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (s, _, _) = call(
        reqwest::Method::POST,
        &format!("{}/Groups", base(&proxy)),
        &[],
        Some(json!({"displayName": "Ops", "members": [{"value": ids[0]}, {"value": ids[1]}]})),
    )
    .await;
    assert_eq!(s, 201);
    proxy.shutdown().await;
    assert!(
        jira.state().user("dan").is_none(),
        "nothing applied without targets"
    );

    let extra = format!(
        "[[target]]\nname = \"jira\"\nkind = \"jira\"\nurl = \"{}\"\nauth = {{ username = \"usher-bot\", password = \"bot-password\" }}\n[groups]\nmode = \"on-the-fly\"\ncreate_missing = true\n",
        jira_run.url()
    );
    let s = settings(&config(&up.url(), &state, "", &extra));
    let sources = usher::sync::Sources::for_source(&s, Some("okta")).unwrap();
    assert_eq!(sources.directory.source(), "okta");
    let options = usher::sync::SyncOptions {
        source: Some("okta".into()),
        ..usher::sync::SyncOptions::default()
    };
    let report = usher::sync::run(&s, &sources, &options, &usher::sync::Progress::default()).await;
    assert_eq!(
        report.status,
        usher::sync::SyncStatus::Succeeded,
        "{:?}",
        report.errors
    );
    assert_eq!(report.directory.people, 2);
    let st = jira.state();
    let dan = st.user("dan").expect("dan created by the full sync");
    assert_eq!(dan.display_name, "DAN Pushed");
    assert!(member(&st, "Ops", "dan"), "{:?}", st.groups);
    assert!(
        st.user("eve").is_none(),
        "an inactive pushed person gets no account"
    );
    // The Google-style sync needs [directory]; --source okta does not.
    assert!(usher::sync::Sources::for_source(&s, None).is_err());
}

#[tokio::test]
async fn entra_style_pushes_over_plain_http_reach_jira_and_deactivate() {
    let (jira, jira_run) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let up = upstream::start().await;
    let extra = format!(
        "[[target]]\nname = \"jira\"\nkind = \"jira\"\nurl = \"{}\"\nauth = {{ username = \"usher-bot\", password = \"bot-password\" }}\n[groups]\nmode = \"on-the-fly\"\ncreate_missing = true\nkeep_existing = false\n",
        jira_run.url()
    );
    let proxy = harness::start(settings(&config(
        &up.url(),
        &temp_dir("scim-entra"),
        "",
        &extra,
    )))
    .await;
    let b = base(&proxy);
    // Entra ID: user first (externalId = mailNickname), then a group, then members by PATCH.
    let (s, _, user) = call(
        reqwest::Method::POST,
        &format!("{b}/Users"),
        &[],
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "fay", "userName": "Fay@Example.com", "active": true,
            "displayName": "Fay Field",
            "emails": [{"primary": true, "type": "work", "value": "Fay@Example.com"}],
            "name": {"formatted": "Fay Field", "familyName": "Field", "givenName": "Fay"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
        })),
    )
    .await;
    assert_eq!(s, 201, "{user}");
    let uid = user["id"].as_str().unwrap().to_string();
    let (s, _, group) = call(
        reqwest::Method::POST,
        &format!("{b}/Groups"),
        &[],
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops Team", "members": []})),
    )
    .await;
    assert_eq!(s, 201);
    let gid = group["id"].as_str().unwrap().to_string();
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": uid}]}]});
    let (s, _, _) = call(
        reqwest::Method::PATCH,
        &format!("{b}/Groups/{gid}"),
        &[],
        Some(add),
    )
    .await;
    assert_eq!(s, 200);
    let st = wait_for(&jira, "fay in Ops Team", |s| member(s, "Ops Team", "fay")).await;
    assert_eq!(st.user("fay").unwrap().email, "fay@example.com");

    // Entra removes members with a value list; keep_existing = false drops the group.
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"value": uid}]}]});
    let (s, _, _) = call(
        reqwest::Method::PATCH,
        &format!("{b}/Groups/{gid}"),
        &[],
        Some(remove),
    )
    .await;
    assert_eq!(s, 200);
    wait_for(&jira, "fay out of Ops Team", |s| {
        !member(s, "Ops Team", "fay")
    })
    .await;

    // ...and disables with a string boolean.
    let disable = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (s, _, body) = call(
        reqwest::Method::PATCH,
        &format!("{b}/Users/{uid}"),
        &[],
        Some(disable),
    )
    .await;
    assert_eq!((s, body["active"].as_bool()), (200, Some(false)));
    wait_for(&jira, "fay deactivated", |s| {
        s.user("fay").is_some_and(|u| !u.active)
    })
    .await;
    proxy.shutdown().await;
}
