//! Identity link stores: where "which person owns which account" is remembered —
//! in memory, or in a crash-safe append-only JSON-lines file under `[state] dir`.
//! Owns durability only; the decision rules live in `links`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::identity::ExternalId;

use super::links::LinkedAccount;

/// A link store failure; names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("identity links {path}: {op} failed ({source}); check that [state] dir is writable and the disk is not full")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("identity links {path}: line {line} is not a link record ({message}); restore the file from a backup or move it away to start over")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("identity links: the store lock was poisoned by a crashed writer; restart usher")]
    Poisoned,
}

/// Where identity links live. Synchronous and cheap: a local file (or later Redis).
pub trait LinkStore: Send + Sync {
    /// The link of one person in one target.
    fn get(&self, target: &str, id: &ExternalId) -> Result<Option<LinkedAccount>, LinkError>;
    /// Every link of one target (what the planner needs).
    fn for_target(&self, target: &str) -> Result<BTreeMap<ExternalId, LinkedAccount>, LinkError>;
    /// Records (or replaces) a link; durable when this returns.
    fn put(&self, target: &str, id: &ExternalId, account: &LinkedAccount) -> Result<(), LinkError>;
    /// Forgets a link; durable when this returns.
    fn remove(&self, target: &str, id: &ExternalId) -> Result<(), LinkError>;
}

type LinkMap = BTreeMap<(String, ExternalId), LinkedAccount>;

fn get_in(map: &LinkMap, target: &str, id: &ExternalId) -> Option<LinkedAccount> {
    map.get(&(target.to_string(), id.clone())).cloned()
}

fn for_target_in(map: &LinkMap, target: &str) -> BTreeMap<ExternalId, LinkedAccount> {
    map.iter()
        .filter(|((t, _), _)| t == target)
        .map(|((_, id), a)| (id.clone(), a.clone()))
        .collect()
}

/// Links in memory only (tests, and single-run tools).
#[derive(Debug, Default)]
pub struct MemoryLinkStore {
    map: Mutex<LinkMap>,
}

impl LinkStore for MemoryLinkStore {
    fn get(&self, target: &str, id: &ExternalId) -> Result<Option<LinkedAccount>, LinkError> {
        let m = self.map.lock().map_err(|_| LinkError::Poisoned)?;
        Ok(get_in(&m, target, id))
    }
    fn for_target(&self, target: &str) -> Result<BTreeMap<ExternalId, LinkedAccount>, LinkError> {
        let m = self.map.lock().map_err(|_| LinkError::Poisoned)?;
        Ok(for_target_in(&m, target))
    }
    fn put(&self, target: &str, id: &ExternalId, account: &LinkedAccount) -> Result<(), LinkError> {
        let mut m = self.map.lock().map_err(|_| LinkError::Poisoned)?;
        m.insert((target.to_string(), id.clone()), account.clone());
        Ok(())
    }
    fn remove(&self, target: &str, id: &ExternalId) -> Result<(), LinkError> {
        let mut m = self.map.lock().map_err(|_| LinkError::Poisoned)?;
        m.remove(&(target.to_string(), id.clone()));
        Ok(())
    }
}

/// One line of the log: a put (username present) or a removal (`gone`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    target: String,
    source: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
}

struct FileInner {
    file: File,
    map: LinkMap,
    lines: usize,
}

/// Links in `<state dir>/links.jsonl`: an append-only JSON-lines log, fsynced per
/// write, replayed at open (a torn last line from a crash is dropped), compacted by
/// writing a new file, fsyncing it and renaming it over the old one.
pub struct FileLinkStore {
    path: PathBuf,
    inner: Mutex<FileInner>,
}

impl std::fmt::Debug for FileLinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileLinkStore({})", self.path.display())
    }
}

impl FileLinkStore {
    /// The log file name inside the state directory.
    pub const FILE: &'static str = "links.jsonl";

    /// Opens (creating if needed) the store in `dir` and replays the log.
    pub fn open(dir: &Path) -> Result<Self, LinkError> {
        let path = dir.join(Self::FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| LinkError::Io { path, op, source }
        };
        fs::create_dir_all(dir).map_err(io("create the state directory"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io("read"))?;
        let (map, lines, good_len) = replay(&path, &text)?;
        if good_len < text.len() {
            tracing::warn!(path = %path.display(), dropped = text.len() - good_len, "identity links: dropped a torn last line left by a crash");
            file.set_len(good_len as u64)
                .map_err(io("truncate a torn line"))?;
            file.sync_all().map_err(io("fsync"))?;
        }
        let store = FileLinkStore {
            path,
            inner: Mutex::new(FileInner { file, map, lines }),
        };
        Ok(store)
    }

    fn append(&self, inner: &mut FileInner, rec: &Record) -> Result<(), LinkError> {
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| LinkError::Io { path, op, source }
        };
        let mut line = serde_json::to_vec(rec).map_err(|e| LinkError::Io {
            path: self.path.clone(),
            op: "encode",
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        inner.file.write_all(&line).map_err(io("append"))?;
        inner.file.sync_data().map_err(io("fsync"))?;
        inner.lines += 1;
        Ok(())
    }

    /// Compacts once dead lines outnumber live ones (plus slack).
    fn maybe_compact(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        if inner.lines > 2 * inner.map.len() + 1024 {
            self.compact_locked(inner)?;
        }
        Ok(())
    }

    /// Rewrites the log with one line per live link (write new, fsync, rename).
    pub fn compact(&self) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.compact_locked(&mut inner)
    }

    fn compact_locked(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| LinkError::Io { path, op, source }
        };
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = Vec::new();
        for ((target, id), acct) in &inner.map {
            let rec = Record {
                target: target.clone(),
                source: id.source.clone(),
                id: id.id.clone(),
                username: Some(acct.username.clone()),
                key: acct.key.clone(),
                gone: false,
            };
            serde_json::to_writer(&mut out, &rec).map_err(|e| LinkError::Io {
                path: tmp.clone(),
                op: "encode",
                source: std::io::Error::other(e),
            })?;
            out.push(b'\n');
        }
        let mut f = File::create(&tmp).map_err(io("create the compacted copy"))?;
        f.write_all(&out).map_err(io("write the compacted copy"))?;
        f.sync_all().map_err(io("fsync the compacted copy"))?;
        fs::rename(&tmp, &self.path).map_err(io("rename the compacted copy"))?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        inner.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io("reopen after compaction"))?;
        inner.lines = inner.map.len();
        Ok(())
    }
}

/// Replays the log; returns the map, the number of good lines and the byte length
/// of the good prefix. Only the last line may be damaged (a torn write).
fn replay(path: &Path, text: &[u8]) -> Result<(LinkMap, usize, usize), LinkError> {
    let mut map = LinkMap::new();
    let (mut lines, mut pos) = (0, 0);
    let mut n = 0;
    while pos < text.len() {
        n += 1;
        let end = text[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i);
        let raw = &text[pos..end.unwrap_or(text.len())];
        let next = end.map_or(text.len(), |e| e + 1);
        let parsed = serde_json::from_slice::<Record>(raw);
        let rec = match (parsed, end) {
            (Ok(r), Some(_)) => r,
            // The last line, complete or not, that does not parse: a torn write.
            (_, None) => return Ok((map, lines, pos)),
            (Err(_), Some(_)) if next >= text.len() => return Ok((map, lines, pos)),
            (Err(e), Some(_)) => {
                return Err(LinkError::Corrupt {
                    path: path.to_path_buf(),
                    line: n,
                    message: e.to_string(),
                })
            }
        };
        let k = (
            rec.target,
            ExternalId {
                source: rec.source,
                id: rec.id,
            },
        );
        match (rec.gone, rec.username) {
            (false, Some(username)) => {
                map.insert(
                    k,
                    LinkedAccount {
                        username,
                        key: rec.key,
                    },
                );
            }
            _ => {
                map.remove(&k);
            }
        }
        lines += 1;
        pos = next;
    }
    Ok((map, lines, pos))
}

impl LinkStore for FileLinkStore {
    fn get(&self, target: &str, id: &ExternalId) -> Result<Option<LinkedAccount>, LinkError> {
        let inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        Ok(get_in(&inner.map, target, id))
    }
    fn for_target(&self, target: &str) -> Result<BTreeMap<ExternalId, LinkedAccount>, LinkError> {
        let inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        Ok(for_target_in(&inner.map, target))
    }
    fn put(&self, target: &str, id: &ExternalId, account: &LinkedAccount) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        let k = (target.to_string(), id.clone());
        if inner.map.get(&k) == Some(account) {
            return Ok(());
        }
        let rec = Record {
            target: target.to_string(),
            source: id.source.clone(),
            id: id.id.clone(),
            username: Some(account.username.clone()),
            key: account.key.clone(),
            gone: false,
        };
        self.append(&mut inner, &rec)?;
        inner.map.insert(k, account.clone());
        self.maybe_compact(&mut inner)
    }
    fn remove(&self, target: &str, id: &ExternalId) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        let k = (target.to_string(), id.clone());
        if !inner.map.contains_key(&k) {
            return Ok(());
        }
        let rec = Record {
            target: target.to_string(),
            source: id.source.clone(),
            id: id.id.clone(),
            username: None,
            key: None,
            gone: true,
        };
        self.append(&mut inner, &rec)?;
        inner.map.remove(&k);
        self.maybe_compact(&mut inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xid(id: &str) -> ExternalId {
        ExternalId {
            source: "google".into(),
            id: id.into(),
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("usher-links-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn la(u: &str) -> LinkedAccount {
        LinkedAccount {
            username: u.into(),
            key: Some(format!("K-{u}")),
        }
    }

    #[test]
    fn file_store_survives_reopen_and_removal() {
        let dir = tmpdir("reopen");
        {
            let s = FileLinkStore::open(&dir).unwrap();
            s.put("jira", &xid("1"), &la("ann")).unwrap();
            s.put("jira", &xid("2"), &la("bo")).unwrap();
            s.put("confluence", &xid("1"), &la("ann-c")).unwrap();
            s.put("jira", &xid("1"), &la("ann.b")).unwrap();
            s.remove("jira", &xid("2")).unwrap();
        }
        let s = FileLinkStore::open(&dir).unwrap();
        assert_eq!(s.get("jira", &xid("1")).unwrap(), Some(la("ann.b")));
        assert_eq!(s.get("jira", &xid("2")).unwrap(), None);
        let all = s.for_target("confluence").unwrap();
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            vec![(xid("1"), la("ann-c"))]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_last_line_is_dropped_and_later_writes_are_clean() {
        let dir = tmpdir("torn");
        {
            let s = FileLinkStore::open(&dir).unwrap();
            s.put("jira", &xid("1"), &la("ann")).unwrap();
        }
        let path = dir.join(FileLinkStore::FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"target":"jira","source":"google","id":"2","user"#)
            .unwrap();
        drop(f);
        {
            let s = FileLinkStore::open(&dir).unwrap();
            assert_eq!(s.get("jira", &xid("2")).unwrap(), None);
            s.put("jira", &xid("3"), &la("cy")).unwrap();
        }
        let s = FileLinkStore::open(&dir).unwrap();
        assert_eq!(s.get("jira", &xid("1")).unwrap(), Some(la("ann")));
        assert_eq!(s.get("jira", &xid("3")).unwrap(), Some(la("cy")));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_the_line() {
        let dir = tmpdir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let good = r#"{"target":"jira","source":"google","id":"1","username":"ann"}"#;
        fs::write(
            dir.join(FileLinkStore::FILE),
            format!("{good}\nnot json\n{good}\n"),
        )
        .unwrap();
        let err = FileLinkStore::open(&dir).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_live_links_and_shrinks_the_log() {
        let dir = tmpdir("compact");
        let s = FileLinkStore::open(&dir).unwrap();
        for i in 0..20 {
            s.put("jira", &xid("1"), &la(&format!("ann{i}"))).unwrap();
        }
        s.put("jira", &xid("2"), &la("bo")).unwrap();
        s.compact().unwrap();
        let text = fs::read_to_string(dir.join(FileLinkStore::FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        drop(s);
        let s = FileLinkStore::open(&dir).unwrap();
        assert_eq!(s.get("jira", &xid("1")).unwrap(), Some(la("ann19")));
        assert_eq!(s.get("jira", &xid("2")).unwrap(), Some(la("bo")));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_store_round_trip() {
        let s = MemoryLinkStore::default();
        s.put("jira", &xid("1"), &la("ann")).unwrap();
        assert_eq!(s.for_target("jira").unwrap().len(), 1);
        s.remove("jira", &xid("1")).unwrap();
        assert_eq!(s.get("jira", &xid("1")).unwrap(), None);
    }
}
