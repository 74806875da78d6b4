//! The `[sync] notify_webhook`: after each run, POST a Slack-compatible JSON body
//! (`{"text": "...", "report": {...}}`) with a timeout. Best effort: a webhook that
//! is down is logged and never fails the sync. The URL is a secret (Slack webhook
//! URLs carry their token) and is never logged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Secret;

use super::report::SyncReport;

/// How long one webhook POST may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON body: `text` is the one-line summary (what Slack shows), `report` the
/// report without the per-operation lists (counts, verdicts and errors stay).
pub fn payload(report: &SyncReport) -> Value {
    let mut compact = report.clone();
    for t in &mut compact.targets {
        t.operations.clear();
        t.notes.clear();
        t.denied.truncate(20);
        t.failures.truncate(20);
    }
    let mut text = compact.summary_line();
    for why in &report.stopped_because {
        text.push_str("\n- ");
        text.push_str(why);
    }
    for e in &report.errors {
        text.push_str("\n- ");
        text.push_str(e);
    }
    json!({ "text": text, "report": compact })
}

/// POSTs the summary of `report` to `url`. Errors come back as text without the URL.
pub async fn send(url: &Secret, report: &SyncReport, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("webhook client setup failed: {}", e.without_url()))?;
    let resp = client
        .post(url.expose())
        .json(&payload(report))
        .send()
        .await
        .map_err(|e| {
            format!(
                "sync.notify_webhook: POST failed ({}); check the URL and that it is reachable",
                e.without_url()
            )
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "sync.notify_webhook answered HTTP {}; check the webhook URL",
            resp.status().as_u16()
        ))
    }
}

/// [`send`] when a webhook is configured; failures are logged, never returned.
pub async fn after_run(url: Option<&Secret>, report: &SyncReport) {
    let Some(url) = url.filter(|u| !u.expose().trim().is_empty()) else {
        return;
    };
    match send(url, report, WEBHOOK_TIMEOUT).await {
        Ok(()) => tracing::debug!(sync_id = %report.id, "sync webhook notified"),
        Err(e) => tracing::warn!(sync_id = %report.id, error = %e, "sync webhook not notified"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::report::{SyncStatus, TargetReport, Trigger};

    #[test]
    fn payload_has_text_and_compact_report() {
        let mut r = SyncReport::begin("id1".into(), Trigger::Schedule, false, None);
        r.status = SyncStatus::Stopped;
        r.stopped_because = vec!["jira: 9 accounts would be deprovisioned".into()];
        r.targets.push(TargetReport {
            name: "jira".into(),
            operations: vec![crate::provision::plan::Operation::CreateGroup { group: "g".into() }],
            ..TargetReport::default()
        });
        let p = payload(&r);
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("STOPPED"), "{text}");
        assert!(text.contains("9 accounts would be deprovisioned"), "{text}");
        assert_eq!(p["report"]["id"], "id1");
        assert_eq!(p["report"]["targets"][0]["operations"], json!([]));
    }
}
