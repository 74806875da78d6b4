//! ID token verification as a pure function over (token, JWKS, expectations, now):
//! JWS signature with the key named by `kid` (openidconnect's JWK code), allowed
//! algorithms, `iss` (with Google's scheme-less legacy form when asked), `aud`/`azp`,
//! `exp`/`iat` with bounded skew, and `nonce`. Returns the verified claims as JSON.
//! It does no I/O (the caller refreshes the JWKS on [`TokenError::UnknownKey`]).

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use serde_json::Value;

use crate::session::unix_secs;

/// Allowed clock skew for `exp` and `iat` (Google's libraries use 300 s).
pub const CLOCK_SKEW_SECS: u64 = 300;
/// Longest lifetime accepted (`exp - iat`), as Google's libraries do.
pub const MAX_LIFETIME_SECS: u64 = 86_400;

/// What a valid token must say.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The issuer URL from discovery.
    pub issuer: &'a str,
    /// Also accept the issuer without its scheme (`accounts.google.com`).
    pub accept_bare_issuer: bool,
    /// Our client id (must be in `aud`).
    pub client_id: &'a str,
    /// The nonce sent in the authorization request.
    pub nonce: &'a str,
    /// Algorithms the provider advertises (never `none`).
    pub algs: &'a [CoreJwsSigningAlgorithm],
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with JSON header and claims.
    #[error("ID token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is not one the provider advertises (or is `none`).
    #[error("ID token algorithm {0} is not allowed")]
    Algorithm(String),
    /// No JWKS key has this `kid` (refresh the JWKS and retry once).
    #[error("ID token key id is not in the provider's JWKS")]
    UnknownKey,
    /// The signature does not verify.
    #[error("ID token signature does not verify")]
    Signature,
    /// Wrong issuer.
    #[error("ID token issuer {0} is not the configured issuer")]
    Issuer(String),
    /// Our client id is not the audience.
    #[error("ID token audience does not include this client id")]
    Audience,
    /// Expired or issued in the future or too long-lived.
    #[error("ID token is expired or not yet valid ({0})")]
    Time(&'static str),
    /// The nonce is missing or differs.
    #[error("ID token nonce does not match this sign-in")]
    Nonce,
}

fn part(p: Option<&str>) -> Result<Vec<u8>, TokenError> {
    let p = p.ok_or(TokenError::Malformed("missing part"))?;
    URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("bad base64url"))
}

/// Verifies `token` and returns its claims.
pub fn verify(
    token: &str,
    jwks: &CoreJsonWebKeySet,
    expected: &Expected<'_>,
    now: SystemTime,
) -> Result<Value, TokenError> {
    let mut parts = token.split('.');
    let (h, p) = (parts.next(), parts.next());
    let sig = part(parts.next())?;
    if parts.next().is_some() {
        return Err(TokenError::Malformed("more than three parts"));
    }
    let header: Value = serde_json::from_slice(&part(h)?)
        .map_err(|_| TokenError::Malformed("header is not JSON"))?;
    let claims: Value = serde_json::from_slice(&part(p)?)
        .map_err(|_| TokenError::Malformed("claims are not JSON"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.to_string()))
        .map_err(|_| TokenError::Algorithm(alg_name.to_string()))?;
    let default_algs = [CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
    let algs = if expected.algs.is_empty() {
        &default_algs[..]
    } else {
        expected.algs
    };
    let symmetric = alg_name.starts_with("HS");
    if matches!(alg, CoreJwsSigningAlgorithm::None) || symmetric || !algs.contains(&alg) {
        return Err(TokenError::Algorithm(alg_name.to_string()));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates: Vec<_> = jwks
        .keys()
        .iter()
        .filter(|k| match kid {
            Some(kid) => k.key_id().is_some_and(|x| x.as_str() == kid),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    let signing_input_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    let signing_input = &token.as_bytes()[..signing_input_len];
    if !candidates
        .iter()
        .any(|k| k.verify_signature(&alg, signing_input, &sig).is_ok())
    {
        return Err(TokenError::Signature);
    }
    check_claims(&claims, expected, now)?;
    Ok(claims)
}

/// The claim checks after the signature (pure; exposed for table tests).
pub fn check_claims(
    claims: &Value,
    expected: &Expected<'_>,
    now: SystemTime,
) -> Result<(), TokenError> {
    let want = expected.issuer.trim_end_matches('/');
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let got = iss.trim_end_matches('/');
    let bare = want.split_once("://").map(|(_, rest)| rest);
    if got != want && !(expected.accept_bare_issuer && bare == Some(got)) {
        return Err(TokenError::Issuer(iss.chars().take(100).collect()));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expected.client_id,
        Some(Value::Array(list)) => {
            let has = list.iter().any(|a| a.as_str() == Some(expected.client_id));
            // With several audiences, the authorized party must be us (OIDC Core 3.1.3.7).
            has && (list.len() == 1
                || claims.get("azp").and_then(Value::as_str) == Some(expected.client_id))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::Audience);
    }
    if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
        let multi = matches!(claims.get("aud"), Some(Value::Array(l)) if l.len() > 1);
        if multi && azp != expected.client_id {
            return Err(TokenError::Audience);
        }
    }
    let t = unix_secs(now);
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(TokenError::Time("no exp"))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(TokenError::Time("no iat"))?;
    if exp.saturating_add(CLOCK_SKEW_SECS) <= t {
        return Err(TokenError::Time("expired"));
    }
    if iat > t.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::Time("issued in the future"));
    }
    if exp.saturating_sub(iat) > MAX_LIFETIME_SECS {
        return Err(TokenError::Time("lifetime too long"));
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if expected.nonce.is_empty()
        || !super::constant_time_eq(nonce.as_bytes(), expected.nonce.as_bytes())
    {
        return Err(TokenError::Nonce);
    }
    Ok(())
}

/// `email_verified` as Google sends it: boolean, or the strings "true"/"false".
pub fn email_verified(claims: &Value) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn exp<'a>(nonce: &'a str, bare: bool) -> Expected<'a> {
        Expected {
            issuer: "https://accounts.google.com",
            accept_bare_issuer: bare,
            client_id: "cid",
            nonce,
            algs: &[],
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn claims(over: Value) -> Value {
        let mut base = json!({"iss": "https://accounts.google.com", "aud": "cid", "iat": 1000, "exp": 4600, "nonce": "n1", "sub": "1"});
        for (k, v) in over.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn claim_table() {
        use TokenError::*;
        let cases: Vec<(Value, bool, Result<(), TokenError>)> = vec![
            (claims(json!({})), false, Ok(())),
            (claims(json!({"iss": "accounts.google.com"})), true, Ok(())),
            (
                claims(json!({"iss": "accounts.google.com"})),
                false,
                Err(Issuer("accounts.google.com".into())),
            ),
            (
                claims(json!({"iss": "https://evil.com"})),
                true,
                Err(Issuer("https://evil.com".into())),
            ),
            (claims(json!({"aud": "other"})), false, Err(Audience)),
            (claims(json!({"aud": ["cid"]})), false, Ok(())),
            (
                claims(json!({"aud": ["cid", "x"], "azp": "cid"})),
                false,
                Ok(()),
            ),
            (claims(json!({"aud": ["cid", "x"]})), false, Err(Audience)),
            (
                claims(json!({"aud": ["cid", "x"], "azp": "x"})),
                false,
                Err(Audience),
            ),
            (claims(json!({"exp": 1200})), false, Err(Time("expired"))),
            (
                claims(json!({"iat": 9000, "exp": 9100})),
                false,
                Err(Time("issued in the future")),
            ),
            (
                claims(json!({"exp": 1000 + 86_401})),
                false,
                Err(Time("lifetime too long")),
            ),
            (claims(json!({"nonce": "n2"})), false, Err(Nonce)),
            (claims(json!({"nonce": null})), false, Err(Nonce)),
        ];
        for (c, bare, want) in cases {
            assert_eq!(check_claims(&c, &exp("n1", bare), at(2000)), want, "{c}");
        }
        assert_eq!(
            check_claims(&claims(json!({})), &exp("", false), at(2000)),
            Err(Nonce)
        );
    }

    #[test]
    fn malformed_and_unsigned_tokens() {
        let jwks: CoreJsonWebKeySet = serde_json::from_value(json!({"keys": []})).unwrap();
        let e = exp("n1", false);
        let b = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b(json!({"alg": "none"})), b(claims(json!({}))));
        assert_eq!(
            verify(&none, &jwks, &e, at(2000)),
            Err(TokenError::Algorithm("none".into()))
        );
        let hs = format!(
            "{}.{}.AAAA",
            b(json!({"alg": "HS256"})),
            b(claims(json!({})))
        );
        assert_eq!(
            verify(&hs, &jwks, &e, at(2000)),
            Err(TokenError::Algorithm("HS256".into()))
        );
        let rs = format!(
            "{}.{}.AAAA",
            b(json!({"alg": "RS256", "kid": "k"})),
            b(claims(json!({})))
        );
        assert_eq!(
            verify(&rs, &jwks, &e, at(2000)),
            Err(TokenError::UnknownKey)
        );
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(
                    verify(bad, &jwks, &e, at(2000)),
                    Err(TokenError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn email_verified_forms() {
        assert!(email_verified(&json!({"email_verified": true})));
        assert!(email_verified(&json!({"email_verified": "true"})));
        assert!(!email_verified(&json!({"email_verified": "false"})));
        assert!(!email_verified(&json!({"email_verified": false})));
        assert!(!email_verified(&json!({})));
        assert!(!email_verified(&json!({"email_verified": 1})));
    }
}
