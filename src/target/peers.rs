//! Tests against real, independent SCIM software: the SCIM target against
//! `scim2-server` (PyPI), and the SCIM emulator against the `scim2-tester`
//! compliance checker. They run when `USHER_PEERS` is set (CI installs the peers
//! with `tests/peers/scim2_server.sh install`) and print why they skip otherwise.
//! Test-only; starts and stops only the processes it spawned, by handle.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::contract::{bearer, scim::client};
use super::http::RecordingClock;
use super::{NewUser, Outcome, TargetError, UserUpdate};
use crate::sandbox::scim::{ScimEmulator, ScimSeed};

const TOKEN: &str = "peer-token";

fn venv() -> PathBuf {
    std::env::var_os("USHER_PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers-venv"))
}

/// `None` (after printing why) when peers are not requested; installs them if asked
/// for and missing.
async fn peers_enabled(test: &str) -> Option<PathBuf> {
    if std::env::var_os("USHER_PEERS").is_none() {
        println!("SKIPPED {test}: set USHER_PEERS=1 to run the SCIM peer tests (tests/peers/scim2_server.sh install)");
        return None;
    }
    let bin = venv().join("bin");
    if !bin.join("scim2-server").exists() || !bin.join("scim2").exists() {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/scim2_server.sh");
        let status = tokio::time::timeout(
            Duration::from_secs(300),
            Command::new(script).arg("install").status(),
        )
        .await
        .expect("installing the SCIM peers took over 5 minutes")
        .expect("running tests/peers/scim2_server.sh");
        assert!(
            status.success(),
            "tests/peers/scim2_server.sh install failed"
        );
    }
    Some(bin)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A spawned peer, killed (by its own handle) when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn start_scim2_server(bin: &std::path::Path) -> (Peer, String) {
    let port = free_port();
    let child = Command::new(bin.join("scim2-server"))
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--bearer-token",
            TOKEN,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting scim2-server");
    let peer = Peer(child);
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return (peer, format!("http://{addr}/v2"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("scim2-server did not listen on {addr} within 15 s");
}

fn person(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        display_name: format!("{name} Peer"),
        given_name: None,
        family_name: None,
    }
}

/// Reads a resource straight from the server, independently of the client.
async fn raw(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn scim_target_against_scim2_server() {
    let Some(bin) = peers_enabled("scim_target_against_scim2_server").await else {
        return;
    };
    let (_peer, base) = start_scim2_server(&bin).await;
    let clock = Arc::new(RecordingClock::default());
    let t = client(&base, bearer(TOKEN), clock.clone(), 4);

    let alice = t.create_user(&person("alice")).await.unwrap();
    let id = alice.key.clone().expect("SCIM id");
    assert!(alice.active);
    assert_eq!(
        t.get_user("ALICE")
            .await
            .unwrap()
            .map(|u| u.username)
            .as_deref(),
        Some("alice")
    );
    assert!(t.get_user("nobody").await.unwrap().is_none());
    let by_mail = t.find_user_by_email("alice@example.com").await.unwrap();
    assert_eq!(by_mail.and_then(|u| u.key).as_deref(), Some(id.as_str()));
    let dup = t.create_user(&person("alice")).await.unwrap_err();
    assert!(matches!(dup, TargetError::Conflict { .. }), "{dup:?}");

    let update = UserUpdate {
        email: Some("alice.new@example.com".into()),
        display_name: Some("Alice Renamed".into()),
        new_username: None,
    };
    let updated = t.update_user("alice", &update).await.unwrap();
    assert_eq!(updated.email.as_deref(), Some("alice.new@example.com"));
    let stored = raw(&format!("{base}/Users/{id}")).await;
    assert_eq!(stored["displayName"], "Alice Renamed");
    assert_eq!(stored["emails"][0]["value"], "alice.new@example.com");

    // scim2-server answers PATCH with 204: accepted.
    assert_eq!(t.deactivate_user("alice").await.unwrap(), Outcome::Changed);
    assert_eq!(raw(&format!("{base}/Users/{id}")).await["active"], false);
    assert_eq!(
        t.deactivate_user("alice").await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(t.reactivate_user("alice").await.unwrap(), Outcome::Changed);
    assert_eq!(raw(&format!("{base}/Users/{id}")).await["active"], true);

    // scim2-server accepts duplicate displayNames, so idempotency is the client's.
    assert_eq!(t.create_group("team-a").await.unwrap(), Outcome::Changed);
    assert_eq!(t.create_group("team-a").await.unwrap(), Outcome::Unchanged);
    let groups = raw(&format!(
        "{base}/Groups?filter=displayName%20eq%20%22team-a%22"
    ))
    .await;
    assert_eq!(groups["totalResults"], 1);
    let gid = groups["Resources"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        t.add_member("team-a", "alice").await.unwrap(),
        Outcome::Changed
    );
    assert_eq!(
        t.add_member("team-a", "alice").await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        raw(&format!("{base}/Groups/{gid}")).await["members"][0]["value"],
        id.as_str()
    );
    assert_eq!(
        t.user_groups("alice").await.unwrap(),
        vec!["team-a".to_string()]
    );
    let members = t.list_members_page("team-a", None).await.unwrap();
    assert_eq!(members.items, vec!["alice".to_string()]);
    assert_eq!(
        t.remove_member("team-a", "alice").await.unwrap(),
        Outcome::Changed
    );
    assert_eq!(
        t.remove_member("team-a", "alice").await.unwrap(),
        Outcome::Unchanged
    );
    assert!(raw(&format!("{base}/Groups/{gid}")).await["members"]
        .as_array()
        .is_none_or(|m| m.is_empty()));

    // Paging (page size 4) over users and members.
    for k in 0..9 {
        let name = format!("pager{k}");
        t.create_user(&person(&name)).await.unwrap();
        t.add_member("team-a", &name).await.unwrap();
    }
    let (mut users, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = t.list_users_page(cursor.as_ref()).await.unwrap();
        pages += 1;
        users.extend(page.items.into_iter().map(|u| u.username));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(users.len(), 10);
    assert_eq!(users.iter().collect::<BTreeSet<_>>().len(), 10);
    assert_eq!(pages, 3);
    let (mut names, mut cursor) = (BTreeSet::new(), None);
    loop {
        let page = t
            .list_members_page("team-a", cursor.as_ref())
            .await
            .unwrap();
        names.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(names, (0..9).map(|k| format!("pager{k}")).collect());

    let bad = client(&base, bearer("wrong-token"), clock, 4);
    let err = bad.get_user("alice").await.unwrap_err();
    assert!(matches!(err, TargetError::Unauthorized { .. }), "{err:?}");
}

/// `scim2 test` against the emulator. Every check passes except these, which are
/// deliberate because the emulator reproduces Atlassian Cloud, not the whole RFC:
/// - `search_with_attributes` (User and Group): `POST /.search` (RFC 7644 §3.4.3,
///   optional) is not part of Atlassian's documented SCIM API, so it answers 404.
/// - `object_replacement` and `check_replace_attribute` on Group `displayName`:
///   Atlassian documents "Renaming a synced group is not supported", so a PUT or
///   PATCH that changes a group's displayName answers 400 `mutability`.
#[tokio::test]
async fn scim_emulator_passes_scim2_tester() {
    let Some(bin) = peers_enabled("scim_emulator_passes_scim2_tester").await else {
        return;
    };
    let seed = ScimSeed {
        tokens: vec![TOKEN.into()],
        ..ScimSeed::default()
    };
    let (emu, running) = ScimEmulator::start(seed).await.unwrap();
    let url = format!("{}{}", running.url(), emu.base_path());
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(bin.join("scim2"))
            .args(["--url", &url, "test"])
            .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("scim2 test took over 2 minutes")
    .expect("running scim2");
    running.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut errors: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(check) = line.strip_prefix("ERROR ") {
            let detail = lines.get(i + 1).map(|d| d.trim()).unwrap_or_default();
            errors.push((check.trim().to_string(), detail.to_string()));
        }
    }
    let successes = lines.iter().filter(|l| l.starts_with("SUCCESS")).count();
    let allowed = |(check, detail): &(String, String)| match check.as_str() {
        "search_with_attributes" => detail.contains("Resource not found"),
        "object_replacement" | "check_replace_attribute" => {
            detail.contains("Renaming a synced group is not supported")
        }
        _ => false,
    };
    let unexpected: Vec<&(String, String)> = errors.iter().filter(|e| !allowed(e)).collect();
    assert!(
        unexpected.is_empty(),
        "unexpected scim2-tester failures: {unexpected:#?}\n{text}"
    );
    assert!(errors.len() <= 4, "{errors:#?}");
    assert!(successes >= 70, "only {successes} checks passed:\n{text}");
}
