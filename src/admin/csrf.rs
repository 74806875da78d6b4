//! CSRF tokens for the admin console's POSTs: a per-session token, the HMAC-SHA256
//! of the session id under a key derived from `[session] secret`, sent back in a
//! hidden form field (`csrf`) or the `X-Usher-CSRF` header and checked in constant
//! time. Stateless (works on every replica). Never logs a token or the key.

use base64::Engine;
use ring::hmac;

use crate::config::Secret;

/// Form field that carries the token.
pub const FIELD: &str = "csrf";
/// Request/response header that carries the token (JSON clients).
pub const HEADER: &str = "x-usher-csrf";

/// Domain separation: the same secret keys cookies too.
const PURPOSE: &[u8] = b"usher admin csrf v1";

/// The key tokens are made with.
pub struct CsrfKey {
    key: hmac::Key,
}

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// Derives the token key from the session secret (HMAC of a fixed purpose).
    pub fn from_secret(secret: &Secret) -> Self {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
        let derived = hmac::sign(&outer, PURPOSE);
        CsrfKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// The token for one session (same on every request of that session).
    pub fn token(&self, session_id: &str) -> String {
        let tag = hmac::sign(&self.key, session_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `token` is this session's token (constant-time comparison).
    pub fn verify(&self, session_id: &str, token: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        !session_id.is_empty() && hmac::verify(&self.key, session_id.as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CsrfKey {
        CsrfKey::from_secret(&Secret::new(s))
    }

    #[test]
    fn token_is_bound_to_the_session_and_the_secret() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        let t = k.token("session-a");
        assert_eq!(t, k.token("session-a"), "stable per session");
        assert!(k.verify("session-a", &t));
        assert!(!k.verify("session-b", &t), "another session's token");
        assert!(!k.verify("session-a", ""));
        assert!(!k.verify("session-a", "not base64 !"));
        assert!(!k.verify("", &k.token("")), "no session, no token");
        let mut flipped = t.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        assert!(!k.verify("session-a", &String::from_utf8(flipped).unwrap()));
        assert!(!k.verify("session-a", &t[..t.len() - 2]), "truncated");
        let other = key("0123456789abcdef0123456789abcdef-two");
        assert!(
            !other.verify("session-a", &t),
            "another deployment's secret"
        );
        assert_eq!(format!("{k:?}"), "CsrfKey(..)");
        assert!(!t.contains('='), "url-safe, unpadded: {t}");
    }
}
