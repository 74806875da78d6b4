//! Several replicas sharing one real redis-server (`[state] redis_url`, `[session]
//! store = "redis"`) in front of the sandbox: a session from replica A works on B,
//! logout on A ends it on B, identity links and reports are shared, concurrent first
//! logins over both replicas provision once, exactly one replica runs each scheduled
//! sync, and when the leader is killed (SIGKILL, real `usher serve` processes) the
//! other one takes the schedule over within one lease period. This file holds the
//! shared set-up (`Cluster`: sandbox + Redis + one config; `Replica`: an in-process
//! usher); `logins` and `sync` hold the scenarios.

mod logins;
mod sync;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use usher::config::{self, Secret, SystemEnv};
use usher::replicas::Shared;
use usher::sandbox::demo;
use usher::sandbox::redis_server::RedisServer;
use usher::sandbox::run::{self as sandbox, SandboxHandles, SandboxOptions};
use usher::sync::SyncService;
use usher::App;

use crate::signin::Browser;

/// Placeholder for each replica's own state directory in the shared config text.
pub(crate) const STATE: &str = "/usher-replica-state-placeholder";

/// redis-server on a free port; `None` (skip, with a message) only when it is not
/// installed and `USHER_PEERS` is unset.
pub(crate) async fn redis(test: &str) -> Option<RedisServer> {
    match RedisServer::start().await {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("USHER_PEERS").is_none() => {
            eprintln!("{test}: skipped: redis-server not runnable ({e}); run bash tests/peers/install.sh and set USHER_PEERS=1");
            None
        }
        Err(e) => panic!("USHER_PEERS is set but redis-server could not start: {e}"),
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Keeps only the `[[target]]` blocks named `keep` (a sync into one target is quick).
pub(crate) fn only_target(text: &str, keep: &str) -> String {
    let mut parts = text.split("[[target]]\n");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let end = part.find("\n\n").map_or(part.len(), |i| i + 1);
        let (block, rest) = part.split_at(end);
        if block.contains(&format!("name = \"{keep}\"")) {
            out.push_str("[[target]]\n");
            out.push_str(block);
        }
        out.push_str(rest);
    }
    out
}

/// The sandbox, Redis and the config all replicas share (one public URL, one
/// session secret, one Redis); each replica gets its own state directory.
pub(crate) struct Cluster {
    pub(crate) redis: RedisServer,
    pub(crate) sandbox: Arc<SandboxHandles>,
    /// `127.0.0.1:PORT`: the public host the "load balancer" answers on.
    pub(crate) public: String,
    pub(crate) text: String,
}

impl Cluster {
    pub(crate) async fn start(test: &str, sync_extra: &str) -> Option<Cluster> {
        let redis = redis(test).await?;
        let port = free_port();
        let sandbox = Arc::new(
            sandbox::start(SandboxOptions {
                port: 0,
                seed: None,
                redirect_uris: vec![format!("http://127.0.0.1:{port}/_usher/callback")],
            })
            .await
            .unwrap(),
        );
        let text = demo::config_text(port, &sandbox, Path::new(STATE))
            .replace(
                &format!("listen = \"127.0.0.1:{port}\""),
                "listen = \"127.0.0.1:0\"",
            )
            .replace("store = \"memory\"", "store = \"redis\"")
            .replace(
                "[state]\n",
                &format!("[state]\nredis_url = \"{}\"\n", redis.url),
            )
            .replace("[sync]\n", &format!("[sync]\n{sync_extra}\n"));
        let text = only_target(&text, "jira");
        assert!(text.contains("store = \"redis\"") && text.contains("redis_url"));
        Some(Cluster {
            redis,
            sandbox,
            public: format!("127.0.0.1:{port}"),
            text,
        })
    }

    pub(crate) fn config_for(&self, state: &Path, listen: &str) -> String {
        self.text
            .replace(STATE, &state.display().to_string())
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{listen}\""),
            )
    }

    /// One more in-process replica (as `usher serve` builds it).
    pub(crate) async fn replica(&self) -> Replica {
        let state = crate::harness::temp_dir("replica");
        let text = self.config_for(&state, "127.0.0.1:0");
        let settings = config::parse(&text, "<replica>", &SystemEnv).unwrap();
        let app = App::build(settings).await.unwrap();
        let addr = app.local_addr();
        let sync = app.sync.clone();
        let (stop, stopped) = watch::channel(false);
        let workers = app.run(stopped).unwrap();
        Replica {
            addr,
            sync,
            state,
            stop,
            workers: Some(workers),
        }
    }

    pub(crate) async fn shared(&self) -> Shared {
        Shared::connect(&Secret::new(self.redis.url.clone()))
            .await
            .unwrap()
    }

    pub(crate) fn browser(&self, r: &Replica) -> Browser {
        Browser::for_host(r.addr, &self.public)
    }
}

pub(crate) struct Replica {
    pub(crate) addr: SocketAddr,
    pub(crate) sync: Option<Arc<SyncService>>,
    pub(crate) state: PathBuf,
    stop: watch::Sender<bool>,
    workers: Option<usher::proxy::server::Workers>,
}

impl Replica {
    pub(crate) fn sync(&self) -> &Arc<SyncService> {
        self.sync
            .as_ref()
            .expect("the demo config has a directory and targets")
    }

    /// Audit lines of `operation` this replica wrote.
    pub(crate) fn audit(&self, operation: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["operation"] == operation)
            .collect()
    }

    pub(crate) async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.workers.take() {
            tokio::task::spawn_blocking(move || w.join()).await.unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
