//! Starts usher for a test exactly as `usher serve` does (config text -> Settings
//! -> App), on an ephemeral loopback port, and stops it when dropped.

use std::net::SocketAddr;

use tokio::sync::watch;
use usher::config::{self, Settings, StaticEnv};
use usher::sandbox::google_oidc::{GoogleOidc, GoogleOidcConfig, SeedPerson};
use usher::sandbox::http::Running;
use usher::App;

/// The issuer in [`config_text`]: nothing listens there (discovery fails), so
/// tests that sign in replace it with a sandbox provider's issuer.
pub const NO_ISSUER: &str = "http://127.0.0.1:9/";

/// The OAuth client the sandbox provider and the test configs share.
pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";
/// `public_url` of the test configs; the callback the provider accepts.
pub const CALLBACK: &str = "http://jira.test/_usher/callback";

pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// A config in front of `upstream_url` where every path is public: for tests of
/// the proxy core that must not depend on sign-in.
pub fn open_config(upstream_url: &str, server_extra: &str, extra: &str) -> String {
    config_text(
        upstream_url,
        server_extra,
        &format!("public = [\"^/\"]\n{extra}"),
    )
}

/// A minimal valid config in front of `upstream_url`, with `extra` appended
/// (more sections) and `server_extra` inside `[server]`.
pub fn config_text(upstream_url: &str, server_extra: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://jira.test"
workers = 2
{server_extra}

[session]
secret = "${{USHER_SESSION_SECRET}}"

[[idp]]
name = "google"
kind = "google"
issuer = "{NO_ISSUER}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
allowed_domains = ["example.com"]

[state]
dir = "{state_dir}"

[[upstream]]
name = "jira"
host = "jira.test"
url = "{upstream_url}"
{extra}
"#,
        state_dir = temp_dir("state").display()
    )
}

/// Parses config text the way `usher serve` would, with test env values.
pub fn settings(text: &str) -> Settings {
    let env = StaticEnv::new().var("USHER_SESSION_SECRET", SECRET);
    match config::parse(text, "test.toml", &env) {
        Ok(s) => s,
        Err(e) => panic!("test config invalid:\n{e}"),
    }
}

/// A running usher.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    workers: Option<usher::proxy::server::Workers>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits (on a blocking thread) for the workers to drain.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.workers.take() {
            tokio::task::spawn_blocking(move || w.join()).await.unwrap();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts usher with these settings.
pub async fn start(settings: Settings) -> Proxy {
    let app = App::build(settings).await.expect("usher builds");
    let addr = app.local_addr();
    let (stop, stopped) = watch::channel(false);
    let workers = app.run(stopped).expect("usher runs");
    Proxy {
        addr,
        stop,
        workers: Some(workers),
    }
}

/// A reqwest client that never follows redirects and sends `Host: jira.test`-style
/// requests to the proxy address.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts the sandbox Google provider with `people`, accepting [`CALLBACK`].
pub async fn start_google(people: Vec<SeedPerson>) -> (std::sync::Arc<GoogleOidc>, Running) {
    GoogleOidc::start(
        GoogleOidcConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![CALLBACK.into()],
            people,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// A real `usher [global...] serve -c config` process, stdout and stderr in `log`,
/// returned once it listens on `port` (bounded: 20 s).
pub async fn spawn_serve(
    global: &[&str],
    config: &std::path::Path,
    rust_log: &str,
    log: &std::path::Path,
    port: u16,
) -> tokio::process::Child {
    let file = std::fs::File::create(log).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(global)
        .args(["serve", "-c"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "usher serve did not listen; see {}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child
}

thread_local! {
    /// The directories [`temp_dir`] made on this thread. libtest runs each test on
    /// a thread of its own and joins it, so they are removed when the test ends
    /// (also when it panics), after everything the test owned was dropped: the
    /// usher it started, the child processes it spawned (killed on drop).
    static TEMP_DIRS: std::cell::RefCell<Vec<tempfile::TempDir>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A fresh directory `usher-it-<what>-XXXXXX` under the system temp dir, removed
/// with everything in it when the calling test ends (see [`TEMP_DIRS`]). Call it
/// from the test itself (or from a task of the test's own runtime), not from a
/// thread that ends before the test does.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("usher-it-{what}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().to_path_buf();
    TEMP_DIRS.with(|dirs| dirs.borrow_mut().push(dir));
    path
}
