//! The admin's Google refresh token at rest (OAuth directory mode): one file
//! under `[state] dir`, sealed with AES-256-GCM under a key derived (HKDF-SHA256)
//! from the session secret; previous session secrets still open it after a
//! rotation. Owns the file format only; never logs or prints the token.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use super::DirectoryError;
use crate::config::Secret;

/// File name under `[state] dir`.
pub const FILE_NAME: &str = "google-directory-refresh-token.enc";
/// First line of the file: format version.
const MAGIC: &str = "usher-refresh-token-v1";
/// HKDF salt/info: binds the derived key to this one use of the session secret.
const SALT: &[u8] = b"usher/directory";
const INFO: &[u8] = b"usher google directory refresh token v1";

/// Loads and saves the encrypted refresh token.
pub struct RefreshTokenStore {
    path: PathBuf,
    /// Current key first, then keys from previous session secrets.
    keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for RefreshTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Derives the 256-bit sealing key from a session secret (pure).
fn derive_key(secret: &Secret) -> [u8; 32] {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    let prk = Salt::new(HKDF_SHA256, SALT).extract(secret.expose().as_bytes());
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so neither call can fail.
    if let Ok(okm) = prk.expand(&[INFO], Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl RefreshTokenStore {
    /// A store in `state_dir`, sealing with `secret` and also opening with `previous`.
    pub fn new(state_dir: &Path, secret: &Secret, previous: &[Secret]) -> Self {
        let mut keys = vec![derive_key(secret)];
        keys.extend(previous.iter().map(derive_key));
        RefreshTokenStore {
            path: state_dir.join(FILE_NAME),
            keys,
        }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, detail: impl Into<String>, fix: impl Into<String>) -> DirectoryError {
        DirectoryError::Store {
            path: self.path.display().to_string(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    /// The stored token; `Ok(None)` when no admin has connected yet.
    pub fn load(&self) -> Result<Option<Secret>, DirectoryError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(self.fail(
                    format!("cannot read it: {e}"),
                    "make [state] dir readable by usher",
                ))
            }
        };
        let reconnect = format!(
            "delete the file and reconnect at {}",
            super::error::CONNECT_PATH
        );
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(self.fail("not a usher refresh-token file", reconnect));
        }
        let sealed = lines
            .next()
            .and_then(|l| STANDARD.decode(l.trim()).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| self.fail("the sealed token is not valid base64", reconnect.clone()))?;
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        for key in &self.keys {
            if let Some(token) = open(key, nonce, ciphertext) {
                return Ok(Some(Secret::new(token)));
            }
        }
        Err(self.fail(
            "it does not decrypt with the current or any previous [session] secret",
            format!(
                "restore the session secret it was saved with (add it to previous_secrets), or {reconnect}"
            ),
        ))
    }

    /// Seals and writes `token` (atomically: temp file + rename; mode 0600 on Unix).
    pub fn save(&self, token: &Secret) -> Result<(), DirectoryError> {
        let key = self.keys.first().ok_or_else(|| self.fail("no key", ""))?;
        let rng = SystemRandom::new();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)
            .map_err(|_| self.fail("the system random source failed", "retry"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| self.fail("key setup failed", "retry"))?;
        let mut buf = token.expose().as_bytes().to_vec();
        LessSafeKey::new(unbound)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC.as_bytes()),
                &mut buf,
            )
            .map_err(|_| self.fail("sealing failed", "retry"))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buf);
        let text = format!("{MAGIC}\n{}\n", STANDARD.encode(sealed));

        let dir_fix = "create [state] dir and make it writable by usher";
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.fail(format!("cannot create its directory: {e}"), dir_fix))?;
        }
        let tmp = self.path.with_extension("enc.tmp");
        write_private(&tmp, text.as_bytes())
            .map_err(|e| self.fail(format!("cannot write it: {e}"), dir_fix))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| self.fail(format!("cannot replace it: {e}"), dir_fix))
    }

    /// Removes the stored token (disconnect). Missing file is fine.
    pub fn delete(&self) -> Result<(), DirectoryError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.fail(
                format!("cannot delete it: {e}"),
                "make [state] dir writable by usher",
            )),
        }
    }
}

fn open(key: &[u8; 32], nonce: &[u8], ciphertext: &[u8]) -> Option<String> {
    let unbound = UnboundKey::new(&AES_256_GCM, key).ok()?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ciphertext.to_vec();
    let plain = LessSafeKey::new(unbound)
        .open_in_place(nonce, Aad::from(MAGIC.as_bytes()), &mut buf)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> tempfile::TempDir {
        crate::test_support::temp_dir(&format!("token-store-{name}"))
    }

    #[test]
    fn round_trip_and_file_holds_no_plaintext() {
        let tmp = tmpdir("rt");
        let dir = tmp.path().to_path_buf();
        let secret = Secret::new("s".repeat(40));
        let store = RefreshTokenStore::new(&dir, &secret, &[]);
        assert!(store.load().unwrap().is_none());
        store.save(&Secret::new("1//refresh-token-value")).unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().expose(),
            "1//refresh-token-value"
        );
        let raw = std::fs::read_to_string(store.path()).unwrap();
        assert!(raw.starts_with(MAGIC));
        assert!(!raw.contains("refresh-token-value"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.delete().unwrap();
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn previous_secret_still_opens_and_wrong_secret_names_the_fix() {
        let tmp = tmpdir("rot");
        let dir = tmp.path().to_path_buf();
        let old = Secret::new("o".repeat(40));
        let new = Secret::new("n".repeat(40));
        RefreshTokenStore::new(&dir, &old, &[])
            .save(&Secret::new("tok"))
            .unwrap();
        let rotated = RefreshTokenStore::new(&dir, &new, std::slice::from_ref(&old));
        assert_eq!(rotated.load().unwrap().unwrap().expose(), "tok");
        let err = RefreshTokenStore::new(&dir, &new, &[]).load().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("previous_secrets"), "{msg}");
        assert!(msg.contains("/_usher/admin/connect/google"), "{msg}");
    }

    #[test]
    fn tampered_file_is_rejected() {
        let tmp = tmpdir("tamper");
        let dir = tmp.path().to_path_buf();
        let secret = Secret::new("k".repeat(40));
        let store = RefreshTokenStore::new(&dir, &secret, &[]);
        store.save(&Secret::new("tok")).unwrap();
        let raw = std::fs::read_to_string(store.path()).unwrap();
        let mut lines: Vec<String> = raw.lines().map(String::from).collect();
        let mut bytes = STANDARD.decode(&lines[1]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        lines[1] = STANDARD.encode(bytes);
        std::fs::write(store.path(), lines.join("\n")).unwrap();
        assert!(matches!(store.load(), Err(DirectoryError::Store { .. })));
        std::fs::write(store.path(), "garbage").unwrap();
        assert!(matches!(store.load(), Err(DirectoryError::Store { .. })));
    }
}
