//! The access log of a real `usher serve` process: one line per request in the
//! subscriber's text or JSON shape, written in per-worker batches that reach the
//! output within the flush period, and not lost when the process is stopped
//! right after a request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::replicas::free_port;

struct Served {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

async fn serve(name: &str, upstream: &str, format: &str) -> Served {
    serve_with(name, upstream, format, "info").await
}

async fn serve_with(name: &str, upstream: &str, format: &str, rust_log: &str) -> Served {
    let dir = crate::harness::temp_dir(name);
    let port = free_port();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[session]
secret = "{secret}"
[[idp]]
name = "google"
kind = "google"
client_id = "x"
client_secret = "y"
allowed_domains = ["example.com"]
[[upstream]]
name = "app"
host = "127.0.0.1"
url = "{upstream}"
public = ["^/"]
[state]
dir = "{state}"
"#,
        secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        state = dir.join("state").display()
    );
    let path = dir.join("usher.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.join("usher.log");
    let child =
        crate::harness::spawn_serve(&["--log-format", format], &path, rust_log, &log, port).await;
    Served { child, port, log }
}

/// Sends one request and returns the request id usher gave it.
async fn request(port: u16, path: &str) -> String {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    resp.bytes().await.unwrap();
    id
}

/// The access lines that mention `id`, waiting (bounded) for them to arrive.
async fn lines_with(log: &Path, id: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found: Vec<String> = text
            .lines()
            .filter(|l| l.contains(id) && l.contains("usher::access"))
            .map(str::to_owned)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn text_lines_reach_the_output_within_the_flush_period() {
    let up = crate::upstream::start().await;
    let s = serve("access-text", &up.url(), "text").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(request(s.port, &format!("/echo/{i}?secret=hidden")).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let lines = lines_with(&s.log, id, Duration::from_secs(10)).await;
        assert_eq!(lines.len(), 1, "one line for request {id}: {lines:?}");
        let l = &lines[0];
        assert!(
            l.contains(" INFO usher::access: method=GET host=127.0.0.1:"),
            "{l}"
        );
        assert!(
            l.contains(&format!(" path=/echo/{i} status=200 bytes=")),
            "{l}"
        );
        assert!(l.contains(" upstream=app request_id="), "{l}");
        assert!(l.ends_with(" user=-"), "{l}");
        assert!(
            !l.contains("hidden"),
            "the query string is never logged: {l}"
        );
    }
}

#[tokio::test]
async fn json_lines_are_one_object_each() {
    let up = crate::upstream::start().await;
    let s = serve("access-json", &up.url(), "json").await;
    let id = request(s.port, "/echo/json").await;
    let lines = lines_with(&s.log, &id, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["target"], "usher::access");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["path"], "/echo/json");
    assert_eq!(v["status"], 200);
    assert_eq!(v["request_id"], id.as_str());
    assert!(v["duration_us"].is_u64() && v["bytes"].is_u64(), "{v}");
}

#[tokio::test]
async fn lines_still_batched_at_shutdown_are_written() {
    let up = crate::upstream::start().await;
    let mut s = serve("access-stop", &up.url(), "text").await;
    let id = request(s.port, "/echo/last").await;
    // Well inside the flush period: the line is still in the worker's batch.
    let pid = s.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), s.child.wait())
        .await
        .expect("usher stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let lines = lines_with(&s.log, &id, Duration::ZERO).await;
    assert_eq!(lines.len(), 1, "the last line survives the stop: {lines:?}");
}

#[tokio::test]
async fn rust_log_still_silences_the_access_log() {
    let up = crate::upstream::start().await;
    let mut s = serve_with("access-off", &up.url(), "text", "info,usher::access=off").await;
    let id = request(s.port, "/echo/quiet").await;
    let pid = s.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), s.child.wait())
        .await
        .expect("usher stops on SIGTERM")
        .unwrap();
    let text = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        text.contains("INFO"),
        "other info lines are still written: {text}"
    );
    assert!(
        !text.contains("usher::access"),
        "no access line at all: {text}"
    );
    assert!(!text.contains(&id), "{text}");
}
