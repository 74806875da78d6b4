//! The encrypted cookie codec (AES-256-GCM via the `cookie` crate's private jar,
//! keys derived from `[session] secret` with HKDF-SHA256, rotation through
//! `previous_secrets`), chunking of large values, clearing, and stripping usher's
//! cookies from a `Cookie` header before forwarding. It never logs cookie values.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead;

use cookie::{Cookie, CookieJar, Key, SameSite};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Secret;

/// Largest value placed in one cookie (browsers allow ~4096 bytes per cookie).
pub const CHUNK_BYTES: usize = 3800;
/// Most chunks one value may use (name, name_1 .. name_{MAX_CHUNKS-1}).
pub const MAX_CHUNKS: usize = 6;
/// AES-GCM nonce length in the private jar's format.
const NONCE_LEN: usize = 12;
/// Shortest secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 32;
/// Prefix that binds a cookie to the exact origin (Secure, Path=/, no Domain).
pub const HOST_PREFIX: &str = "__Host-";

/// Why a cookie could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The secret is too short to derive keys from.
    #[error("[session] secret is {0} bytes; it must be at least {MIN_SECRET_BYTES} (generate one with `usher keygen`)")]
    WeakSecret(usize),
    /// Key derivation failed.
    #[error("could not derive cookie keys from the secret (HKDF failure)")]
    KeyDerivation,
    /// The value does not fit in MAX_CHUNKS cookies.
    #[error("cookie `{name}` would need {needed} chunks (more than allowed); use store = \"memory\" or \"redis\", or map fewer groups")]
    TooLarge {
        /// The cookie name.
        name: String,
        /// Chunks the value would need.
        needed: usize,
    },
    /// The value could not be serialised.
    #[error("could not serialise cookie `{name}`: {source}")]
    Serialize {
        /// The cookie name.
        name: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Derives a 64-byte cookie `Key` for `purpose` from a secret of any length >= 32 bytes.
pub fn derive_key(secret: &Secret, purpose: &str) -> Result<Key, CookieError> {
    let ikm = secret.expose().as_bytes();
    if ikm.len() < MIN_SECRET_BYTES {
        return Err(CookieError::WeakSecret(ikm.len()));
    }
    struct Len64;
    impl ring::hkdf::KeyType for Len64 {
        fn len(&self) -> usize {
            64
        }
    }
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"usher-cookie-keys-v1");
    let prk = salt.extract(ikm);
    let info = [purpose.as_bytes()];
    let okm = prk
        .expand(&info, Len64)
        .map_err(|_| CookieError::KeyDerivation)?;
    let mut out = [0u8; 64];
    okm.fill(&mut out).map_err(|_| CookieError::KeyDerivation)?;
    Key::try_from(&out[..]).map_err(|_| CookieError::KeyDerivation)
}

/// Encrypts/decrypts one logical cookie (possibly split into chunks).
#[derive(Clone)]
pub struct CookieCodec {
    name: String,
    keys: Vec<Key>,
    open_keys: Arc<Vec<aead::LessSafeKey>>,
    secure: bool,
    max_chunks: usize,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieCodec")
            .field("name", &self.name)
            .field("keys", &self.keys.len())
            .field("secure", &self.secure)
            .finish()
    }
}

impl CookieCodec {
    /// A codec for cookie `base_name` (`__Host-` is prepended when `secure`, i.e. the
    /// public URL is https). `purpose` separates key spaces (e.g. "session", "login").
    pub fn new(
        base_name: &str,
        purpose: &str,
        secret: &Secret,
        previous: &[Secret],
        secure: bool,
    ) -> Result<Self, CookieError> {
        let mut keys = vec![derive_key(secret, purpose)?];
        for old in previous {
            keys.push(derive_key(old, purpose)?);
        }
        let name = if secure {
            format!("{HOST_PREFIX}{base_name}")
        } else {
            base_name.to_string()
        };
        let open_keys = keys
            .iter()
            .map(|k| {
                aead::UnboundKey::new(&aead::AES_256_GCM, k.encryption())
                    .map(aead::LessSafeKey::new)
                    .map_err(|_| CookieError::KeyDerivation)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CookieCodec {
            name,
            keys,
            open_keys: Arc::new(open_keys),
            secure,
            max_chunks: MAX_CHUNKS,
        })
    }

    /// The same keys and attributes under another base name (per-login cookies).
    pub fn renamed(&self, base_name: &str) -> Self {
        let name = if self.secure {
            format!("{HOST_PREFIX}{base_name}")
        } else {
            base_name.to_string()
        };
        CookieCodec {
            name,
            keys: self.keys.clone(),
            open_keys: self.open_keys.clone(),
            secure: self.secure,
            max_chunks: self.max_chunks,
        }
    }

    /// Limits the value to `n` chunks (1..=MAX_CHUNKS); small cookies use 1.
    pub fn with_max_chunks(mut self, n: usize) -> Self {
        self.max_chunks = n.clamp(1, MAX_CHUNKS);
        self
    }

    /// The name prefix the browser sees for `base` under this codec's attributes.
    pub fn full_name(&self, base: &str) -> String {
        if self.secure {
            format!("{HOST_PREFIX}{base}")
        } else {
            base.to_string()
        }
    }

    /// The full cookie name as the browser sees it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn chunk_name(&self, i: usize) -> String {
        if i == 0 {
            self.name.clone()
        } else {
            format!("{}_{i}", self.name)
        }
    }

    fn attributes(&self, c: &mut Cookie<'static>) {
        c.set_path("/");
        c.set_http_only(true);
        c.set_same_site(SameSite::Lax);
        c.set_secure(self.secure);
    }

    /// Serialises and encrypts `value`; returns the `Set-Cookie` values (the chunks it
    /// needs, plus removals of any higher chunks a previous, larger value left behind).
    pub fn encode<T: Serialize>(
        &self,
        value: &T,
        max_age: Option<Duration>,
    ) -> Result<Vec<String>, CookieError> {
        let json = serde_json::to_string(value).map_err(|source| CookieError::Serialize {
            name: self.name.clone(),
            source,
        })?;
        let mut jar = CookieJar::new();
        let key = self.keys.first().ok_or(CookieError::KeyDerivation)?;
        jar.private_mut(key)
            .add(Cookie::new(self.name.clone(), json));
        let sealed = jar
            .get(&self.name)
            .map(|c| c.value().to_string())
            .ok_or(CookieError::KeyDerivation)?;
        let needed = sealed.len().div_ceil(CHUNK_BYTES).max(1);
        if needed > self.max_chunks {
            return Err(CookieError::TooLarge {
                name: self.name.clone(),
                needed,
            });
        }
        let max_age = max_age.map(|d| {
            cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        });
        let mut out = Vec::with_capacity(self.max_chunks);
        for i in 0..self.max_chunks {
            let mut c = if i < needed {
                let part = &sealed[i * CHUNK_BYTES..((i + 1) * CHUNK_BYTES).min(sealed.len())];
                let value = if i == 0 {
                    format!("{needed}.{part}")
                } else {
                    part.to_string()
                };
                let mut c = Cookie::new(self.chunk_name(i), value);
                if let Some(age) = max_age {
                    c.set_max_age(age);
                }
                c
            } else {
                let mut c = Cookie::new(self.chunk_name(i), "");
                c.make_removal();
                c
            };
            self.attributes(&mut c);
            out.push(c.to_string());
        }
        Ok(out)
    }

    /// `Set-Cookie` values that delete the cookie and every possible chunk.
    pub fn clear(&self) -> Vec<String> {
        (0..self.max_chunks)
            .map(|i| {
                let mut c = Cookie::new(self.chunk_name(i), "");
                c.make_removal();
                self.attributes(&mut c);
                c.to_string()
            })
            .collect()
    }

    /// Decodes the value from a `Cookie` request header. Tampered, truncated, garbage
    /// or foreign-key cookies give `None`; this never panics.
    pub fn decode<T: DeserializeOwned>(&self, cookie_header: &str) -> Option<T> {
        let first = find_cookie(cookie_header, &self.name)?;
        let (count, part0) = first.split_once('.')?;
        let count: usize = count.parse().ok()?;
        if count == 0 || count > self.max_chunks {
            return None;
        }
        let mut sealed = if count == 1 {
            STANDARD.decode(part0).ok()?
        } else {
            let mut s = String::with_capacity(count * CHUNK_BYTES);
            s.push_str(part0);
            for i in 1..count {
                s.push_str(find_cookie(cookie_header, &self.chunk_name(i))?);
            }
            STANDARD.decode(s).ok()?
        };
        // The private jar's format: base64(nonce(12) || ciphertext || tag(16)), AAD = name.
        // Opened with ring using the same key bytes and precomputed key schedules.
        if sealed.len() <= NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = sealed.get(..NONCE_LEN)?.try_into().ok()?;
        let last = self.open_keys.len().checked_sub(1)?;
        for (i, key) in self.open_keys.iter().enumerate() {
            let nonce = aead::Nonce::assume_unique_for_key(nonce);
            let aad = aead::Aad::from(self.name.as_bytes());
            let opened = if i == last {
                key.open_in_place(nonce, aad, &mut sealed[NONCE_LEN..])
                    .ok()
                    .map(|p| serde_json::from_slice(p).ok())
            } else {
                let mut copy = sealed[NONCE_LEN..].to_vec();
                key.open_in_place(nonce, aad, &mut copy)
                    .ok()
                    .map(|p| serde_json::from_slice(p).ok())
            };
            if let Some(value) = opened {
                return value;
            }
        }
        None
    }
}

/// The value of cookie `name` in a `Cookie` header (first occurrence), without parsing
/// or decoding anything else.
pub fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    pieces(header.as_bytes()).find_map(|pair| {
        let eq = memchr::memchr(b'=', pair)?;
        let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        (k.trim_ascii() == name.as_bytes()).then(|| sub_str(header, v.trim_ascii()))?
    })
}

/// `part` (a sub-slice of `whole`, cut at ASCII bytes) as text again, without
/// validating it a second time.
fn sub_str<'a>(whole: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    whole.get(start..start + part.len())
}

/// The `;`-separated pieces of a `Cookie` header value, like `split(b';')` but
/// found with SIMD `memchr`: usher's session cookie is a few hundred bytes of
/// sealed text that every signed-in request walks over. Bytes, not text: the
/// proxy forwards other sites' cookies byte for byte, whatever their encoding.
fn pieces(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Which cookie names belong to usher (session cookie with its chunks, login states).
#[derive(Debug, Clone)]
pub struct UsherCookieNames {
    /// Full session cookie name (with `__Host-` if used).
    pub session: String,
    /// Prefix of per-login state cookies (with `__Host-` if used).
    pub login_prefix: String,
}

impl UsherCookieNames {
    /// True for the session cookie, its chunks `name_1..`, and login-state cookies.
    pub fn is_ours(&self, name: impl AsRef<[u8]>) -> bool {
        let name = name.as_ref();
        let session = self.session.as_bytes();
        if name == session || name.starts_with(self.login_prefix.as_bytes()) {
            return true;
        }
        name.strip_prefix(session)
            .and_then(|rest| rest.strip_prefix(b"_"))
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
    }
}

/// How usher's cookies sit in a `Cookie` header value: what the proxy must do
/// before forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsherCookiesIn {
    /// None of usher's: forward the header untouched.
    None,
    /// Only usher's: drop the header.
    All,
    /// Both: forward only the others ([`strip_usher_cookies`]).
    Mixed,
}

/// One walk over the pairs that tells [`UsherCookiesIn`] (a signed-in request
/// usually carries only usher's cookie, and then nothing is copied).
pub fn usher_cookies_in(header: &[u8], names: &UsherCookieNames) -> UsherCookiesIn {
    let (mut ours, mut others) = (false, false);
    for (name, _) in cookie_pairs(header) {
        if names.is_ours(name) {
            ours = true;
        } else {
            others = true;
        }
        if ours && others {
            return UsherCookiesIn::Mixed;
        }
    }
    if ours {
        UsherCookiesIn::All
    } else {
        UsherCookiesIn::None
    }
}

/// The non-empty `name=value` pairs of a `Cookie` header value, with their names.
fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    pieces(header).filter_map(|pair| {
        let start = pair.iter().position(|b| !matches!(b, b' ' | b'\t'))?;
        let pair = pair.get(start..)?;
        let name = memchr::memchr(b'=', pair).map_or(pair, |eq| pair.get(..eq).unwrap_or(pair));
        Some((name.trim_ascii(), pair))
    })
}

/// Removes usher's cookies from a `Cookie` header value before forwarding; every
/// other cookie pair is kept byte-exact and in order (joined with `"; "`). `None`
/// when nothing is left (drop the header).
pub fn strip_usher_cookies(header: &[u8], names: &UsherCookieNames) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for (name, pair) in cookie_pairs(header) {
        if names.is_ours(name) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
#[path = "cookie_tests.rs"]
mod tests;
