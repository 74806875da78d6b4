//! Identity link stores: where "which person owns which account" is remembered —
//! in memory, or in a crash-safe append-only JSON-lines file under `[state] dir`.
//! Owns durability only; the decision rules live in `links`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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
    #[error("identity links in redis: {op} failed ({message}); check [state] redis_url and that redis is running")]
    Redis { op: &'static str, message: String },
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
    /// Records a link only if the person has none in this target yet and returns
    /// `None`; otherwise leaves the existing link alone and returns it. Atomic in the
    /// shared (Redis) store, so two replicas can never link one person twice; this
    /// default (look, then put) is atomic only against the caller's own writes.
    fn put_new(
        &self,
        target: &str,
        id: &ExternalId,
        account: &LinkedAccount,
    ) -> Result<Option<LinkedAccount>, LinkError> {
        if let Some(existing) = self.get(target, id)? {
            return Ok(Some(existing));
        }
        self.put(target, id, account)?;
        Ok(None)
    }
}

/// The identity-link store for this config: shared through Redis when `[state]
/// redis_url` is set (several replicas; links of an earlier single-replica
/// `links.jsonl` are imported once), else the file under `[state] dir`.
pub fn open_configured(
    settings: &crate::config::Settings,
) -> Result<std::sync::Arc<dyn LinkStore>, LinkError> {
    let state = &settings.state;
    Ok(match &state.redis_url {
        Some(url) => {
            let store = super::redis_links::RedisLinkStore::connect(url)?;
            let targets: Vec<&str> = settings.targets.iter().map(|t| t.name.as_str()).collect();
            store.import_file_once(&state.dir, &targets)?;
            std::sync::Arc::new(store)
        }
        None => std::sync::Arc::new(FileLinkStore::open(&state.dir)?),
    })
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
    fn put_new(
        &self,
        target: &str,
        id: &ExternalId,
        account: &LinkedAccount,
    ) -> Result<Option<LinkedAccount>, LinkError> {
        let mut m = self.map.lock().map_err(|_| LinkError::Poisoned)?;
        let k = (target.to_string(), id.clone());
        if let Some(existing) = m.get(&k) {
            return Ok(Some(existing.clone()));
        }
        m.insert(k, account.clone());
        Ok(None)
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
    /// The account's creation is not confirmed yet (see `LinkedAccount::pending`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pending: bool,
}

impl Record {
    /// The line that records `account` as `id`'s link in `target`.
    fn link(target: &str, id: &ExternalId, account: &LinkedAccount) -> Self {
        Record {
            target: target.to_string(),
            source: id.source.clone(),
            id: id.id.clone(),
            username: Some(account.username.clone()),
            key: account.key.clone(),
            gone: false,
            pending: account.pending,
        }
    }
}

struct FileInner {
    /// Read + append handle on the file as it was when last (re)loaded.
    file: File,
    map: LinkMap,
    /// Lines in the current file (live and dead).
    lines: usize,
    /// Bytes of the current file already replayed into `map`.
    offset: u64,
    /// Identity of the current file; a change means another process compacted it.
    ino: u64,
}

/// Links in `<state dir>/links.jsonl`: an append-only JSON-lines log, fsynced per
/// write, replayed at open (a torn last line from a crash is dropped), compacted by
/// writing a new file, fsyncing it and renaming it over the old one.
///
/// Several processes may share the directory (`usher serve` and an `usher sync` run):
/// each catches up with lines the others appended before every read and write,
/// appends under a shared `flock` on `links.lock`, and compacts only under an
/// exclusive one, reloading when another process has replaced the file.
pub struct FileLinkStore {
    path: PathBuf,
    lock: File,
    inner: Mutex<FileInner>,
}

impl std::fmt::Debug for FileLinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileLinkStore({})", self.path.display())
    }
}

#[cfg(unix)]
fn ino_of(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn ino_of(_: &fs::Metadata) -> u64 {
    0
}

/// How `with_lock` locks `links.lock`.
#[derive(Clone, Copy)]
enum LockMode {
    /// Appending: many at once, never during a compaction.
    Shared,
    /// Compacting: alone; skipped (Ok(None)) when someone else holds the lock.
    ExclusiveIfFree,
}

#[cfg(unix)]
fn lock_file(f: &File, mode: LockMode) -> std::io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    let op = match mode {
        LockMode::Shared => FlockOperation::LockShared,
        LockMode::ExclusiveIfFree => FlockOperation::NonBlockingLockExclusive,
    };
    match flock(f, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(unix)]
fn unlock_file(f: &File) {
    let _ = rustix::fs::flock(f, rustix::fs::FlockOperation::Unlock);
}

#[cfg(not(unix))]
fn lock_file(_: &File, _: LockMode) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(not(unix))]
fn unlock_file(_: &File) {}

impl FileLinkStore {
    /// The log file name inside the state directory.
    pub const FILE: &'static str = "links.jsonl";
    /// The lock file name inside the state directory.
    pub const LOCK: &'static str = "links.lock";

    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> LinkError + '_ {
        move |source| LinkError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Opens (creating if needed) the store in `dir` and replays the log.
    pub fn open(dir: &Path) -> Result<Self, LinkError> {
        let path = dir.join(Self::FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| LinkError::Io { path, op, source }
        };
        fs::create_dir_all(dir).map_err(io("create the state directory"))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(Self::LOCK))
            .map_err(io("open the lock file"))?;
        let inner = load(&path, true)?;
        Ok(FileLinkStore {
            path,
            lock,
            inner: Mutex::new(inner),
        })
    }

    /// Catches up with what other processes wrote: a replaced file (compaction) is
    /// reloaded, lines appended since the last look are replayed.
    fn refresh(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        let meta = fs::metadata(&self.path).map_err(self.io("stat"))?;
        if ino_of(&meta) != inner.ino {
            *inner = load(&self.path, false)?;
            return Ok(());
        }
        if meta.len() <= inner.offset {
            return Ok(());
        }
        inner
            .file
            .seek(SeekFrom::Start(inner.offset))
            .map_err(self.io("seek"))?;
        let mut tail = Vec::new();
        inner.file.read_to_end(&mut tail).map_err(self.io("read"))?;
        // Only whole lines: a line still being written is picked up next time.
        let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let (n, _) = replay_into(
            &self.path,
            &tail[..whole],
            &mut inner.map,
            inner.lines,
            false,
        )?;
        inner.lines += n;
        inner.offset += whole as u64;
        Ok(())
    }

    fn append(&self, inner: &mut FileInner, rec: &Record) -> Result<(), LinkError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| LinkError::Io {
            path: self.path.clone(),
            op: "encode",
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        lock_file(&self.lock, LockMode::Shared).map_err(self.io("lock"))?;
        let r = (|| {
            // Under the shared lock nobody compacts: the file checked is the file written.
            self.refresh(inner)?;
            inner.file.write_all(&line).map_err(self.io("append"))?;
            inner.file.sync_data().map_err(self.io("fsync"))
        })();
        unlock_file(&self.lock);
        r
    }

    /// Compacts once dead lines outnumber live ones (plus slack).
    fn maybe_compact(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        if inner.lines > 2 * inner.map.len() + 1024 {
            self.compact_locked(inner)?;
        }
        Ok(())
    }

    /// Rewrites the log with one line per live link (write new, fsync, rename).
    /// Skipped while another process holds the lock (it will be done later).
    pub fn compact(&self) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.compact_locked(&mut inner)
    }

    fn compact_locked(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        if !lock_file(&self.lock, LockMode::ExclusiveIfFree).map_err(self.io("lock"))? {
            return Ok(());
        }
        let r = self.rewrite(inner);
        unlock_file(&self.lock);
        r
    }

    fn rewrite(&self, inner: &mut FileInner) -> Result<(), LinkError> {
        self.refresh(inner)?;
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
                pending: acct.pending,
            };
            serde_json::to_writer(&mut out, &rec).map_err(|e| LinkError::Io {
                path: tmp.clone(),
                op: "encode",
                source: std::io::Error::other(e),
            })?;
            out.push(b'\n');
        }
        let mut f = File::create(&tmp).map_err(self.io("create the compacted copy"))?;
        f.write_all(&out)
            .map_err(self.io("write the compacted copy"))?;
        f.sync_all().map_err(self.io("fsync the compacted copy"))?;
        fs::rename(&tmp, &self.path).map_err(self.io("rename the compacted copy"))?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        *inner = load(&self.path, false)?;
        Ok(())
    }
}

/// Opens the log and replays it from the start. `repair` truncates a torn last line
/// (only at open, when it can only be left by a crash).
fn load(path: &Path, repair: bool) -> Result<FileInner, LinkError> {
    let io = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| LinkError::Io { path, op, source }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io("open"))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io("read"))?;
    let mut map = LinkMap::new();
    let (lines, good_len) = replay_into(path, &text, &mut map, 0, true)?;
    if good_len < text.len() && repair {
        tracing::warn!(path = %path.display(), dropped = text.len() - good_len, "identity links: dropped a torn last line left by a crash");
        file.set_len(good_len as u64)
            .map_err(io("truncate a torn line"))?;
        file.sync_all().map_err(io("fsync"))?;
    }
    let ino = ino_of(&file.metadata().map_err(io("stat"))?);
    Ok(FileInner {
        file,
        map,
        lines,
        offset: good_len as u64,
        ino,
    })
}

/// Replays log text into `map`; returns the number of lines applied and the byte
/// length of the good prefix. With `last_may_tear`, a damaged last line (a torn
/// write) ends the replay quietly; any other damaged line is an error naming it.
/// `first_line` numbers the lines in messages.
fn replay_into(
    path: &Path,
    text: &[u8],
    map: &mut LinkMap,
    first_line: usize,
    last_may_tear: bool,
) -> Result<(usize, usize), LinkError> {
    let (mut lines, mut pos) = (0, 0);
    while pos < text.len() {
        let end = text[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i);
        let raw = &text[pos..end.unwrap_or(text.len())];
        let next = end.map_or(text.len(), |e| e + 1);
        let rec = match serde_json::from_slice::<Record>(raw) {
            Ok(r) if end.is_some() => r,
            Ok(_) if last_may_tear => return Ok((lines, pos)),
            Err(_) if last_may_tear && next >= text.len() => return Ok((lines, pos)),
            Ok(_) => return Ok((lines, pos)),
            Err(e) => {
                return Err(LinkError::Corrupt {
                    path: path.to_path_buf(),
                    line: first_line + lines + 1,
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
                        pending: rec.pending,
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
    Ok((lines, pos))
}

impl LinkStore for FileLinkStore {
    fn put_new(
        &self,
        target: &str,
        id: &ExternalId,
        account: &LinkedAccount,
    ) -> Result<Option<LinkedAccount>, LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.refresh(&mut inner)?;
        let k = (target.to_string(), id.clone());
        if let Some(existing) = inner.map.get(&k) {
            return Ok(Some(existing.clone()));
        }
        let rec = Record::link(target, id, account);
        self.append(&mut inner, &rec)?;
        inner.map.insert(k, account.clone());
        self.maybe_compact(&mut inner)?;
        Ok(None)
    }
    fn get(&self, target: &str, id: &ExternalId) -> Result<Option<LinkedAccount>, LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.refresh(&mut inner)?;
        Ok(get_in(&inner.map, target, id))
    }
    fn for_target(&self, target: &str) -> Result<BTreeMap<ExternalId, LinkedAccount>, LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.refresh(&mut inner)?;
        Ok(for_target_in(&inner.map, target))
    }
    fn put(&self, target: &str, id: &ExternalId, account: &LinkedAccount) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.refresh(&mut inner)?;
        let k = (target.to_string(), id.clone());
        if inner.map.get(&k) == Some(account) {
            return Ok(());
        }
        let rec = Record::link(target, id, account);
        self.append(&mut inner, &rec)?;
        inner.map.insert(k, account.clone());
        self.maybe_compact(&mut inner)
    }
    fn remove(&self, target: &str, id: &ExternalId) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().map_err(|_| LinkError::Poisoned)?;
        self.refresh(&mut inner)?;
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
            pending: false,
        };
        self.append(&mut inner, &rec)?;
        inner.map.remove(&k);
        self.maybe_compact(&mut inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn xid(id: &str) -> ExternalId {
        ExternalId {
            source: "google".into(),
            id: id.into(),
        }
    }

    /// A path that does not exist yet, in a fresh directory removed when the guard drops.
    fn tmpdir(name: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = crate::test_support::temp_dir(&format!("links-{name}"));
        let d = tmp.path().join("state");
        (tmp, d)
    }

    fn la(u: &str) -> LinkedAccount {
        LinkedAccount {
            username: u.into(),
            key: Some(format!("K-{u}")),
            pending: false,
        }
    }

    #[test]
    fn file_store_survives_reopen_and_removal() {
        let (_tmp, dir) = tmpdir("reopen");
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
    }

    #[test]
    fn torn_last_line_is_dropped_and_later_writes_are_clean() {
        let (_tmp, dir) = tmpdir("torn");
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
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_the_line() {
        let (_tmp, dir) = tmpdir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let good = r#"{"target":"jira","source":"google","id":"1","username":"ann"}"#;
        fs::write(
            dir.join(FileLinkStore::FILE),
            format!("{good}\nnot json\n{good}\n"),
        )
        .unwrap();
        let err = FileLinkStore::open(&dir).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn compaction_keeps_live_links_and_shrinks_the_log() {
        let (_tmp, dir) = tmpdir("compact");
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

#[cfg(test)]
mod shared_dir_tests {
    use super::tests::xid;
    use super::*;

    fn la(u: &str) -> LinkedAccount {
        LinkedAccount {
            username: u.into(),
            key: None,
            pending: false,
        }
    }

    /// Two stores on one directory behave like `usher serve` and `usher sync`.
    #[test]
    fn two_processes_see_each_others_links_across_a_compaction() {
        let tmp = crate::test_support::temp_dir("links-shared");
        let dir = tmp.path().join("state");
        let serve = FileLinkStore::open(&dir).unwrap();
        let sync = FileLinkStore::open(&dir).unwrap();
        serve.put("jira", &xid("a"), &la("ann")).unwrap();
        assert_eq!(sync.get("jira", &xid("a")).unwrap(), Some(la("ann")));
        sync.put("jira", &xid("b"), &la("bo")).unwrap();
        sync.put("jira", &xid("a"), &la("ann.b")).unwrap();
        assert_eq!(serve.for_target("jira").unwrap().len(), 2);
        assert_eq!(serve.get("jira", &xid("a")).unwrap(), Some(la("ann.b")));
        // serve compacts (replaces the file); sync keeps writing and must not lose lines.
        serve.compact().unwrap();
        sync.put("jira", &xid("c"), &la("cy")).unwrap();
        sync.remove("jira", &xid("b")).unwrap();
        assert_eq!(serve.get("jira", &xid("c")).unwrap(), Some(la("cy")));
        assert_eq!(serve.get("jira", &xid("b")).unwrap(), None);
        let fresh = FileLinkStore::open(&dir).unwrap();
        let all = fresh.for_target("jira").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&xid("a")], la("ann.b"));
    }

    #[test]
    fn compaction_waits_for_a_writer_holding_the_lock() {
        let tmp = crate::test_support::temp_dir("links-lock");
        let dir = tmp.path().join("state");
        let a = FileLinkStore::open(&dir).unwrap();
        let b = FileLinkStore::open(&dir).unwrap();
        for i in 0..5 {
            a.put("jira", &xid("a"), &la(&format!("ann{i}"))).unwrap();
        }
        let lines = |d: &Path| {
            fs::read_to_string(d.join(FileLinkStore::FILE))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(lines(&dir), 5);
        // b is mid-append (holds the shared lock): a's compaction is skipped, not forced.
        assert!(lock_file(&b.lock, LockMode::Shared).unwrap());
        a.compact().unwrap();
        assert_eq!(lines(&dir), 5);
        unlock_file(&b.lock);
        a.compact().unwrap();
        assert_eq!(lines(&dir), 1);
        assert_eq!(b.get("jira", &xid("a")).unwrap(), Some(la("ann4")));
    }
}
