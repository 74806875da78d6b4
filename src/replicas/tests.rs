//! Tests of the Redis primitives against a real redis-server: locks with tokens,
//! the leader lease (takeover after a leader stops renewing, resignation) and the
//! bounded shared report list.

use std::time::Duration;

use super::*;
use crate::session::store::contract_tests::start_redis;
use crate::sync::report::{SyncReport, SyncStatus, Trigger};

async fn shared(url: &str) -> Shared {
    Shared::connect(&Secret::new(url.to_string()))
        .await
        .unwrap()
}

#[tokio::test]
async fn locks_are_exclusive_and_only_the_holder_renews_or_releases() {
    let Some(server) = start_redis().await else {
        return;
    };
    let a = shared(&server.url).await;
    let b = shared(&server.url).await;
    assert_ne!(a.replica(), b.replica());
    let ttl = Duration::from_millis(300);
    let held = a
        .try_lock("t:lock", format!("a {}", lock::new_token()), ttl)
        .await
        .unwrap()
        .expect("free lock taken");
    assert!(b
        .try_lock("t:lock", "b x".into(), ttl)
        .await
        .unwrap()
        .is_none());
    assert!(a.renew(&held, Duration::from_secs(5)).await.unwrap());
    assert!(a.time_left("t:lock").await.unwrap().unwrap() > Duration::from_secs(4));
    assert!(a.release(&held).await.unwrap());
    assert!(!a.release(&held).await.unwrap(), "released twice");
    assert!(
        !a.renew(&held, ttl).await.unwrap(),
        "renewing a released lock"
    );
    // After expiry someone else takes it; the old holder cannot touch the new lock.
    let old = a
        .try_lock("t:exp", "a 1".into(), ttl)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let new = b
        .try_lock("t:exp", "b 2".into(), ttl * 10)
        .await
        .unwrap()
        .unwrap();
    assert!(!a.renew(&old, ttl).await.unwrap());
    assert!(!a.release(&old).await.unwrap());
    assert_eq!(b.get("t:exp").await.unwrap().as_deref(), Some(new.value()));
    // lock_within waits for the holder's release.
    let b2 = b.clone();
    let release_later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b2.release(&new).await.unwrap()
    });
    let t0 = std::time::Instant::now();
    let got = a
        .lock_within(
            "t:exp",
            "a 3".into(),
            ttl,
            Duration::from_secs(5),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
    assert!(got.is_some());
    assert!(release_later.await.unwrap());
    assert!(t0.elapsed() >= Duration::from_millis(150));
    // ... and gives up after its bound.
    let none = b
        .lock_within(
            "t:exp",
            "b 4".into(),
            Duration::from_secs(5),
            Duration::from_millis(100),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn the_lease_has_one_holder_and_moves_when_the_holder_stops() {
    let Some(server) = start_redis().await else {
        return;
    };
    let period = Duration::from_millis(600);
    let a = LeaderLease::on_key(shared(&server.url).await, "t:leader", period);
    let b = LeaderLease::on_key(shared(&server.url).await, "t:leader", period);
    a.step().await;
    b.step().await;
    assert!(a.is_leader());
    assert!(!b.is_leader());
    assert_eq!(b.leader().await.as_deref(), Some(a.replica()));
    // Renewals keep it with a for several periods.
    for _ in 0..6 {
        tokio::time::sleep(period / 3).await;
        a.step().await;
        b.step().await;
        assert!(a.is_leader() && !b.is_leader());
    }
    // a dies (stops renewing): b, looking as the lease tells it to, takes over
    // within one period of a's last renewal.
    let died = std::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(b.clone().run(stop_rx));
    while !b.is_leader() {
        assert!(died.elapsed() < period * 2, "no takeover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = died.elapsed();
    assert!(took <= period + Duration::from_millis(150), "{took:?}");
    assert!(!a.is_leader(), "a's own view expired too");
    // a comes back: its renewal fails, it follows.
    a.step().await;
    assert!(!a.is_leader());
    // b shuts down: resigns, a takes over at once.
    stop_tx.send(true).unwrap();
    runner.await.unwrap();
    assert!(!b.is_leader());
    assert_eq!(b.leader().await, None);
    a.step().await;
    assert!(a.is_leader());
}

fn report(id: &str) -> SyncReport {
    let mut r = SyncReport::begin(id.into(), Trigger::Schedule, false, None);
    r.status = SyncStatus::Succeeded;
    r.replica = Some("r1".into());
    // Fixed times: two calls must build equal reports.
    r.started_at = "2026-11-29T01:00:00.000Z".into();
    r.finished_at = "2026-11-29T01:00:02.000Z".into();
    r
}

#[tokio::test]
async fn shared_reports_keep_the_newest_and_drop_the_rest() {
    let Some(server) = start_redis().await else {
        return;
    };
    let a = SharedReports::with_prefix(shared(&server.url).await, "t:sync:", 3);
    let b = SharedReports::with_prefix(shared(&server.url).await, "t:sync:", 3);
    assert_eq!(b.last().await.unwrap(), None);
    for i in 1..=5 {
        a.put(&report(&format!("id{i}"))).await.unwrap();
    }
    assert_eq!(b.ids().await.unwrap(), vec!["id5", "id4", "id3"]);
    assert_eq!(b.last().await.unwrap(), Some(report("id5")));
    assert_eq!(b.get("id4").await.unwrap(), Some(report("id4")));
    assert_eq!(b.get("id1").await.unwrap(), None, "dropped off the list");
    let recent: Vec<String> = b
        .recent()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, vec!["id5", "id4", "id3"]);
    let p = crate::sync::ProgressSnapshot {
        phase: "applying".into(),
        done: 3,
        total: 9,
    };
    a.set_progress("id6", &p).await.unwrap();
    assert_eq!(b.progress("id6").await.unwrap(), Some(p));
    assert_eq!(b.progress("id5").await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Shared::connect(&Secret::new(format!("redis://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redis_url"), "{err}");
}

#[test]
fn a_full_report_survives_the_round_trip_through_json() {
    // Reports are read back from Redis: every field must deserialize.
    use crate::identity::ExternalId;
    use crate::provision::apply::{ApplyCounts, OpOutcome, OpResult};
    use crate::provision::plan::{AccountChanges, Change, Operation, Removal};
    use crate::sync::report::TargetReport;
    let person = ExternalId {
        source: "google".into(),
        id: "1".into(),
    };
    let mut r = report("x");
    r.targets.push(TargetReport {
        name: "jira".into(),
        planned: [("update-user".to_string(), 1)].into(),
        operations: vec![
            Operation::UpdateUser {
                person: person.clone(),
                username: "ann".into(),
                changes: Box::new(AccountChanges {
                    email: Some(Change {
                        before: "a@x".into(),
                        after: "a@y".into(),
                    }),
                    ..AccountChanges::default()
                }),
            },
            Operation::RemoveMember {
                group: "g".into(),
                username: "ann".into(),
                why: Removal::Deprovision,
            },
        ],
        applied: Some(ApplyCounts {
            done: 1,
            failed: 1,
            ..ApplyCounts::default()
        }),
        failures: vec![OpResult {
            op: Operation::Deactivate {
                username: "bo".into(),
                person: Some(person),
            },
            outcome: OpOutcome::Failed {
                error: "503".into(),
                transient: true,
            },
        }],
        ..TargetReport::default()
    });
    let json = serde_json::to_string(&r).unwrap();
    let back: SyncReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[tokio::test]
async fn a_leader_that_cannot_reach_redis_stops_leading_within_one_period() {
    let Some(mut server) = start_redis().await else {
        return;
    };
    let period = Duration::from_millis(600);
    let a = LeaderLease::on_key(shared(&server.url).await, "t:leader", period);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(a.clone().run(stop_rx));
    let t0 = std::time::Instant::now();
    while !a.is_leader() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await.unwrap();
    let t0 = std::time::Instant::now();
    while a.is_leader() {
        assert!(t0.elapsed() < period * 2, "still leading without redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Its last renewal was at most a third of a period before redis went away.
    assert!(
        t0.elapsed() <= period + Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    // Redis back: the lease is taken again.
    let _again = crate::sandbox::redis_server::RedisServer::start_on(server.port)
        .await
        .unwrap();
    let t1 = std::time::Instant::now();
    while !a.is_leader() {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "no leader after redis returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    runner.await.unwrap();
}
