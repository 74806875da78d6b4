//! Real peers for sign-in tests: starts the panva `oidc-provider` OP
//! (tests/peers/oidc-provider/server.mjs) and drives headless Chromium
//! (tests/browser/login.mjs) from Rust tests. It owns the child processes (killed on
//! drop) and their temporary files; it must not start anything but loopback servers
//! and never installs anything (that is tests/peers/install.sh).
//!
//! Tests that need these peers start with
//! `if !peers::require_peers("name") { return; }`: they run only when
//! `USHER_PEERS=1` (set by tests/run.sh after install.sh).
//!
//! End-to-end through usher (order matters: the OP must know usher's redirect URI, usher
//! must know the OP's issuer): keep usher's `public_url` a name such as
//! `http://jira.test`, start `OidcPeer::start(&accounts, id, secret,
//! "http://jira.test/_usher/callback")`, put `peer.issuer` into usher's `[[idp]]`, start
//! usher on 127.0.0.1:0, then `browser_login_mapped("http://jira.test/...", email,
//! "http://jira.test/...", "name.png", &[("jira.test", usher_addr)])`: Chromium resolves
//! `jira.test` to usher and sends `Host: jira.test`.

#![allow(dead_code)] // the lead's end-to-end tests use parts the tests here do not

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for the OP's READY line (node start-up plus key generation).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a browser sign-in may take in all; login.mjs bounds itself at 30 s.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(50);

/// True when the real peers are installed and tests may use them (`USHER_PEERS=1`).
pub fn peers_enabled() -> bool {
    std::env::var("USHER_PEERS").is_ok_and(|v| v == "1")
}

/// For the first line of a peer test: true when peers are enabled, else prints
/// `skipped: USHER_PEERS not set` with the test name, so the test can return early.
pub fn require_peers(test: &str) -> bool {
    let on = peers_enabled();
    if !on {
        eprintln!("{test}: skipped: USHER_PEERS not set (run bash tests/peers/install.sh, then USHER_PEERS=1)");
    }
    on
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `tests/artifacts/<name>` (gitignored), creating the directory: where screenshots go.
pub fn artifact_path(name: &str) -> PathBuf {
    let dir = repo_path("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn node_package(dir: &str, script: &str) -> PathBuf {
    let dir = repo_path(dir);
    assert!(
        dir.join("node_modules").is_dir(),
        "{} has no node_modules: run `bash tests/peers/install.sh` first",
        dir.display()
    );
    dir.join(script)
}

/// One person the OP can sign in, written to its accounts file.
#[derive(Debug, Clone, Serialize)]
pub struct PeerAccount {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// Workspace domain; `None` for a consumer account (no `hd` claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub name: String,
    /// Carried as the ID token's `groups` claim (a list of strings).
    pub groups: Vec<String>,
}

impl PeerAccount {
    /// A verified Workspace account: `hd` is the email's domain, `name` is "Given Family".
    pub fn workspace(sub: &str, email: &str, given: &str, family: &str, groups: &[&str]) -> Self {
        PeerAccount {
            sub: sub.into(),
            email: email.into(),
            email_verified: true,
            hd: email.split_once('@').map(|(_, d)| d.to_ascii_lowercase()),
            given_name: given.into(),
            family_name: family.into(),
            name: format!("{given} {family}"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// A running panva `oidc-provider` made Google-shaped: one confidential client,
/// PKCE S256 required, RS256 keys kept in a file (same `kid` across [`OidcPeer::restart`];
/// a new key with [`OidcPeer::rotate_keys`]). The login page signs in the account named by
/// the authorize request's `login_hint` (or `?email=` on `/interaction/<uid>`) at once,
/// `?deny=1` answers `error=access_denied`, and without either it shows an account picker.
/// Killed when dropped.
pub struct OidcPeer {
    /// `http://127.0.0.1:PORT` (no trailing slash): the `issuer` for usher's `[[idp]]`.
    pub issuer: String,
    /// The loopback port, kept across restarts.
    pub port: u16,
    /// The `kid` of the current signing key.
    pub kid: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    dir: PathBuf,
    child: Option<Child>,
}

static PEER_SEQ: AtomicU32 = AtomicU32::new(0);

impl OidcPeer {
    /// Starts the OP on a free loopback port with `accounts` and one client whose only
    /// redirect URI is `redirect_uri`; returns once it prints READY (bounded wait).
    pub async fn start(
        accounts: &[PeerAccount],
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
    ) -> OidcPeer {
        let seq = PEER_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("usher-oidc-peer-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("accounts.json"),
            serde_json::to_vec(accounts).unwrap(),
        )
        .unwrap();
        let mut peer = OidcPeer {
            issuer: String::new(),
            port: 0,
            kid: String::new(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
            dir,
            child: None,
        };
        peer.launch().await;
        peer
    }

    async fn launch(&mut self) {
        let script = node_package("tests/peers/oidc-provider", "server.mjs");
        let stderr_path = self.dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .arg("--accounts")
            .arg(self.dir.join("accounts.json"))
            .arg("--keys")
            .arg(self.dir.join("keys.json"))
            .args(["--client-id", &self.client_id])
            .args(["--client-secret", &self.client_secret])
            .args(["--redirect-uri", &self.redirect_uri])
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", script.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Some(rest.to_string());
                }
            }
            None
        })
        .await;
        let Ok(Some(ready)) = ready else {
            let _ = child.kill().await;
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("oidc-provider peer did not print READY within {READY_TIMEOUT:?}; its stderr:\n{log}");
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (issuer, kid) = ready.split_once(" kid=").unwrap_or((ready.as_str(), ""));
        self.issuer = issuer.trim_end_matches('/').to_string();
        self.kid = kid.to_string();
        self.port = url::Url::parse(&self.issuer)
            .unwrap()
            .port()
            .expect("issuer has a port");
        self.child = Some(child);
    }

    /// Stops the OP and starts it again on the same port with the same key file: same
    /// issuer and `kid`, but all codes, sessions and grants are gone.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops the OP, deletes its key file and starts it again on the same port: a new
    /// signing key with a new `kid` (the old key is no longer published).
    pub async fn rotate_keys(&mut self) {
        self.stop().await;
        std::fs::remove_file(self.dir.join("keys.json")).unwrap();
        self.launch().await;
    }

    /// Kills the OP and waits for it to exit (its port is free afterwards).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// What the OP printed on stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a browser sign-in ended.
#[derive(Debug, Clone, Deserialize)]
pub struct BrowserResult {
    /// The page's URL at the end (starts with the expected prefix).
    pub final_url: String,
    /// HTTP status of the last document (navigation) response.
    pub status: u16,
    /// The visible text of the final page.
    pub text: String,
    /// The screenshot taken of the final page (under tests/artifacts/).
    #[serde(skip)]
    pub screenshot: PathBuf,
}

/// Signs in with a real headless Chromium: opens `start_url` (usher, or an IdP
/// authorization URL), clicks the IdP's account button for `email`, waits until the page
/// URL starts with `expect_prefix`, and saves a screenshot as `tests/artifacts/<screenshot>`.
/// Err carries login.mjs's message (a screenshot is still saved when a page was open).
pub async fn browser_login(
    start_url: &str,
    email: &str,
    expect_prefix: &str,
    screenshot: &str,
) -> Result<BrowserResult, String> {
    browser_login_mapped(start_url, email, expect_prefix, screenshot, &[]).await
}

/// [`browser_login`] with host names mapped to loopback addresses inside Chromium
/// (`--host-resolver-rules`): e.g. `("jira.test", usher_addr)` lets the browser open
/// `http://jira.test/` (Host header `jira.test`) while usher listens on an ephemeral port.
/// The mapping applies to every port of that name.
pub async fn browser_login_mapped(
    start_url: &str,
    email: &str,
    expect_prefix: &str,
    screenshot: &str,
    hosts: &[(&str, SocketAddr)],
) -> Result<BrowserResult, String> {
    let script = node_package("tests/browser", "login.mjs");
    let shot = artifact_path(screenshot);
    let run = Command::new("node")
        .arg(&script)
        .args(["--start", start_url])
        .args(["--email", email])
        .args(["--expect-prefix", expect_prefix])
        .arg("--screenshot")
        .arg(&shot)
        .args(["--timeout-ms", "30000"])
        .args(
            hosts
                .iter()
                .flat_map(|(name, addr)| ["--map-host".to_string(), format!("{name}={addr}")]),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .map_err(|_| format!("login.mjs did not finish within {BROWSER_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run node {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let msg: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("login.mjs:"))
            .collect();
        let msg = if msg.is_empty() {
            stderr.to_string()
        } else {
            msg.join("\n")
        };
        return Err(format!(
            "browser sign-in failed ({}): {msg}; screenshot {}",
            out.status,
            shot.display()
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            format!("login.mjs printed no JSON line; stdout: {stdout}; stderr: {stderr}")
        })?;
    let mut result: BrowserResult = serde_json::from_str(line)
        .map_err(|e| format!("login.mjs printed unreadable JSON ({e}): {line}"))?;
    result.screenshot = shot;
    Ok(result)
}
