//! Full syncs across replicas: the shared run lock ("sync now" anywhere, `usher
//! sync`), shared reports, exactly one replica per scheduled sync, and the leader
//! killed with SIGKILL (two real `usher serve` processes) handing the schedule over.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use usher::replicas::SharedReports;
use usher::sync::job::{Busy, Refused, RunStatus, RUN_KEY};
use usher::sync::{SyncReport, SyncStatus, Trigger};

use super::{free_port, Cluster};

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
        b.sync().start_now(true, None, None).await.unwrap_err(),
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
    let id = b.sync().start_now(false, None, None).await.unwrap();
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
    let id2 = a.sync().start_now(true, None, None).await.unwrap();
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
    /// `admin_listen` (metrics).
    admin: u16,
}

impl Serve {
    /// `usher_sync_leader` from this process's `/metrics`.
    async fn leader_gauge(&self) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        let scrape = usher::admin::metrics::Scrape::parse(&text).unwrap();
        scrape.get(usher::admin::metrics::SYNC_LEADER, &[])
    }
}

async fn serve(c: &Cluster, name: &str) -> Serve {
    let dir = crate::harness::temp_dir(name);
    let (port, admin) = (free_port(), free_port());
    let path = dir.join("usher.toml");
    let listen = format!("127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}");
    std::fs::write(&path, c.config_for(&dir.join("state"), &listen)).unwrap();
    let log = dir.join("usher.log");
    let child = crate::harness::spawn_serve(&[], &path, "info", &log, port).await;
    Serve { child, port, admin }
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

    // Its metrics say so; the other's say it is not.
    assert_eq!(dead.leader_gauge().await, Some(1.0));
    assert_eq!(survivor.leader_gauge().await, Some(0.0));

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

    assert_eq!(survivor.leader_gauge().await, Some(1.0));

    // A leader stopped cleanly (SIGTERM) hands the lease back at once instead of
    // letting it run out.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &survivor_pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), survivor.child.wait())
        .await
        .expect("usher serve stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert_eq!(leader_now().await, None, "lease released on shutdown");
}
