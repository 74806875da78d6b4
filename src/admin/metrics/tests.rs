//! The recording functions through a real Prometheus recorder and a parsed scrape.
//! Each test records into its own recorder (set for the current thread only), so
//! the exact values are checked without interference from other tests in the
//! process; one test covers the process-wide render.

use std::collections::BTreeMap;

use super::*;
use crate::sync::report::{TargetReport, Trigger};
use crate::sync::safety::{SafetyCounts, SafetyReport};

/// Runs `f` with a fresh recorder of usher's configuration and returns its scrape.
fn isolated(f: impl FnOnce()) -> Scrape {
    assert!(install(), "usher's recorder is the process recorder");
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, f);
    Scrape::parse(&handle.render()).unwrap()
}

#[test]
fn install_is_idempotent_and_the_render_parses() {
    assert!(install());
    assert!(install());
    assert!(enabled());
    let s = Scrape::parse(&render()).unwrap();
    assert_eq!(
        s.get(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
}

#[test]
fn logins_and_denials_are_counted_by_idp_result_and_reason() {
    let s = isolated(|| {
        login_succeeded("google");
        login_succeeded("google");
        login_denied(Some("google"), DenialReason::Suspended);
        login_denied(None, DenialReason::ReplayedCallback);
        login_admission("google", Duration::from_millis(30));
    });
    let idp = ("idp", "google");
    assert_eq!(s.get(LOGINS, &[idp, ("result", "success")]), Some(2.0));
    assert_eq!(s.get(LOGINS, &[idp, ("result", "denied")]), Some(1.0));
    assert_eq!(s.series(LOGINS).count(), 2, "no idp label invented");
    assert_eq!(s.get(LOGIN_DENIALS, &[("reason", "suspended")]), Some(1.0));
    assert_eq!(
        s.get(LOGIN_DENIALS, &[("reason", "replayed_callback")]),
        Some(1.0)
    );
    assert_eq!(s.types[LOGIN_ADMISSION_DURATION], "histogram");
    let bucket = "usher_login_admission_duration_seconds_bucket";
    assert_eq!(s.get(bucket, &[idp, ("le", "0.025")]), Some(0.0));
    assert_eq!(s.get(bucket, &[idp, ("le", "0.05")]), Some(1.0));
    assert_eq!(
        s.get("usher_login_admission_duration_seconds_count", &[idp]),
        Some(1.0)
    );
}

#[test]
fn outbound_calls_retries_and_waits_are_counted() {
    let s = isolated(|| {
        directory_request("users.list", Some(200));
        directory_request("users.list", Some(503));
        directory_request("users.list", None);
        target_request("wiki", Flavor::Confluence, &http::Method::PUT, Some(204));
        api_retry(
            Api::Target,
            "wiki",
            RetryReason::RateLimited,
            Duration::from_millis(700),
        );
        api_retry(
            Api::Target,
            "wiki",
            RetryReason::ServerError,
            Duration::from_secs(1),
        );
        rate_limit_wait(Api::Directory, "google", Duration::from_millis(40));
    });
    let m = ("method", "users.list");
    assert_eq!(
        s.get(DIRECTORY_REQUESTS, &[m, ("status", "200")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(DIRECTORY_REQUESTS, &[m, ("status", "503")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(DIRECTORY_REQUESTS, &[m, ("status", "error")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            TARGET_REQUESTS,
            &[
                ("target", "wiki"),
                ("product", "confluence"),
                ("method", "PUT"),
                ("status", "204")
            ]
        ),
        Some(1.0)
    );
    let t = [("api", "target"), ("name", "wiki")];
    assert_eq!(
        s.get(API_RETRIES, &[t[0], t[1], ("reason", "rate_limited")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(API_RETRIES, &[t[0], t[1], ("reason", "server_error")]),
        Some(1.0)
    );
    // Only the rate-limited retry is a rate-limit wait.
    let count = "usher_api_rate_limit_wait_seconds_count";
    let sum = "usher_api_rate_limit_wait_seconds_sum";
    assert_eq!(s.get(count, &t), Some(1.0));
    assert!((s.get(sum, &t).unwrap() - 0.7).abs() < 1e-9);
    let d = [("api", "directory"), ("name", "google")];
    assert_eq!(s.get(count, &d), Some(1.0));
    assert_eq!(
        s.get(
            "usher_api_rate_limit_wait_seconds_bucket",
            &[d[0], d[1], ("le", "0.05")]
        ),
        Some(1.0)
    );
}

#[test]
fn provisioning_operations_and_session_ends_are_counted() {
    let s = isolated(|| {
        provision_operation("jira", "create-user", &OpOutcome::Done, Actor::Login);
        provision_operation(
            "jira",
            "add-member",
            &OpOutcome::Failed {
                error: "x".into(),
                transient: true,
            },
            Actor::Sync,
        );
        provision_operation(
            "jira",
            "add-member",
            &OpOutcome::Skipped { reason: "y".into() },
            Actor::Admin,
        );
        session_ended(SessionEndReason::Logout);
        session_ended(SessionEndReason::Revoked);
        session_ended(SessionEndReason::Lifetime(SessionEnd::Idle));
        session_ended(SessionEndReason::Lifetime(SessionEnd::Expired));
        session_ended(SessionEndReason::Lifetime(SessionEnd::FromTheFuture));
    });
    let labels = |op, result, trigger| {
        [
            ("target", "jira"),
            ("operation", op),
            ("result", result),
            ("trigger", trigger),
        ]
    };
    assert_eq!(
        s.get(
            PROVISION_OPERATIONS,
            &labels("create-user", "done", "login")
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            PROVISION_OPERATIONS,
            &labels("add-member", "failed", "sync")
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            PROVISION_OPERATIONS,
            &labels("add-member", "skipped", "admin")
        ),
        Some(1.0)
    );
    for reason in ["logout", "revoked", "idle", "expired", "invalid_time"] {
        assert_eq!(s.get(SESSIONS_ENDED, &[("reason", reason)]), Some(1.0));
    }
}

fn target(
    name: &str,
    planned: &[(&str, usize)],
    hits: Vec<LimitHit>,
    applied: bool,
) -> TargetReport {
    TargetReport {
        name: name.into(),
        planned: planned
            .iter()
            .map(|(k, n)| ((*k).to_string(), *n))
            .collect::<BTreeMap<_, _>>(),
        safety: Some(SafetyReport {
            hits,
            counts: SafetyCounts::default(),
        }),
        applied: applied.then(Default::default),
        ..TargetReport::default()
    }
}

fn stopped_by_changes(trigger: Trigger, dry_run: bool, approved: bool) -> SyncReport {
    let mut r = SyncReport::begin("s".into(), trigger, dry_run, approved.then(|| "a".into()));
    r.status = if dry_run {
        SyncStatus::Planned
    } else if approved {
        SyncStatus::Succeeded
    } else {
        SyncStatus::Stopped
    };
    r.targets = vec![target(
        "jira",
        &[("deactivate", 40)],
        vec![LimitHit::Changes {
            count: 40,
            allowed: 10,
        }],
        approved && !dry_run,
    )];
    r
}

#[test]
fn a_sync_report_becomes_runs_duration_changes_and_last_success() {
    let finished = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let s = isolated(|| {
        let mut ok = SyncReport::begin("s1".into(), Trigger::Schedule, false, None);
        ok.status = SyncStatus::Succeeded;
        ok.duration_ms = 12_000;
        ok.targets = vec![target(
            "jira",
            &[("create-user", 2), ("add-member", 5), ("link", 3)],
            vec![],
            true,
        )];
        sync_finished(&ok, finished);
        // A later stopped run and a dry run do not move the last success.
        sync_finished(
            &stopped_by_changes(Trigger::Admin, false, false),
            finished + Duration::from_secs(60),
        );
        sync_finished(
            &stopped_by_changes(Trigger::Admin, true, false),
            finished + Duration::from_secs(120),
        );
    });
    assert_eq!(
        s.get(
            SYNC_RUNS,
            &[("trigger", "schedule"), ("status", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get(SYNC_RUNS, &[("trigger", "admin"), ("status", "stopped")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(SYNC_RUNS, &[("trigger", "admin"), ("status", "planned")]),
        Some(1.0)
    );
    let t = ("target", "jira");
    assert_eq!(
        s.get(SYNC_CHANGES, &[t, ("operation", "create-user")]),
        Some(2.0)
    );
    assert_eq!(
        s.get(SYNC_CHANGES, &[t, ("operation", "add-member")]),
        Some(5.0)
    );
    assert_eq!(
        s.get(SYNC_CHANGES, &[t, ("operation", "link")]),
        None,
        "links are not changes"
    );
    assert_eq!(
        s.get(SYNC_CHANGES, &[t, ("operation", "deactivate")]),
        None,
        "stopped and dry runs changed nothing"
    );
    assert_eq!(s.get(SYNC_LAST_SUCCESS, &[]), Some(1_900_000_000.0));
    assert_eq!(
        s.get("usher_sync_duration_seconds_count", &[("dry_run", "false")]),
        Some(2.0)
    );
    assert_eq!(
        s.get("usher_sync_duration_seconds_count", &[("dry_run", "true")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            "usher_sync_duration_seconds_bucket",
            &[("dry_run", "false"), ("le", "15")]
        ),
        Some(2.0)
    );
    assert_eq!(
        s.get(
            "usher_sync_duration_seconds_bucket",
            &[("dry_run", "false"), ("le", "5")]
        ),
        Some(1.0),
        "the stopped run took 0 s, the applied one 12 s"
    );
}

#[test]
fn brake_events_say_what_happened() {
    let s = isolated(|| {
        sync_finished(
            &stopped_by_changes(Trigger::Schedule, false, false),
            UNIX_EPOCH,
        );
        sync_finished(&stopped_by_changes(Trigger::Admin, false, true), UNIX_EPOCH);
        sync_finished(&stopped_by_changes(Trigger::Cli, true, false), UNIX_EPOCH);
    });
    for outcome in ["stopped", "approved", "dry_run"] {
        assert_eq!(
            s.get(
                SYNC_SAFETY_HITS,
                &[
                    ("target", "jira"),
                    ("limit", "changes"),
                    ("outcome", outcome)
                ]
            ),
            Some(1.0),
            "{outcome}"
        );
    }
    // The approved run applied its plan: its changes count.
    assert_eq!(
        s.get(
            SYNC_CHANGES,
            &[("target", "jira"), ("operation", "deactivate")]
        ),
        Some(40.0)
    );
}
