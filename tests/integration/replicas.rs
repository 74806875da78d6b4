//! Several replicas sharing one real redis-server (`[state] redis_url`, `[session]
//! store = "redis"`) in front of the sandbox: a session from replica A works on B,
//! logout on A ends it on B, identity links and reports are shared, concurrent first
//! logins over both replicas provision once, exactly one replica runs each scheduled
//! sync, and when the leader is killed (SIGKILL, real `usher serve` processes) the
//! other one takes the schedule over within one lease period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use usher::config::{self, Secret, SystemEnv};
use usher::provision::redis_links::RedisLinkStore;
use usher::provision::LinkStore;
use usher::replicas::{Shared, SharedReports};
use usher::sandbox::demo;
use usher::sandbox::redis_server::RedisServer;
use usher::sandbox::run::{self as sandbox, SandboxHandles, SandboxOptions};
use usher::sync::job::{Busy, Refused, RunStatus, RUN_KEY};
use usher::sync::{SyncReport, SyncService, SyncStatus, Trigger};
use usher::App;

use crate::signin::Browser;

/// Placeholder for each replica's own state directory in the shared config text.
const STATE: &str = "/usher-replica-state-placeholder";

/// redis-server on a free port; `None` (skip, with a message) only when it is not
/// installed and `USHER_PEERS` is unset.
async fn redis(test: &str) -> Option<RedisServer> {
    match RedisServer::start().await {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("USHER_PEERS").is_none() => {
            eprintln!("{test}: skipped: redis-server not runnable ({e}); run bash tests/peers/install.sh and set USHER_PEERS=1");
            None
        }
        Err(e) => panic!("USHER_PEERS is set but redis-server could not start: {e}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Keeps only the `[[target]]` blocks named `keep` (a sync into one target is quick).
fn only_target(text: &str, keep: &str) -> String {
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
struct Cluster {
    redis: RedisServer,
    sandbox: Arc<SandboxHandles>,
    /// `127.0.0.1:PORT`: the public host the "load balancer" answers on.
    public: String,
    text: String,
}

impl Cluster {
    async fn start(test: &str, sync_extra: &str) -> Option<Cluster> {
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

    fn config_for(&self, state: &Path, listen: &str) -> String {
        self.text
            .replace(STATE, &state.display().to_string())
            .replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{listen}\""),
            )
    }

    /// One more in-process replica (as `usher serve` builds it).
    async fn replica(&self) -> Replica {
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

    async fn shared(&self) -> Shared {
        Shared::connect(&Secret::new(self.redis.url.clone()))
            .await
            .unwrap()
    }

    fn browser(&self, r: &Replica) -> Browser {
        Browser::for_host(r.addr, &self.public)
    }
}

struct Replica {
    addr: SocketAddr,
    sync: Option<Arc<SyncService>>,
    state: PathBuf,
    stop: watch::Sender<bool>,
    workers: Option<usher::proxy::server::Workers>,
}

impl Replica {
    fn sync(&self) -> &Arc<SyncService> {
        self.sync
            .as_ref()
            .expect("the demo config has a directory and targets")
    }

    /// Audit lines of `operation` this replica wrote.
    fn audit(&self, operation: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["operation"] == operation)
            .collect()
    }

    async fn shutdown(mut self) {
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
async fn sync_now_takes_the_shared_run_lock_and_reports_are_shared() {
    let Some(c) = Cluster::start("sync_now_takes_the_shared_run_lock", "").await else {
        return;
    };
    let a = c.replica().await;
    let b = c.replica().await;
    let other = c.shared().await;
    // Another replica holds the run lock: "sync now" on B answers Busy with its id.
    let held = other
        .try_lock(
            RUN_KEY,
            "20990101T000000000Z-beef t0k3n".into(),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.sync().start_now(true, None).await.unwrap_err(),
        Refused::Busy(Busy {
            running: "20990101T000000000Z-beef".into()
        })
    );
    assert_eq!(
        a.sync().running().await.as_deref(),
        Some("20990101T000000000Z-beef"),
        "every replica sees the run of another"
    );
    // `usher sync` refuses too (exit 1) rather than run beside it.
    let cli_dir = crate::harness::temp_dir("replica-cli");
    let cli_config = cli_dir.join("usher.toml");
    std::fs::write(
        &cli_config,
        c.config_for(&cli_dir.join("state"), "127.0.0.1:0"),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
            .arg("sync")
            .arg("-c")
            .arg(&cli_config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20990101T000000000Z-beef is running"), "{err}");
    assert!(other.release(&held).await.unwrap());
    // Free: `usher sync` runs and its report is shared.
    let out = cli(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_id = cli_report["id"].as_str().unwrap();
    let last = a.sync().last().await.unwrap();
    assert_eq!(last.id, cli_id);
    assert_eq!(last.trigger, Trigger::Cli);
    assert!(other.get(RUN_KEY).await.unwrap().is_none(), "released");

    // Free again: B runs it; A answers /sync/{id} and /last with B's report.
    let id = b.sync().start_now(false, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        if let Some(RunStatus::Done { report }) = a.sync().status(&id).await {
            break report;
        }
        assert!(Instant::now() < deadline, "B's sync did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.status, SyncStatus::Succeeded, "{report:#?}");
    assert_eq!(report.replica.as_deref(), b.sync().replica());
    assert_eq!(a.sync().last().await.unwrap().id, id);
    assert_eq!(a.sync().recent().await[0].id, id);
    // The file copy is still written on the replica that ran it.
    assert!(b.state.join("reports").join(format!("{id}.json")).exists());
    // The sync used the links in Redis: a second run on A plans no new links.
    let id2 = a.sync().start_now(true, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dry = loop {
        if let Some(RunStatus::Done { report }) = b.sync().status(&id2).await {
            break report;
        }
        assert!(Instant::now() < deadline, "A's dry run did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dry.status, SyncStatus::Planned, "{dry:#?}");
    assert_eq!(
        dry.targets[0].planned_changes(),
        0,
        "{:?}",
        dry.targets[0].planned
    );
    assert_eq!(dry.targets[0].planned.get("link"), None);
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
        a.sync().start_now(false, None).await,
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

fn started(r: &SyncReport) -> SystemTime {
    humantime::parse_rfc3339(&r.started_at).unwrap()
}

fn finished(r: &SyncReport) -> SystemTime {
    humantime::parse_rfc3339(&r.finished_at).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_runs_each_scheduled_sync() {
    let Some(c) = Cluster::start(
        "exactly_one_replica_runs_each_scheduled_sync",
        "interval = \"1s\"\njitter = \"0s\"",
    )
    .await
    else {
        return;
    };
    let a = c.replica().await;
    let b = c.replica().await;
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let leaders = [a.sync().is_leader(), b.sync().is_leader()];
    assert_eq!(
        leaders.iter().filter(|l| **l == Some(true)).count(),
        1,
        "{leaders:?}"
    );
    let leader = if leaders[0] == Some(true) { &a } else { &b }
        .sync()
        .replica()
        .map(str::to_string);
    let mut runs: Vec<Arc<SyncReport>> = a
        .sync()
        .recent()
        .await
        .into_iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .collect();
    runs.sort_by(|x, y| x.started_at.cmp(&y.started_at));
    a.shutdown().await;
    b.shutdown().await;
    assert!(
        (3..=7).contains(&runs.len()),
        "{} scheduled runs in 6.5 s",
        runs.len()
    );
    for r in &runs {
        assert_eq!(r.replica, leader, "only the leader syncs");
        assert_eq!(r.status, SyncStatus::Succeeded);
    }
    for pair in runs.windows(2) {
        let gap = started(&pair[1]).duration_since(started(&pair[0])).unwrap();
        assert!(gap >= Duration::from_millis(900), "two runs {gap:?} apart");
        assert!(finished(&pair[0]) <= started(&pair[1]), "runs overlap");
    }
}

/// A `usher serve` child process, killed when dropped.
struct Serve {
    child: tokio::process::Child,
    port: u16,
}

async fn serve(c: &Cluster, name: &str) -> Serve {
    let dir = crate::harness::temp_dir(name);
    let port = free_port();
    let path = dir.join("usher.toml");
    std::fs::write(
        &path,
        c.config_for(&dir.join("state"), &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("usher.log")).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["serve", "-c"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "usher serve did not listen; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Serve { child, port }
}

/// The pid inside a replica id (`host:pid:random`).
fn pid_of(replica: &str) -> Option<u32> {
    replica.split(':').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sync_leader_hands_the_schedule_to_the_other_replica() {
    let interval = Duration::from_secs(4);
    let lease = usher::replicas::lease_period(Some(interval));
    assert_eq!(lease, Duration::from_secs(2));
    let Some(c) = Cluster::start(
        "killing_the_sync_leader",
        "interval = \"4s\"\njitter = \"0s\"",
    )
    .await
    else {
        return;
    };
    let mut one = serve(&c, "serve-one").await;
    let mut two = serve(&c, "serve-two").await;
    assert_ne!(one.port, two.port);
    let shared = c.shared().await;
    let reports = SharedReports::new(shared.clone());
    let leader_now = || async {
        let v = shared
            .get(usher::replicas::lease::LEADER_KEY)
            .await
            .unwrap()?;
        v.split_once(' ').map(|(r, _)| r.to_string())
    };

    // The first leader runs the first scheduled sync.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(r) = reports.last().await.unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline, "no scheduled sync within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first.trigger, Trigger::Schedule);
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:#?}");
    let leader = leader_now().await.unwrap();
    assert_eq!(first.replica.as_deref(), Some(leader.as_str()));
    let (dead, survivor) = if pid_of(&leader) == one.child.id() {
        (&mut one, &mut two)
    } else {
        assert_eq!(pid_of(&leader), two.child.id());
        (&mut two, &mut one)
    };

    // Kill the leader half a second before its next sync is due.
    let due: u64 = shared
        .get(usher::sync::job::NEXT_DUE_KEY)
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let due = SystemTime::UNIX_EPOCH + Duration::from_millis(due);
    if let Ok(wait) = due.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait.saturating_sub(Duration::from_millis(500))).await;
    }
    assert!(shared.get(RUN_KEY).await.unwrap().is_none(), "leader idle");
    dead.child.start_kill().unwrap();
    let killed = (Instant::now(), SystemTime::now());
    dead.child.wait().await.unwrap();

    // The survivor takes the lease, then runs the overdue sync.
    let survivor_pid = survivor.child.id();
    let mut took_over = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    let next = loop {
        if took_over.is_none() {
            if let Some(l) = leader_now().await {
                if pid_of(&l) == survivor_pid {
                    took_over = Some(killed.0.elapsed());
                }
            }
        }
        if let Some(r) = reports.last().await.unwrap() {
            if r.id != first.id {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled sync on the survivor within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took_over = took_over.expect("lease moved before the sync");
    assert_eq!(next.trigger, Trigger::Schedule);
    assert_eq!(pid_of(next.replica.as_deref().unwrap()), survivor_pid);
    let sync_after = started(&next).duration_since(killed.1).unwrap();
    println!(
        "measured failover (lease {lease:?}): lease taken over {} ms after SIGKILL, first scheduled sync on the survivor started {} ms after SIGKILL",
        took_over.as_millis(),
        sync_after.as_millis()
    );
    assert!(
        took_over <= lease + Duration::from_millis(300),
        "{took_over:?}"
    );
    assert!(
        sync_after <= lease + Duration::from_millis(800),
        "{sync_after:?}"
    );
    // Only one scheduled run per due time: the dead leader never ran this one.
    assert_eq!(reports.ids().await.unwrap().len(), 2);

    // A leader stopped cleanly (SIGTERM) hands the lease back at once instead of
    // letting it run out.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &survivor_pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(10), survivor.child.wait())
        .await
        .expect("usher serve stops on SIGTERM")
        .unwrap();
    assert_eq!(leader_now().await, None, "lease released on shutdown");
}
