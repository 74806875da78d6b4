//! Starts usher for a test exactly as `usher serve` does (config text -> Settings
//! -> App), on an ephemeral loopback port, and stops it when dropped.

use std::net::SocketAddr;

use tokio::sync::watch;
use usher::config::{self, Settings, StaticEnv};
use usher::App;

pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

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
issuer = "http://127.0.0.1:9/"
client_id = "test-client"
client_secret = "test-secret"
allowed_domains = ["example.com"]

[[upstream]]
name = "jira"
host = "jira.test"
url = "{upstream_url}"
{extra}
"#
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
pub fn start(settings: Settings) -> Proxy {
    let app = App::build(settings).expect("usher builds");
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
