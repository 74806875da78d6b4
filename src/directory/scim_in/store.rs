//! The inbound SCIM resource store: every Users/Groups resource an IdP pushed, kept in
//! memory and persisted as one JSON file per IdP under `<state dir>/scim/<idp>.json`
//! (written to a temporary file, fsynced, renamed over the old one), so GETs answer
//! the same after a restart. Versions (ETags), uniqueness of `userName`, required
//! attributes and `If-Match` are enforced here. Decides nothing about targets.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{etag_matches, Kind, ScimError, ScimType};

/// One stored resource: server-owned id, version and timestamps plus the normalised
/// client attributes (see `schema::normalize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResource {
    pub id: String,
    /// Increases with every change (per IdP); the ETag is `W/"version"`.
    pub version: u64,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub modified: String,
    pub attrs: Map<String, Value>,
}

impl StoredResource {
    /// A string attribute of the core schema (exact canonical name).
    pub fn str_attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }
}

/// Everything one IdP pushed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdpResources {
    #[serde(default)]
    pub users: BTreeMap<String, StoredResource>,
    #[serde(default)]
    pub groups: BTreeMap<String, StoredResource>,
    #[serde(default)]
    last_version: u64,
}

impl IdpResources {
    fn map(&self, kind: Kind) -> &BTreeMap<String, StoredResource> {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, StoredResource> {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }

    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
}

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "inbound SCIM store {path}: cannot {op}: {source}; check that [state] dir is writable"
    )]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("inbound SCIM store {path} is not valid JSON ({cause}); restore it from a backup or move it away to start empty")]
    Corrupt { path: PathBuf, cause: String },
}

/// The store for all IdPs with a `scim_token`.
#[derive(Debug)]
pub struct ScimStore {
    dir: PathBuf,
    idps: Mutex<BTreeMap<String, IdpResources>>,
}

fn check_required(kind: Kind, attrs: &Map<String, Value>) -> Result<(), ScimError> {
    let (name, what) = match kind {
        Kind::User => ("userName", "a User needs a userName"),
        Kind::Group => ("displayName", "a Group needs a displayName"),
    };
    match attrs.get(name).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(ScimError::bad(ScimType::InvalidValue, what)),
    }
}

fn new_id() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl ScimStore {
    /// Opens `<state dir>/scim/` and loads the file of each IdP in `idps`.
    pub fn open(state_dir: &Path, idps: &[String]) -> Result<ScimStore, StoreError> {
        let dir = state_dir.join("scim");
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            op: "create the directory",
            source,
        })?;
        let mut all = BTreeMap::new();
        for idp in idps {
            let path = dir.join(format!("{idp}.json"));
            let data = match fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    cause: e.to_string(),
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => IdpResources::default(),
                Err(source) => {
                    return Err(StoreError::Io {
                        path,
                        op: "read",
                        source,
                    })
                }
            };
            all.insert(idp.clone(), data);
        }
        Ok(ScimStore {
            dir,
            idps: Mutex::new(all),
        })
    }

    fn path(&self, idp: &str) -> PathBuf {
        self.dir.join(format!("{idp}.json"))
    }

    /// Writes one IdP's file atomically (temporary file, fsync, rename, fsync dir).
    fn persist(&self, idp: &str, data: &IdpResources) -> Result<(), ScimError> {
        let path = self.path(idp);
        let tmp = self.dir.join(format!(".{idp}.json.tmp"));
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec(data).map_err(std::io::Error::other)?;
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            if let Ok(d) = fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "could not persist the inbound SCIM store");
            ScimError::new(500, "the change could not be saved; try again later")
        })
    }

    /// Runs `f` on one IdP's resources; when it returns Ok the result is persisted
    /// before anyone else sees it. An unknown IdP is a 404.
    fn write<T>(
        &self,
        idp: &str,
        f: impl FnOnce(&mut IdpResources) -> Result<T, ScimError>,
    ) -> Result<T, ScimError> {
        let mut all = self
            .idps
            .lock()
            .map_err(|_| ScimError::new(500, "the store is unavailable"))?;
        let data = all
            .get_mut(idp)
            .ok_or_else(|| ScimError::not_found("endpoint"))?;
        let mut work = data.clone();
        let out = f(&mut work)?;
        self.persist(idp, &work)?;
        *data = work;
        Ok(out)
    }

    /// A copy of everything one IdP pushed (`None` for an IdP without SCIM).
    pub fn snapshot(&self, idp: &str) -> Option<IdpResources> {
        self.idps.lock().ok()?.get(idp).cloned()
    }

    /// Runs `f` on one IdP's resources under the lock, without copying them (keep it
    /// short: writers wait). `None` for an IdP without SCIM.
    pub fn read<T>(&self, idp: &str, f: impl FnOnce(&IdpResources) -> T) -> Option<T> {
        let all = self.idps.lock().ok()?;
        Some(f(all.get(idp)?))
    }

    /// One resource by id.
    pub fn get(&self, idp: &str, kind: Kind, id: &str) -> Option<StoredResource> {
        self.idps.lock().ok()?.get(idp)?.map(kind).get(id).cloned()
    }

    /// Creates a resource from normalised attributes.
    pub fn create(
        &self,
        idp: &str,
        kind: Kind,
        attrs: Map<String, Value>,
        now: SystemTime,
    ) -> Result<StoredResource, ScimError> {
        check_required(kind, &attrs)?;
        let stamp = crate::sync::report::rfc3339(now);
        self.write(idp, |data| {
            unique(data, kind, None, &attrs)?;
            let r = StoredResource {
                id: new_id(),
                version: data.next_version(),
                created: stamp.clone(),
                modified: stamp,
                attrs,
            };
            data.map_mut(kind).insert(r.id.clone(), r.clone());
            Ok(r)
        })
    }

    /// Changes a resource with `f` (replace or patch); `If-Match` must name its
    /// version. Returns (before, after); nothing changes when `f` fails.
    pub fn update(
        &self,
        idp: &str,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
        now: SystemTime,
        f: impl FnOnce(&mut Map<String, Value>) -> Result<(), ScimError>,
    ) -> Result<(StoredResource, StoredResource), ScimError> {
        let stamp = crate::sync::report::rfc3339(now);
        self.write(idp, |data| {
            let before = current(data, kind, id, if_match)?;
            let mut attrs = before.attrs.clone();
            f(&mut attrs)?;
            check_required(kind, &attrs)?;
            unique(data, kind, Some(id), &attrs)?;
            let mut after = before.clone();
            if attrs != before.attrs {
                after.attrs = attrs;
                after.version = data.next_version();
                after.modified = stamp;
                data.map_mut(kind).insert(id.to_string(), after.clone());
            }
            Ok((before, after))
        })
    }

    /// Deletes a resource (and, for a user, their memberships in every group).
    pub fn delete(
        &self,
        idp: &str,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
        now: SystemTime,
    ) -> Result<StoredResource, ScimError> {
        let stamp = crate::sync::report::rfc3339(now);
        self.write(idp, |data| {
            let before = current(data, kind, id, if_match)?;
            data.map_mut(kind).remove(id);
            // Whatever pointed at it (group members) no longer does.
            let holders: Vec<String> = data
                .groups
                .iter()
                .filter(|(_, g)| member_ids(g).iter().any(|m| m == id))
                .map(|(gid, _)| gid.clone())
                .collect();
            for gid in holders {
                let version = data.next_version();
                if let Some(g) = data.groups.get_mut(&gid) {
                    if let Some(Value::Array(ms)) = g.attrs.get_mut("members") {
                        ms.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                        if ms.is_empty() {
                            g.attrs.remove("members");
                        }
                    }
                    g.version = version;
                    g.modified = stamp.clone();
                }
            }
            Ok(before)
        })
    }
}

/// The `value`s of a group's `members`.
pub fn member_ids(g: &StoredResource) -> Vec<String> {
    g.attrs
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The stored resource `id` of `kind`, if it exists and `If-Match` (when sent)
/// names its current version.
fn current(
    data: &IdpResources,
    kind: Kind,
    id: &str,
    if_match: Option<&str>,
) -> Result<StoredResource, ScimError> {
    let found = data
        .map(kind)
        .get(id)
        .cloned()
        .ok_or_else(|| ScimError::not_found(&format!("{} {id}", kind.name())))?;
    precondition(if_match, found.version)?;
    Ok(found)
}

fn precondition(if_match: Option<&str>, version: u64) -> Result<(), ScimError> {
    match if_match {
        Some(h) if !etag_matches(h, version) => Err(ScimError::new(
            412,
            "the resource changed since it was read (If-Match does not match its ETag); read it again",
        )),
        _ => Ok(()),
    }
}

/// `userName` is unique per IdP, compared case-insensitively.
fn unique(
    data: &IdpResources,
    kind: Kind,
    except: Option<&str>,
    attrs: &Map<String, Value>,
) -> Result<(), ScimError> {
    if kind != Kind::User {
        return Ok(());
    }
    let Some(name) = attrs.get("userName").and_then(Value::as_str) else {
        return Ok(());
    };
    let taken = data.users.values().any(|u| {
        Some(u.id.as_str()) != except
            && u.str_attr("userName")
                .is_some_and(|n| n.to_lowercase() == name.to_lowercase())
    });
    if taken {
        return Err(ScimError {
            status: 409,
            scim_type: Some(ScimType::Uniqueness),
            detail: format!("userName {name:?} is already taken"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn temp() -> tempfile::TempDir {
        crate::test_support::temp_dir("scim-store")
    }

    #[test]
    fn create_update_delete_persist_across_reopen() {
        let tmp = temp();
        let dir = tmp.path().to_path_buf();
        let idps = vec!["okta".to_string()];
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let s = ScimStore::open(&dir, &idps).unwrap();
        let u = s
            .create("okta", Kind::User, attrs(json!({"userName": "ann"})), now)
            .unwrap();
        let g = s
            .create(
                "okta",
                Kind::Group,
                attrs(json!({"displayName": "eng", "members": [{"value": u.id}]})),
                now,
            )
            .unwrap();
        assert!(g.version > u.version);
        let (before, after) = s
            .update(
                "okta",
                Kind::User,
                &u.id,
                Some(&super::super::wire::etag(u.version)),
                now,
                |a| {
                    a.insert("title".into(), json!("boss"));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(before.version, u.version);
        assert!(after.version > before.version);
        // A stale ETag is refused with 412 and changes nothing.
        let err = s
            .update("okta", Kind::User, &u.id, Some("W/\"1\""), now, |a| {
                a.insert("title".into(), json!("x"));
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.status, 412);
        // An unchanged update keeps the version.
        let (_, same) = s
            .update("okta", Kind::User, &u.id, None, now, |_| Ok(()))
            .unwrap();
        assert_eq!(same.version, after.version);
        drop(s);

        let s = ScimStore::open(&dir, &idps).unwrap();
        let again = s.get("okta", Kind::User, &u.id).unwrap();
        assert_eq!(again, after);
        s.delete("okta", Kind::User, &u.id, None, now).unwrap();
        assert!(s.get("okta", Kind::User, &u.id).is_none());
        let g2 = s.get("okta", Kind::Group, &g.id).unwrap();
        assert!(
            member_ids(&g2).is_empty(),
            "a deleted user leaves its groups"
        );
        assert!(g2.version > g.version);
        drop(s);
        let s = ScimStore::open(&dir, &idps).unwrap();
        assert!(s.get("okta", Kind::User, &u.id).is_none());
        assert_eq!(s.snapshot("okta").unwrap().groups.len(), 1);
        tmp.close().unwrap();
    }

    #[test]
    fn user_name_is_unique_case_insensitively_and_required() {
        let tmp = temp();
        let dir = tmp.path().to_path_buf();
        let s = ScimStore::open(&dir, &["x".to_string()]).unwrap();
        let now = SystemTime::now();
        let a = s
            .create("x", Kind::User, attrs(json!({"userName": "Ann"})), now)
            .unwrap();
        let err = s
            .create("x", Kind::User, attrs(json!({"userName": "ANN"})), now)
            .unwrap_err();
        assert_eq!(
            (err.status, err.scim_type),
            (409, Some(ScimType::Uniqueness))
        );
        let err = s
            .create("x", Kind::User, attrs(json!({"title": "t"})), now)
            .unwrap_err();
        assert_eq!(err.status, 400);
        let b = s
            .create("x", Kind::User, attrs(json!({"userName": "bob"})), now)
            .unwrap();
        let err = s
            .update("x", Kind::User, &b.id, None, now, |m| {
                m.insert("userName".into(), json!("ann"));
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.status, 409);
        // Renaming yourself in another case is fine.
        s.update("x", Kind::User, &a.id, None, now, |m| {
            m.insert("userName".into(), json!("ANN"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            s.create("nope", Kind::User, attrs(json!({"userName": "z"})), now)
                .unwrap_err()
                .status,
            404
        );
        tmp.close().unwrap();
    }

    #[test]
    fn a_corrupt_file_is_reported_with_its_path() {
        let tmp = temp();
        let dir = tmp.path().to_path_buf();
        fs::create_dir_all(dir.join("scim")).unwrap();
        fs::write(dir.join("scim/okta.json"), b"{not json").unwrap();
        let err = ScimStore::open(&dir, &["okta".to_string()]).unwrap_err();
        assert!(err.to_string().contains("okta.json"), "{err}");
        tmp.close().unwrap();
    }
}
