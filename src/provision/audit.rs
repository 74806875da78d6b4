//! The audit log: one JSON line per change (time, actor, sync id, target, operation,
//! before -> after, result) in `<state dir>/audit.jsonl`, appended with O_APPEND, and
//! a filtering reader for the admin console. Records what happened; decides nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::plan::Operation;

/// Who caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Actor {
    /// Login-time provisioning.
    Login,
    /// A scheduled or `usher sync` run.
    Sync,
    /// An administrator (admin console "Synchronize").
    Admin,
    /// An inbound SCIM push from an identity provider (`by` = `scim:<idp>`).
    Scim,
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AuditResult {
    Ok,
    /// It was already so (idempotent write found nothing to do).
    Unchanged,
    Failed {
        error: String,
    },
    /// Not attempted because something it depends on failed.
    Skipped {
        reason: String,
    },
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub actor: Actor,
    /// Admin e-mail or signed-in person, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<String>,
    pub target: String,
    /// [`Operation::kind`].
    pub operation: String,
    /// The account concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `source:id` of the person, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(flatten)]
    pub result: AuditResult,
}

/// Who/when/where of a batch of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    pub actor: Actor,
    pub by: Option<String>,
    pub sync_id: Option<String>,
    pub target: String,
}

impl AuditEntry {
    /// The line for one operation and its result.
    pub fn for_operation(
        cx: &AuditContext,
        now: SystemTime,
        op: &Operation,
        result: AuditResult,
    ) -> Self {
        let (before, after) = before_after(op);
        let (group, person) = match op {
            Operation::CreateGroup { group }
            | Operation::AddMember { group, .. }
            | Operation::RemoveMember { group, .. } => (Some(group.clone()), None),
            Operation::CreateUser { person, .. }
            | Operation::Link { person, .. }
            | Operation::UpdateUser { person, .. } => (None, Some(person)),
            Operation::Reactivate { person, .. } | Operation::Deactivate { person, .. } => {
                (None, person.as_ref())
            }
        };
        AuditEntry {
            time: humantime::format_rfc3339_millis(now).to_string(),
            actor: cx.actor,
            by: cx.by.clone(),
            sync_id: cx.sync_id.clone(),
            target: cx.target.clone(),
            operation: op.kind().to_string(),
            username: op.username().map(str::to_string),
            group,
            person: person.map(|p| format!("{}:{}", p.source, p.id)),
            before,
            after,
            result,
        }
    }

    /// The entry's time, if it parses.
    pub fn at(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.time).ok()
    }
}

fn before_after(op: &Operation) -> (Option<Value>, Option<Value>) {
    match op {
        Operation::CreateGroup { group } => (None, Some(json!({ "group": group }))),
        Operation::CreateUser { account, .. } => (None, Some(json!(account))),
        Operation::Link { username, key, .. } => {
            (None, Some(json!({ "linked": username, "key": key })))
        }
        Operation::Reactivate { .. } => (
            Some(json!({"active": false})),
            Some(json!({"active": true})),
        ),
        Operation::Deactivate { .. } => (
            Some(json!({"active": true})),
            Some(json!({"active": false})),
        ),
        Operation::UpdateUser { changes, .. } => {
            let mut b = serde_json::Map::new();
            let mut a = serde_json::Map::new();
            for (field, c) in [
                ("username", &changes.username),
                ("email", &changes.email),
                ("display_name", &changes.display_name),
            ] {
                if let Some(c) = c {
                    b.insert(field.into(), json!(c.before));
                    a.insert(field.into(), json!(c.after));
                }
            }
            (Some(Value::Object(b)), Some(Value::Object(a)))
        }
        Operation::AddMember { .. } => (
            Some(json!({"member": false})),
            Some(json!({"member": true})),
        ),
        Operation::RemoveMember { why, .. } => (
            Some(json!({"member": true})),
            Some(json!({"member": false, "why": why})),
        ),
    }
}

/// An audit log failure; names the file and the fix.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {op} failed ({source}); check that [state] dir is writable and the disk is not full")]
pub struct AuditError {
    pub path: PathBuf,
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Which entries to read back (all conditions must hold; `None` = any).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Matches the username or the person (`source:id`), case-insensitively.
    pub person: Option<String>,
    pub target: Option<String>,
    pub operation: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Keep only the newest this many.
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether one entry passes.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_ref()
                .is_none_or(|w| have.is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let person_ok = self.person.as_ref().is_none_or(|p| {
            e.username
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(p))
                || e.person
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(p))
        });
        let time_ok = match (self.since, self.until) {
            (None, None) => true,
            (since, until) => e
                .at()
                .is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)),
        };
        person_ok
            && eq(&self.target, Some(&e.target))
            && eq(&self.operation, Some(&e.operation))
            && time_ok
    }
}

/// Whether the file is non-empty and does not end with a newline.
fn ends_torn(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The append-only audit file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// The file name inside the state directory.
    pub const FILE: &'static str = "audit.jsonl";

    /// Opens (creating) `<dir>/audit.jsonl` for appending.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let path = dir.join(Self::FILE);
        let err = |op| {
            let path = path.clone();
            move |source| AuditError { path, op, source }
        };
        fs::create_dir_all(dir).map_err(err("create the state directory"))?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(err("open"))?;
        // A crash may have left a torn last line: end it so the next entry stays whole.
        if ends_torn(&path).map_err(err("read the end"))? {
            file.write_all(b"\n").map_err(err("append"))?;
        }
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends entries as one write (O_APPEND keeps concurrent writers' lines whole)
    /// and flushes them to disk.
    pub fn append(&self, entries: &[AuditEntry]) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |op| {
            let path = self.path.clone();
            move |source| AuditError { path, op, source }
        };
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e)
                .map_err(std::io::Error::other)
                .map_err(err("encode"))?;
            buf.push(b'\n');
        }
        let mut f = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))
            .map_err(err("lock"))?;
        f.write_all(&buf).map_err(err("append"))?;
        f.sync_data().map_err(err("fsync"))
    }

    /// Reads the entries passing `filter`, oldest first. Lines that do not parse
    /// (a torn last line after a crash) are skipped.
    pub fn read(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let err = |op| {
            let path = self.path.clone();
            move |source| AuditError { path, op, source }
        };
        let f = File::open(&self.path).map_err(err("open for reading"))?;
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(err("read"))?;
            if let Ok(e) = serde_json::from_str::<AuditEntry>(&line) {
                if filter.matches(&e) {
                    out.push(e);
                }
            }
        }
        if let Some(n) = filter.limit {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ExternalId;
    use crate::provision::plan::Removal;
    use std::time::Duration;

    fn cx() -> AuditContext {
        AuditContext {
            actor: Actor::Sync,
            by: None,
            sync_id: Some("s1".into()),
            target: "jira".into(),
        }
    }

    #[test]
    fn append_read_and_filter() {
        let tmp = crate::test_support::temp_dir("audit");
        let dir = tmp.path().join("state");
        let log = AuditLog::open(&dir).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let deact = Operation::Deactivate {
            username: "Ann".into(),
            person: Some(ExternalId {
                source: "google".into(),
                id: "7".into(),
            }),
        };
        let rm = Operation::RemoveMember {
            group: "eng".into(),
            username: "bo".into(),
            why: Removal::NotJustified,
        };
        log.append(&[
            AuditEntry::for_operation(&cx(), t0, &deact, AuditResult::Ok),
            AuditEntry::for_operation(
                &cx(),
                t0 + Duration::from_secs(60),
                &rm,
                AuditResult::Failed {
                    error: "boom".into(),
                },
            ),
        ])
        .unwrap();
        // A torn line from a crash does not break reading.
        OpenOptions::new()
            .append(true)
            .open(dir.join(AuditLog::FILE))
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        drop(log);
        let log = AuditLog::open(&dir).unwrap();
        log.append(&[AuditEntry::for_operation(
            &cx(),
            t0,
            &rm,
            AuditResult::Unchanged,
        )])
        .unwrap();
        let all = log.read(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].result, AuditResult::Unchanged);
        assert_eq!(all[0].before, Some(json!({"active": true})));
        assert_eq!(all[0].person.as_deref(), Some("google:7"));
        assert_eq!(
            all[1].result,
            AuditResult::Failed {
                error: "boom".into()
            }
        );
        let by_person = AuditFilter {
            person: Some("ann".into()),
            ..Default::default()
        };
        assert_eq!(log.read(&by_person).unwrap().len(), 1);
        let by_id = AuditFilter {
            person: Some("google:7".into()),
            ..Default::default()
        };
        assert_eq!(log.read(&by_id).unwrap()[0].operation, "deactivate");
        let by_op = AuditFilter {
            operation: Some("remove-member".into()),
            ..Default::default()
        };
        assert_eq!(log.read(&by_op).unwrap()[0].group.as_deref(), Some("eng"));
        let late = AuditFilter {
            since: Some(t0 + Duration::from_secs(30)),
            ..Default::default()
        };
        assert_eq!(log.read(&late).unwrap().len(), 1);
        assert_eq!(
            log.read(&late).unwrap()[0].result,
            AuditResult::Failed {
                error: "boom".into()
            }
        );
        let early = AuditFilter {
            until: Some(t0 + Duration::from_secs(30)),
            ..Default::default()
        };
        assert_eq!(log.read(&early).unwrap()[0].operation, "deactivate");
        let other = AuditFilter {
            target: Some("confluence".into()),
            ..Default::default()
        };
        assert!(log.read(&other).unwrap().is_empty());
        let newest = AuditFilter {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(log.read(&newest).unwrap()[0].operation, "remove-member");
    }
}
