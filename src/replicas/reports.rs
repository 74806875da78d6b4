//! Sync reports shared by all replicas: each finished report as JSON at
//! `usher:sync:report:{id}` plus the list `usher:sync:reports` of the last [`KEEP`]
//! ids, newest first, trimmed atomically (a Lua script drops the reports that fall
//! off the list). So `/_usher/admin/sync/{id}` and `.../last` answer the same on every
//! replica. Also the progress of the run in progress. Stores and reads; the file copy
//! under `[state] dir` is still written by `sync::run`.

use serde::{de::DeserializeOwned, Serialize};

use super::{Shared, SharedError};
use crate::sync::report::SyncReport;
use crate::sync::run::ProgressSnapshot;

/// Reports kept in Redis.
pub const KEEP: usize = 50;

/// Stores a report, puts its id first in the list and drops what falls off.
/// KEYS[1] list; ARGV: id, json, keep, report key prefix.
const PUT: &str = r#"
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[2])
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('LPUSH', KEYS[1], ARGV[1])
local keep = tonumber(ARGV[3])
local old = redis.call('LRANGE', KEYS[1], keep, -1)
for _, id in ipairs(old) do redis.call('DEL', ARGV[4] .. id) end
redis.call('LTRIM', KEYS[1], 0, keep - 1)
return #old
"#;

/// The shared report store (one per replica; all see the same reports).
#[derive(Debug, Clone)]
pub struct SharedReports {
    shared: Shared,
    prefix: String,
    keep: usize,
}

impl SharedReports {
    /// The store under the `usher:sync:` keys.
    pub fn new(shared: Shared) -> Self {
        Self::with_prefix(shared, "usher:sync:", KEEP)
    }

    /// The store under another prefix, keeping `keep` reports (tests).
    pub fn with_prefix(shared: Shared, prefix: &str, keep: usize) -> Self {
        SharedReports {
            shared,
            prefix: prefix.to_string(),
            keep: keep.max(1),
        }
    }

    fn list_key(&self) -> String {
        format!("{}reports", self.prefix)
    }

    fn report_prefix(&self) -> String {
        format!("{}report:", self.prefix)
    }

    fn progress_key(&self) -> String {
        format!("{}progress", self.prefix)
    }

    /// Stores a finished report as the newest.
    pub async fn put(&self, report: &SyncReport) -> Result<(), SharedError> {
        let json = serde_json::to_string(report)?;
        let _: i64 = self
            .shared
            .eval(
                PUT,
                &[self.list_key().as_str()],
                &[
                    report.id.clone(),
                    json,
                    self.keep.to_string(),
                    self.report_prefix(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SharedError> {
        match self.shared.get(key).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    /// The report with this id, if it is among the last [`KEEP`].
    pub async fn get(&self, id: &str) -> Result<Option<SyncReport>, SharedError> {
        self.get_json(&format!("{}{id}", self.report_prefix()))
            .await
    }

    /// Ids of the kept reports, newest first.
    pub async fn ids(&self) -> Result<Vec<String>, SharedError> {
        let mut conn = self.shared.conn();
        Ok(redis::cmd("LRANGE")
            .arg(self.list_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?)
    }

    /// The newest report.
    pub async fn last(&self) -> Result<Option<SyncReport>, SharedError> {
        let mut conn = self.shared.conn();
        let id: Option<String> = redis::cmd("LINDEX")
            .arg(self.list_key())
            .arg(0)
            .query_async(&mut conn)
            .await?;
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Every kept report, newest first.
    pub async fn recent(&self) -> Result<Vec<SyncReport>, SharedError> {
        let ids = self.ids().await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for id in &ids {
            cmd.arg(format!("{}{id}", self.report_prefix()));
        }
        let mut conn = self.shared.conn();
        let raw: Vec<Option<String>> = cmd.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(raw.len());
        for json in raw.into_iter().flatten() {
            out.push(serde_json::from_str(&json)?);
        }
        Ok(out)
    }

    /// Publishes the progress of the run `id` (read by the other replicas' status).
    pub async fn set_progress(&self, id: &str, p: &ProgressSnapshot) -> Result<(), SharedError> {
        let json = serde_json::to_string(&Tagged { id, progress: p })?;
        let mut conn = self.shared.conn();
        let () = redis::cmd("SET")
            .arg(self.progress_key())
            .arg(json)
            .arg("EX")
            .arg(3600)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The last published progress of run `id`.
    pub async fn progress(&self, id: &str) -> Result<Option<ProgressSnapshot>, SharedError> {
        let t: Option<OwnedTagged> = self.get_json(&self.progress_key()).await?;
        Ok(t.filter(|t| t.id == id).map(|t| t.progress))
    }
}

#[derive(Serialize)]
struct Tagged<'a> {
    id: &'a str,
    progress: &'a ProgressSnapshot,
}

#[derive(serde::Deserialize)]
struct OwnedTagged {
    id: String,
    progress: ProgressSnapshot,
}
