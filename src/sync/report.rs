//! The record of one full sync: the serde [`SyncReport`] (per-target plan summary,
//! safety verdict, apply outcome, errors, timings, call counts), time-sortable sync
//! ids, writing `<state dir>/reports/<id>.json`, and the human renderings (dry-run
//! table, one-line summary). Produces text and files; decides nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::provision::apply::{ApplyCounts, OpResult};
use crate::provision::plan::{Note, Operation};

use super::safety::SafetyReport;
use super::sources::ApiCalls;

/// Most operations (and notes, failures) kept per target in a report; the counts
/// always cover everything.
pub const MAX_LISTED: usize = 20_000;

/// How a sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// Still running (only seen through the service's `status`).
    Running,
    /// Everything planned was applied (or there was nothing to do).
    Succeeded,
    /// A dry run: planned and checked, nothing applied.
    Planned,
    /// A safety limit was exceeded: nothing was applied anywhere.
    Stopped,
    /// A read or some operations failed; what succeeded stays, nothing was deprovisioned
    /// from a target whose reads failed.
    Failed,
}

/// What started the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `usher sync`.
    Cli,
    /// The `[sync] interval` schedule inside `usher serve`.
    Schedule,
    /// The admin console ("Synchronize").
    Admin,
}

/// What was read from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySummary {
    /// The `[directory] idp`.
    pub source: String,
    pub people: usize,
    /// Neither suspended nor archived.
    pub active_people: usize,
    pub groups: usize,
    /// After flattening nested groups.
    pub memberships: usize,
    /// People mapped to no account (with reasons in `skipped_examples`).
    pub skipped: usize,
    pub skipped_examples: Vec<String>,
    /// Groups caught in a nesting cycle.
    pub cyclic_groups: Vec<String>,
    /// Directory API requests, when the client counts them.
    pub api_calls: Option<u64>,
    pub read_ms: u64,
}

/// One target's part of a sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub name: String,
    /// Planned operations per kind (`create-user` -> 3, ...).
    pub planned: BTreeMap<String, usize>,
    /// Planned operations, in plan order (at most [`MAX_LISTED`]).
    pub operations: Vec<Operation>,
    /// True when `operations` was cut at [`MAX_LISTED`].
    pub operations_truncated: bool,
    /// People refused an account (link conflicts).
    pub denied: Vec<Note>,
    /// What was left alone on purpose.
    pub notes: Vec<Note>,
    /// The safety verdict (absent when the target could not be read).
    pub safety: Option<SafetyReport>,
    /// Outcome counts (absent when nothing was applied).
    pub applied: Option<ApplyCounts>,
    /// Failed and skipped operations (at most [`MAX_LISTED`]).
    pub failures: Vec<OpResult>,
    /// Links or audit lines that could not be written.
    pub record_errors: Vec<String>,
    /// Why this target was not planned or applied.
    pub error: Option<String>,
    pub calls: ApiCalls,
    pub read_ms: u64,
    pub apply_ms: u64,
}

impl TargetReport {
    /// Whether this target has a problem (read error, failed or skipped operations).
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.applied.is_some_and(|c| c.failed > 0 || c.skipped > 0)
    }

    /// Whether a safety limit was exceeded.
    pub fn over_limit(&self) -> bool {
        self.safety.as_ref().is_some_and(|s| !s.passed())
    }

    /// Planned changes to the target (links excluded).
    pub fn planned_changes(&self) -> usize {
        self.planned
            .iter()
            .filter(|(k, _)| k.as_str() != "link")
            .map(|(_, n)| n)
            .sum()
    }
}

/// The report of one full sync, written to `<state dir>/reports/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Time-sortable id (see [`new_sync_id`]).
    pub id: String,
    pub status: SyncStatus,
    pub trigger: Trigger,
    pub dry_run: bool,
    /// Who approved applying despite a safety limit (the override), if anyone.
    pub approved_by: Option<String>,
    /// Who started it from the admin console, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub directory: DirectorySummary,
    pub targets: Vec<TargetReport>,
    /// Problems that concern the whole run (directory unreadable, state dir, ...).
    pub errors: Vec<String>,
    /// Human explanation of the safety stop, when there was one.
    pub stopped_because: Vec<String>,
    /// The replica that ran it (`[state] redis_url`: several replicas share reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

impl SyncReport {
    /// A fresh report for a run starting now.
    pub fn begin(id: String, trigger: Trigger, dry_run: bool, approved_by: Option<String>) -> Self {
        let now = rfc3339(SystemTime::now());
        SyncReport {
            id,
            status: SyncStatus::Running,
            trigger,
            dry_run,
            approved_by,
            requested_by: None,
            started_at: now.clone(),
            finished_at: now,
            duration_ms: 0,
            directory: DirectorySummary::default(),
            targets: Vec::new(),
            errors: Vec::new(),
            stopped_because: Vec::new(),
            replica: None,
        }
    }

    /// `usher sync`'s exit code: 0 success (or a clean dry run), 3 a safety limit
    /// stopped it (a dry run that would be stopped too), 1 any failure.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            SyncStatus::Stopped => 3,
            SyncStatus::Failed | SyncStatus::Running => 1,
            SyncStatus::Planned if self.targets.iter().any(TargetReport::over_limit) => 3,
            SyncStatus::Succeeded | SyncStatus::Planned => 0,
        }
    }

    /// Write calls across all targets.
    pub fn writes(&self) -> u64 {
        self.targets.iter().map(|t| t.calls.writes).sum()
    }

    /// One line for logs, the terminal and the webhook.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "usher sync {} {}",
            self.id,
            match self.status {
                SyncStatus::Running => "is running",
                SyncStatus::Succeeded => "succeeded",
                SyncStatus::Planned => "planned (dry run, nothing changed)",
                SyncStatus::Stopped => "STOPPED by a safety limit (nothing changed)",
                SyncStatus::Failed => "FAILED",
            }
        );
        let _ = write!(
            s,
            " in {:.1}s: {} people, {} groups read",
            self.duration_ms as f64 / 1000.0,
            self.directory.people,
            self.directory.groups
        );
        for t in &self.targets {
            let _ = write!(s, "; {}: ", t.name);
            match (&t.error, t.applied) {
                (Some(_), _) => s.push_str("error"),
                (None, Some(c)) => {
                    let _ = write!(
                        s,
                        "{} changed, {} already so, {} failed, {} skipped",
                        c.done, c.already_done, c.failed, c.skipped
                    );
                }
                (None, None) => {
                    let _ = write!(s, "{} planned", t.planned_changes());
                }
            }
        }
        if let Some(by) = &self.approved_by {
            let _ = write!(s, " (limits overridden by {by})");
        }
        s
    }
}

/// A new time-sortable sync id: `20261129T010503123Z-3fa9` (UTC to the millisecond,
/// then 16 random bits so two runs in one millisecond differ).
pub fn new_sync_id(now: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | '.'))
        .collect();
    format!("{stamp}-{:04x}", rand::random::<u16>())
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Where reports live: `<state dir>/reports`.
pub fn reports_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("reports")
}

/// Writes `<state dir>/reports/<id>.json` (temp file + rename, so readers never see
/// half a report). Returns the path.
pub fn write_report(state_dir: &Path, report: &SyncReport) -> std::io::Result<PathBuf> {
    let dir = reports_dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", report.id));
    let tmp = dir.join(format!(".{}.json.tmp", report.id));
    let body = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The readable plan of a dry run: one line per operation grouped by target, then a
/// summary per target and the safety verdict.
pub fn render_plan(report: &SyncReport) -> String {
    let mut out = String::new();
    let d = &report.directory;
    let _ = writeln!(
        out,
        "Plan {} from {}: {} people ({} active), {} groups, {} memberships read; {} people skipped",
        report.id, d.source, d.people, d.active_people, d.groups, d.memberships, d.skipped
    );
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for t in &report.targets {
        let _ = writeln!(out, "\n== target {} ==", t.name);
        if let Some(e) = &t.error {
            let _ = writeln!(out, "  not planned: {e}");
            continue;
        }
        if t.operations.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        } else {
            let _ = writeln!(out, "  {:<14} {:<32} DETAIL", "OPERATION", "ACCOUNT/GROUP");
        }
        for op in &t.operations {
            let (subject, detail) = describe(op);
            let _ = writeln!(out, "  {:<14} {:<32} {}", op.kind(), subject, detail);
        }
        if t.operations_truncated {
            let _ = writeln!(
                out,
                "  ... (list cut at {MAX_LISTED}; the counts below cover everything)"
            );
        }
        for n in &t.denied {
            let _ = writeln!(out, "  denied         {:<32} {}", n.subject, n.message);
        }
        let counts: Vec<String> = t.planned.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let _ = writeln!(
            out,
            "  summary: {}",
            if counts.is_empty() {
                "no changes".to_string()
            } else {
                counts.join(", ")
            }
        );
        if !t.notes.is_empty() {
            let _ = writeln!(
                out,
                "  {} note(s) in the JSON report (--json)",
                t.notes.len()
            );
        }
        if let Some(s) = &t.safety {
            if s.passed() {
                let _ = writeln!(
                    out,
                    "  safety: ok ({} deprovisionings of {} managed active accounts, {} changes)",
                    s.counts.deprovisions, s.counts.managed_active_accounts, s.counts.changes
                );
            } else {
                for h in &s.hits {
                    let _ = writeln!(out, "  safety: LIMIT EXCEEDED: {h}");
                }
            }
        }
    }
    let total: usize = report
        .targets
        .iter()
        .map(TargetReport::planned_changes)
        .sum();
    let _ = writeln!(
        out,
        "\n{total} change(s) planned across {} target(s); nothing was changed (dry run).",
        report.targets.len()
    );
    out
}

/// (subject, detail) of one operation for the table (also the admin plan preview).
pub fn describe(op: &Operation) -> (String, String) {
    match op {
        Operation::CreateGroup { group } => (group.clone(), String::new()),
        Operation::CreateUser { account, .. } => (
            account.username.clone(),
            format!("{} <{}>", account.display_name, account.email),
        ),
        Operation::Link {
            username, person, ..
        } => (
            username.clone(),
            format!("owned by {}:{}", person.source, person.id),
        ),
        Operation::Reactivate { username, .. } | Operation::Deactivate { username, .. } => {
            (username.clone(), String::new())
        }
        Operation::UpdateUser {
            username, changes, ..
        } => {
            let mut parts = Vec::new();
            for (field, c) in [
                ("username", &changes.username),
                ("email", &changes.email),
                ("display name", &changes.display_name),
            ] {
                if let Some(c) = c {
                    parts.push(format!("{field} {:?} -> {:?}", c.before, c.after));
                }
            }
            (username.clone(), parts.join(", "))
        }
        Operation::AddMember { group, username } => (username.clone(), format!("+ {group}")),
        Operation::RemoveMember {
            group,
            username,
            why,
        } => (username.clone(), format!("- {group} ({why:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ExternalId;
    use crate::provision::plan::NewAccount;
    use std::time::Duration;

    #[test]
    fn ids_sort_by_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = new_sync_id(t0);
        let b = new_sync_id(t0 + Duration::from_millis(1));
        let c = new_sync_id(t0 + Duration::from_secs(3600));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a.starts_with("20270115T"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn exit_codes_and_table() {
        let mut r = SyncReport::begin("x".into(), Trigger::Cli, true, None);
        r.status = SyncStatus::Planned;
        r.targets.push(TargetReport {
            name: "jira".into(),
            planned: [("create-user".to_string(), 1)].into(),
            operations: vec![Operation::CreateUser {
                person: ExternalId {
                    source: "google".into(),
                    id: "1".into(),
                },
                account: Box::new(NewAccount {
                    username: "ann".into(),
                    email: "ann@example.com".into(),
                    display_name: "Ann Lee".into(),
                    given_name: "Ann".into(),
                    family_name: "Lee".into(),
                }),
            }],
            ..TargetReport::default()
        });
        assert_eq!(r.exit_code(), 0);
        let table = render_plan(&r);
        assert!(table.contains("create-user"), "{table}");
        assert!(table.contains("Ann Lee <ann@example.com>"), "{table}");
        assert!(table.contains("1 change(s) planned"), "{table}");
        r.status = SyncStatus::Stopped;
        assert_eq!(r.exit_code(), 3);
        r.status = SyncStatus::Failed;
        assert_eq!(r.exit_code(), 1);
        r.status = SyncStatus::Succeeded;
        assert_eq!(r.exit_code(), 0);
        assert!(r.summary_line().contains("jira: 1 planned"));
    }
}
