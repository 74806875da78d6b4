//! usher's Prometheus metrics: the one process-wide recorder (installed by the first
//! App with an `admin_listen`, idempotently), the name and labels of every `usher_`
//! series, the small recording functions the rest of the crate calls at its edges,
//! and the text the admin listener serves. Labels are low-cardinality by design:
//! config names, status codes, fixed reason/kind words. Never a user name, email,
//! group or path. The per-request series go through the pre-resolved tables in
//! [`requests`], never through a registry lookup.

mod requests;
pub mod text;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::error::DenialReason;
use crate::provision::apply::OpOutcome;
use crate::provision::audit::Actor;
use crate::session::SessionEnd;
use crate::sync::report::{SyncReport, SyncStatus, Trigger};
use crate::sync::safety::LimitHit;
use crate::target::http::Flavor;

pub use requests::{
    UpstreamErrorKind, UpstreamMetrics, REQUESTS_TOTAL, REQUEST_DURATION, REQUEST_DURATION_BUCKETS,
    UPSTREAM_ERRORS,
};
pub use text::{ParseError, Sample, Scrape};

/// Content type of the Prometheus text exposition format served at `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `usher_build_info{version}`: always 1; the version label says what runs.
pub const BUILD_INFO: &str = "usher_build_info";
/// `usher_open_connections`: client connections open on the public listener.
pub const OPEN_CONNECTIONS: &str = "usher_open_connections";
/// `usher_logins_total{idp,result}`: sign-in callbacks that reached an identity
/// provider; `result` is `success` (a session was issued) or `denied`.
pub const LOGINS: &str = "usher_logins_total";
/// `usher_login_denials_total{reason}`: refused sign-ins by [`DenialReason`] code.
pub const LOGIN_DENIALS: &str = "usher_login_denials_total";
/// `usher_login_admission_duration_seconds{idp}`: directory read plus login-time
/// provisioning, per sign-in (histogram).
pub const LOGIN_ADMISSION_DURATION: &str = "usher_login_admission_duration_seconds";
/// `usher_sessions_ended_total{reason}`: `logout`, `revoked` (failed re-validation:
/// suspended or no longer allowed), `expired` (ttl), `idle`, `invalid_time`.
pub const SESSIONS_ENDED: &str = "usher_sessions_ended_total";
/// `usher_provision_operations_total{target,operation,result,trigger}`.
pub const PROVISION_OPERATIONS: &str = "usher_provision_operations_total";
/// `usher_directory_requests_total{method,status}`: Directory API calls.
pub const DIRECTORY_REQUESTS: &str = "usher_directory_requests_total";
/// `usher_target_requests_total{target,product,method,status}`: target REST calls.
pub const TARGET_REQUESTS: &str = "usher_target_requests_total";
/// `usher_api_retries_total{api,name,reason}`: retried directory/target calls.
pub const API_RETRIES: &str = "usher_api_retries_total";
/// `usher_api_rate_limit_wait_seconds{api,name}`: waits caused by a rate limit (the
/// client's own budget or a 429/quota answer); `_count` is how many, `_sum` how long.
pub const RATE_LIMIT_WAIT: &str = "usher_api_rate_limit_wait_seconds";
/// `usher_sync_runs_total{trigger,status}`: finished full syncs.
pub const SYNC_RUNS: &str = "usher_sync_runs_total";
/// `usher_sync_duration_seconds{dry_run}`: full sync duration (histogram).
pub const SYNC_DURATION: &str = "usher_sync_duration_seconds";
/// `usher_sync_last_success_timestamp_seconds`: Unix time of the last applied sync
/// that succeeded (alert when `time() - this` grows past a few intervals).
pub const SYNC_LAST_SUCCESS: &str = "usher_sync_last_success_timestamp_seconds";
/// `usher_sync_changes_total{target,operation}`: changes syncs set out to apply.
pub const SYNC_CHANGES: &str = "usher_sync_changes_total";
/// `usher_sync_safety_limit_hits_total{target,limit,outcome}`: brake events.
pub const SYNC_SAFETY_HITS: &str = "usher_sync_safety_limit_hits_total";

/// `usher_sync_leader`: 1 while this replica holds the sync leader lease (several
/// replicas, `[state] redis_url`), else 0; summed over the replicas it should be 1.
pub const SYNC_LEADER: &str = "usher_sync_leader";

/// Buckets of the login admission histogram (seconds).
const LOGIN_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of the sync duration histogram (seconds): a small tenant to a huge one.
const SYNC_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets of the rate-limit wait histogram (seconds).
const WAIT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs usher's recorder as the process-wide `metrics` recorder, once; later
/// calls (more Apps in one process) return the same answer. Returns whether usher's
/// metrics are being recorded (false when another recorder was installed first).
pub fn install() -> bool {
    RECORDER.get_or_init(build_and_install).is_some()
}

/// Whether usher's recorder is installed (nothing is recorded before that).
pub fn enabled() -> bool {
    RECORDER.get().is_some_and(Option::is_some)
}

/// The recorder's configuration: real histograms (not summaries) for the duration
/// series, so replicas can be aggregated.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(LOGIN_ADMISSION_DURATION.into()),
            &LOGIN_BUCKETS,
        )
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SYNC_DURATION.into()), &SYNC_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RATE_LIMIT_WAIT.into()), &WAIT_BUCKETS))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "histogram buckets rejected; durations are rendered as summaries");
            PrometheusBuilder::new()
        })
}

fn build_and_install() -> Option<PrometheusHandle> {
    let builder = builder();
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(e) = metrics::set_global_recorder(recorder) {
        tracing::warn!(error = %e, "another metrics recorder is installed; usher records no metrics");
        return None;
    }
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("usher-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histograms are folded at scrape time only");
    }
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which usher runs."
    );
    describe_gauge!(
        OPEN_CONNECTIONS,
        "Client connections open on the public listener."
    );
    describe_counter!(LOGINS, "Sign-in callbacks from an identity provider, by IdP and result (success = session issued).");
    describe_counter!(LOGIN_DENIALS, "Refused sign-ins, by reason.");
    describe_histogram!(
        LOGIN_ADMISSION_DURATION,
        "Directory read and login-time provisioning per sign-in, by IdP."
    );
    describe_counter!(
        SESSIONS_ENDED,
        "Sessions ended: logout, revoked on re-validation, expired, idle, invalid_time."
    );
    describe_counter!(
        PROVISION_OPERATIONS,
        "Provisioning operations applied to targets, by target, operation, result and trigger."
    );
    describe_counter!(
        DIRECTORY_REQUESTS,
        "Directory API requests, by API method and HTTP status (error = no answer)."
    );
    describe_counter!(
        TARGET_REQUESTS,
        "Target REST requests, by target, product, HTTP method and status (error = no answer)."
    );
    describe_counter!(
        API_RETRIES,
        "Retried directory and target calls, by API, name and reason."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        "Waits caused by a rate limit (client-side budget or a 429/quota answer), by API and name."
    );
    describe_counter!(SYNC_RUNS, "Finished full syncs, by trigger and status.");
    describe_histogram!(SYNC_DURATION, "Full sync duration, by dry run or not.");
    describe_gauge!(
        SYNC_LAST_SUCCESS,
        "Unix time of the last applied full sync that succeeded."
    );
    describe_counter!(
        SYNC_CHANGES,
        "Changes full syncs set out to apply, by target and operation."
    );
    describe_gauge!(
        SYNC_LEADER,
        "1 while this replica holds the sync leader lease (several replicas), else 0."
    );
    describe_counter!(SYNC_SAFETY_HITS, "Safety limits exceeded by a sync plan, by target, limit and what happened (stopped, approved, dry_run).");
}

/// Everything `/metrics` shows: the recorder's series, then the request tables.
pub fn render() -> String {
    let mut out = RECORDER
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    requests::render(&mut out);
    out
}

/// The request table of `upstream` (`usher` for usher's own answers), resolved once
/// when the proxy is built; `None` while metrics are off, so the hot path then
/// records nothing at all.
pub fn upstream_metrics(upstream: &str) -> Option<&'static UpstreamMetrics> {
    if enabled() {
        requests::table(upstream)
    } else {
        None
    }
}

/// Sets the open-connection gauge (read when `/metrics` is served).
pub fn set_open_connections(n: usize) {
    if enabled() {
        gauge!(OPEN_CONNECTIONS).set(n as f64);
    }
}

/// A sign-in completed: the IdP vouched, admission passed and a session was issued.
pub fn login_succeeded(idp: &str) {
    if enabled() {
        counter!(LOGINS, "idp" => idp.to_owned(), "result" => "success").increment(1);
    }
}

/// A sign-in was refused. `idp` is known once the callback matched a pending login.
pub fn login_denied(idp: Option<&str>, reason: DenialReason) {
    if !enabled() {
        return;
    }
    counter!(LOGIN_DENIALS, "reason" => reason.code()).increment(1);
    if let Some(idp) = idp {
        counter!(LOGINS, "idp" => idp.to_owned(), "result" => "denied").increment(1);
    }
}

/// How long admission (directory read + login-time provisioning) took.
pub fn login_admission(idp: &str, elapsed: Duration) {
    if enabled() {
        histogram!(LOGIN_ADMISSION_DURATION, "idp" => idp.to_owned()).record(elapsed.as_secs_f64());
    }
}

/// Why a session ended (`usher_sessions_ended_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndReason {
    /// The person signed out.
    Logout,
    /// Re-validation against the directory refused the person (suspended, removed).
    Revoked,
    /// The session outlived a lifetime check (ttl, idle timeout, clock).
    Lifetime(SessionEnd),
}

impl SessionEndReason {
    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            SessionEndReason::Logout => "logout",
            SessionEndReason::Revoked => "revoked",
            SessionEndReason::Lifetime(SessionEnd::Expired) => "expired",
            SessionEndReason::Lifetime(SessionEnd::Idle) => "idle",
            SessionEndReason::Lifetime(SessionEnd::FromTheFuture) => "invalid_time",
        }
    }
}

/// A session ended.
pub fn session_ended(reason: SessionEndReason) {
    if enabled() {
        counter!(SESSIONS_ENDED, "reason" => reason.label()).increment(1);
    }
}

/// One provisioning operation finished (login-time or sync).
pub fn provision_operation(target: &str, operation: &'static str, outcome: &OpOutcome, by: Actor) {
    if !enabled() {
        return;
    }
    let result = match outcome {
        OpOutcome::Done => "done",
        OpOutcome::AlreadyDone => "already_done",
        OpOutcome::Failed { .. } => "failed",
        OpOutcome::Skipped { .. } => "skipped",
    };
    let trigger = match by {
        Actor::Login => "login",
        Actor::Sync => "sync",
        Actor::Admin => "admin",
        Actor::Scim => "scim",
    };
    counter!(
        PROVISION_OPERATIONS,
        "target" => target.to_owned(),
        "operation" => operation,
        "result" => result,
        "trigger" => trigger
    )
    .increment(1);
}

fn status_label(status: Option<u16>) -> String {
    status.map_or_else(|| "error".to_string(), |s| s.to_string())
}

/// One Directory API request was answered (`Some(status)`) or got no answer.
pub fn directory_request(method: &'static str, status: Option<u16>) {
    if enabled() {
        counter!(DIRECTORY_REQUESTS, "method" => method, "status" => status_label(status))
            .increment(1);
    }
}

/// The `product` label of a target client.
pub fn product_label(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Jira => "jira",
        Flavor::Confluence => "confluence",
        Flavor::Bitbucket => "bitbucket",
        Flavor::Crowd => "crowd",
        Flavor::Scim => "scim",
    }
}

/// One target REST request was answered (`Some(status)`) or got no answer.
pub fn target_request(target: &str, flavor: Flavor, method: &http::Method, status: Option<u16>) {
    if enabled() {
        counter!(
            TARGET_REQUESTS,
            "target" => target.to_owned(),
            "product" => product_label(flavor),
            "method" => method.as_str().to_owned(),
            "status" => status_label(status)
        )
        .increment(1);
    }
}

/// Which outbound API a retry or wait concerns (`api` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The Directory API (`name` = the `[directory] idp`).
    Directory,
    /// A `[[target]]` (`name` = its name).
    Target,
}

impl Api {
    fn label(self) -> &'static str {
        match self {
            Api::Directory => "directory",
            Api::Target => "target",
        }
    }
}

/// Why a call was retried (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// 429, or Google's 403 rate/quota reasons.
    RateLimited,
    /// A 5xx answer (or a token endpoint hiccup).
    ServerError,
    /// No answer: connection refused, reset or timed out.
    Connection,
}

impl RetryReason {
    fn label(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::ServerError => "server_error",
            RetryReason::Connection => "connection",
        }
    }
}

/// A call is about to be retried after `delay`; a rate-limited retry's delay also
/// counts as a rate-limit wait.
pub fn api_retry(api: Api, name: &str, reason: RetryReason, delay: Duration) {
    if !enabled() {
        return;
    }
    counter!(API_RETRIES, "api" => api.label(), "name" => name.to_owned(), "reason" => reason.label())
        .increment(1);
    if reason == RetryReason::RateLimited {
        rate_limit_wait(api, name, delay);
    }
}

/// A call waited `waited` for a rate limit (the client's own budget or the server's).
pub fn rate_limit_wait(api: Api, name: &str, waited: Duration) {
    if enabled() {
        histogram!(RATE_LIMIT_WAIT, "api" => api.label(), "name" => name.to_owned())
            .record(waited.as_secs_f64());
    }
}

fn limit_label(hit: &LimitHit) -> &'static str {
    match hit {
        LimitHit::Deprovision { .. } => "deprovision",
        LimitHit::Changes { .. } => "changes",
        LimitHit::GroupRemovals { .. } => "group_removals",
    }
}

/// Whether this replica holds the sync leader lease now.
pub fn sync_leader(leader: bool) {
    if enabled() {
        gauge!(SYNC_LEADER).set(if leader { 1.0 } else { 0.0 });
    }
}

/// Records a finished full sync from its report: run count, duration, last success,
/// changes per target and operation, and safety-limit hits. `now` is when it ended.
pub fn sync_finished(report: &SyncReport, now: SystemTime) {
    if !enabled() {
        return;
    }
    let trigger = match report.trigger {
        Trigger::Cli => "cli",
        Trigger::Schedule => "schedule",
        Trigger::Admin => "admin",
    };
    let status = match report.status {
        SyncStatus::Running => "running",
        SyncStatus::Succeeded => "succeeded",
        SyncStatus::Planned => "planned",
        SyncStatus::Stopped => "stopped",
        SyncStatus::Failed => "failed",
    };
    counter!(SYNC_RUNS, "trigger" => trigger, "status" => status).increment(1);
    let dry_run = if report.dry_run { "true" } else { "false" };
    histogram!(SYNC_DURATION, "dry_run" => dry_run).record(report.duration_ms as f64 / 1000.0);
    if report.status == SyncStatus::Succeeded && !report.dry_run {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(SYNC_LAST_SUCCESS).set(secs);
    }
    let brake = if report.dry_run {
        "dry_run"
    } else if report.status == SyncStatus::Stopped {
        "stopped"
    } else {
        "approved"
    };
    for t in &report.targets {
        for hit in t.safety.iter().flat_map(|s| &s.hits) {
            counter!(
                SYNC_SAFETY_HITS,
                "target" => t.name.clone(),
                "limit" => limit_label(hit),
                "outcome" => brake
            )
            .increment(1);
        }
        if t.applied.is_none() {
            continue;
        }
        for (operation, n) in t.planned.iter().filter(|(op, _)| op.as_str() != "link") {
            counter!(SYNC_CHANGES, "target" => t.name.clone(), "operation" => operation.clone())
                .increment(*n as u64);
        }
    }
}

#[cfg(test)]
mod tests;
