//! The IdP groups usher has seen, per IdP, kept under `[state] dir`: a full sync
//! records every directory group, a sign-in the person's groups. Login-time
//! provisioning maps them with the *current* rules to know which target groups
//! those rules manage, so a person who left `backend@` loses the on-the-fly
//! `backend` membership at the next sign-in (`keep_existing = false`), not only at
//! the next full sync. Owns the file only; mapping decides what is managed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use crate::identity::GroupRef;

/// File name under `[state] dir`.
pub const FILE_NAME: &str = "known-groups.json";

/// The store could not be read or written; names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KnownGroupsError {
    #[error("known groups {path}: {op} failed ({source}); check that [state] dir is writable")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("known groups {path}: not the expected JSON ({message}); delete the file, the next sync writes it again")]
    Corrupt { path: PathBuf, message: String },
}

type ByIdp = BTreeMap<String, BTreeSet<GroupRef>>;

#[derive(Debug, Default)]
struct State {
    by_idp: ByIdp,
    /// Bumped on every change (callers cache what they derive from a version).
    version: u64,
    /// The file's modification time when last read or written (another process,
    /// `usher sync`, may write it).
    seen: Option<SystemTime>,
}

/// IdP groups seen so far, shared by `usher serve` and `usher sync` through the file.
#[derive(Debug)]
pub struct KnownGroups {
    path: PathBuf,
    state: RwLock<State>,
}

impl KnownGroups {
    /// Opens (or starts) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, KnownGroupsError> {
        let store = KnownGroups {
            path: dir.join(FILE_NAME),
            state: RwLock::new(State::default()),
        };
        store.reload_if_changed()?;
        Ok(store)
    }

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    fn read_file(&self) -> Result<ByIdp, KnownGroupsError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KnownGroupsError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ByIdp::new()),
            Err(source) => Err(KnownGroupsError::Io {
                path: self.path.clone(),
                op: "read",
                source,
            }),
        }
    }

    /// Merges what another process wrote since we last looked.
    fn reload_if_changed(&self) -> Result<(), KnownGroupsError> {
        let modified = self.modified();
        let stale = self.state.read().map_or(true, |s| s.seen != modified);
        if !stale || modified.is_none() {
            return Ok(());
        }
        let from_file = self.read_file()?;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        for (idp, groups) in from_file {
            st.by_idp.entry(idp).or_default().extend(groups);
        }
        st.version += 1;
        st.seen = modified;
        Ok(())
    }

    /// The store's version now (re-reading the file if another process wrote it).
    pub fn version(&self) -> u64 {
        if let Err(e) = self.reload_if_changed() {
            tracing::warn!(error = %e, "known groups not reloaded; using what is in memory");
        }
        self.state.read().map_or(0, |s| s.version)
    }

    /// The groups seen for `idp` and the store's version.
    pub fn groups(&self, idp: &str) -> (u64, Vec<GroupRef>) {
        if let Err(e) = self.reload_if_changed() {
            tracing::warn!(error = %e, "known groups not reloaded; using what is in memory");
        }
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let groups = st
            .by_idp
            .get(idp)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default();
        (st.version, groups)
    }

    /// Adds `groups` of `idp`; writes the file (atomically) only when something is
    /// new. Returns whether anything was new.
    pub fn remember<'a>(
        &self,
        idp: &str,
        groups: impl IntoIterator<Item = &'a GroupRef>,
    ) -> Result<bool, KnownGroupsError> {
        let fresh: Vec<GroupRef> = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            let known = st.by_idp.get(idp);
            groups
                .into_iter()
                .filter(|g| known.is_none_or(|k| !k.contains(*g)))
                .cloned()
                .collect()
        };
        if fresh.is_empty() {
            return Ok(false);
        }
        self.reload_if_changed()?;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.by_idp.entry(idp.to_string()).or_default().extend(fresh);
        st.version += 1;
        let json = serde_json::to_vec(&st.by_idp).map_err(|e| KnownGroupsError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let io = |op, source| KnownGroupsError::Io {
            path: self.path.clone(),
            op,
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))?;
        st.seen = self.modified();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(email: &str) -> GroupRef {
        GroupRef {
            id: format!("id-{email}"),
            email: email.into(),
            name: email.split('@').next().unwrap_or_default().into(),
        }
    }

    /// A fresh directory and its guard (keep the guard: dropping it removes the directory).
    fn dir(name: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = crate::test_support::temp_dir(&format!("known-{name}"));
        let d = tmp.path().to_path_buf();
        (tmp, d)
    }

    #[test]
    fn remembers_per_idp_and_survives_reopen() {
        let (_tmp, d) = dir("reopen");
        let k = KnownGroups::open(&d).unwrap();
        assert!(k.remember("google", &[g("a@x"), g("b@x")]).unwrap());
        assert!(!k.remember("google", &[g("a@x")]).unwrap(), "nothing new");
        assert!(k.remember("okta", &[g("c@x")]).unwrap());
        let again = KnownGroups::open(&d).unwrap();
        let (_, google) = again.groups("google");
        assert_eq!(google, vec![g("a@x"), g("b@x")]);
        assert_eq!(again.groups("okta").1, vec![g("c@x")]);
        assert!(again.groups("other").1.is_empty());
    }

    #[test]
    fn another_process_writing_is_seen_and_the_version_moves() {
        let (_tmp, d) = dir("shared");
        let serve = KnownGroups::open(&d).unwrap();
        let (v0, none) = serve.groups("google");
        assert!(none.is_empty());
        let sync = KnownGroups::open(&d).unwrap();
        // Different mtime granularity: make sure the write is seen as a change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        sync.remember("google", &[g("eng@x")]).unwrap();
        let (v1, seen) = serve.groups("google");
        assert_eq!(seen, vec![g("eng@x")]);
        assert!(v1 > v0);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_the_fix() {
        let (_tmp, d) = dir("corrupt");
        std::fs::write(d.join(FILE_NAME), b"{not json").unwrap();
        let e = KnownGroups::open(&d).unwrap_err().to_string();
        assert!(
            e.contains("known-groups.json") && e.contains("delete the file"),
            "{e}"
        );
    }
}
