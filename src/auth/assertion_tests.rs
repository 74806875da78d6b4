//! Tests of the identity assertion: verification against the published JWKS with an
//! independent implementation (openidconnect's JWK code), claims, caching, key files.

use super::*;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use std::time::{Duration, UNIX_EPOCH};

fn session() -> Session {
    let mut s = Session::new(
        "google",
        "110169484474386276334",
        "ann@example.com",
        "ann",
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    s.groups = vec!["eng".into(), "jira-users".into()];
    s.display_name = "Ann Example".into();
    s
}

/// Verifies `token` with the JWKS JSON and returns its header and claims.
fn verify(jwks_json: &str, token: &str) -> (serde_json::Value, AssertionClaims) {
    let jwks: CoreJsonWebKeySet = serde_json::from_str(jwks_json).unwrap();
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert!(parts.next().is_none());
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|x| x.as_str()) == Some(kid))
        .expect("kid in JWKS");
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    key.verify_signature(
        &CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        format!("{h}.{p}").as_bytes(),
        &sig,
    )
    .expect("signature verifies with the JWKS");
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (header, claims)
}

#[test]
fn token_verifies_with_jwks_and_carries_the_claims() {
    let signer = AssertionSigner::generate("https://jira.example.com/").unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    let token = signer
        .sign(&signer.claims(&session(), "jira", now))
        .unwrap();
    let (header, claims) = verify(signer.jwks_json(), &token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], signer.kid());
    assert_eq!(claims.iss, "https://jira.example.com");
    assert_eq!(claims.aud, "jira");
    assert_eq!(claims.sub, "110169484474386276334");
    assert_eq!(claims.idp, "google");
    assert_eq!(claims.email, "ann@example.com");
    assert_eq!(claims.username, "ann");
    assert_eq!(claims.groups, vec!["eng", "jira-users"]);
    assert_eq!(claims.name, "Ann Example");
    assert_eq!(claims.iat, 1_700_000_100);
    assert!(claims.exp > claims.iat && claims.exp - claims.iat <= 60);
}

#[test]
fn tampered_token_or_foreign_key_fails_verification() {
    let signer = AssertionSigner::generate("https://jira.example.com").unwrap();
    let other = AssertionSigner::generate("https://jira.example.com").unwrap();
    let token = signer
        .sign(&signer.claims(&session(), "jira", SystemTime::now()))
        .unwrap();
    let jwks: CoreJsonWebKeySet = serde_json::from_str(signer.jwks_json()).unwrap();
    let other_jwks: CoreJsonWebKeySet = serde_json::from_str(other.jwks_json()).unwrap();
    let (hp, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let (h, p) = hp.split_once('.').unwrap();
    let mut claims: AssertionClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    claims.username = "admin".into();
    let forged = format!(
        "{h}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let alg = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
    assert!(jwks.keys()[0]
        .verify_signature(&alg, hp.as_bytes(), &sig)
        .is_ok());
    assert!(jwks.keys()[0]
        .verify_signature(&alg, format!("{hp}x").as_bytes(), &sig)
        .is_err());
    assert!(jwks.keys()[0]
        .verify_signature(&alg, forged.as_bytes(), &sig)
        .is_err());
    assert!(other_jwks.keys()[0]
        .verify_signature(&alg, hp.as_bytes(), &sig)
        .is_err());
    assert_ne!(signer.kid(), other.kid());
}

#[test]
fn cache_reuses_until_near_expiry_and_after_revalidation_resigns() {
    let signer = Arc::new(AssertionSigner::generate("https://jira.example.com").unwrap());
    let cache = AssertionCache::new(signer.clone(), "jira");
    let mut s = session();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let first = cache.header_for(&s, t0).unwrap();
    let again = cache.header_for(&s, t0 + Duration::from_secs(39)).unwrap();
    assert_eq!(first, again, "same token while more than 20 s remain");
    let renewed = cache.header_for(&s, t0 + Duration::from_secs(41)).unwrap();
    assert_ne!(first, renewed, "re-signed when it nears expiry");
    let (_, claims) = verify(signer.jwks_json(), renewed.to_str().unwrap());
    assert_eq!(claims.iat, 1_700_000_041);
    // A re-validated session (new groups) gets a new token at once.
    s.groups.push("new-group".into());
    s.revalidated_at += 50;
    let after = cache.header_for(&s, t0 + Duration::from_secs(42)).unwrap();
    let (_, claims) = verify(signer.jwks_json(), after.to_str().unwrap());
    assert!(claims.groups.contains(&"new-group".to_string()));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.sweep(t0 + Duration::from_secs(200)), 1);
    assert!(cache.is_empty());
    let both = cache.headers_for(&s, t0).unwrap();
    assert!(Arc::ptr_eq(
        &both,
        &cache.headers_for(&s, t0 + Duration::from_secs(1)).unwrap()
    ));
    assert_eq!(
        both.values.as_ref().unwrap().groups,
        "eng,jira-users,new-group"
    );
    cache.forget(&s.id);
    assert!(cache.is_empty());
}

#[test]
fn key_file_is_created_once_and_reused() {
    let tmp = crate::test_support::temp_dir("assert");
    let dir = tmp.path().join("state");
    let a = AssertionSigner::load_or_create("https://x", &dir).unwrap();
    let b = AssertionSigner::load_or_create("https://x", &dir).unwrap();
    assert_eq!(a.kid(), b.kid());
    assert_eq!(a.jwks_json(), b.jwks_json());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
    let err = AssertionSigner::load_or_create("https://x", &dir).unwrap_err();
    assert!(err.to_string().contains("delete the file"), "{err}");
    tmp.close().unwrap();
}

#[test]
fn replicas_starting_together_agree_on_one_key() {
    let tmp = crate::test_support::temp_dir("assert");
    let dir = tmp.path().join("state");
    let kids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| AssertionSigner::load_or_create("https://x", &dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .expect("every replica starts")
                    .kid()
                    .to_owned()
            })
            .collect()
    });
    assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from(KEY_FILE)],
        "no temporary files left"
    );
    tmp.close().unwrap();
}

#[test]
fn identity_values_are_built_and_refuse_injection() {
    let v = identity_values(&session()).unwrap();
    assert_eq!(v.user, "ann");
    assert_eq!(v.email, "ann@example.com");
    assert_eq!(v.groups, "eng,jira-users");
    let mut bad = session();
    bad.username = "ann\r\nX-Forwarded-User: admin".into();
    assert_eq!(identity_values(&bad), None);
    let mut comma = session();
    comma.groups.push("a,jira-administrators".into());
    assert_eq!(identity_values(&comma), None);
    let mut empty = session();
    empty.groups.clear();
    assert_eq!(identity_values(&empty).unwrap().groups, "");
}

#[test]
fn a_connection_sends_its_own_copy_of_the_cached_token_until_it_must_change() {
    let signer = Arc::new(AssertionSigner::generate("https://jira.example.com").unwrap());
    let jira = AssertionCache::new(signer.clone(), "jira");
    let wiki = AssertionCache::new(signer.clone(), "confluence");
    let memo = ConnIdentityMemo::default();
    let mut s = session();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let shared = jira.headers_for(&s, t0).unwrap();
    let first = jira.headers_on_connection(&s, t0, &memo).unwrap();
    let again = jira
        .headers_on_connection(&s, t0 + Duration::from_secs(1), &memo)
        .unwrap();
    assert_eq!(
        first.assertion, shared.assertion,
        "the cached token, not a new one"
    );
    assert_ne!(
        first.assertion.as_bytes().as_ptr(),
        shared.assertion.as_bytes().as_ptr(),
        "in bytes of the connection's own"
    );
    assert!(Arc::ptr_eq(&first, &again));
    // Another upstream's cache has its own audience: never the remembered token.
    let other = wiki
        .headers_on_connection(&s, t0 + Duration::from_secs(2), &memo)
        .unwrap();
    let (_, claims) = verify(signer.jwks_json(), other.assertion.to_str().unwrap());
    assert_eq!(claims.aud, "confluence");
    // Near expiry, or after re-validation, a fresh token.
    let late = jira
        .headers_on_connection(&s, t0 + Duration::from_secs(41), &memo)
        .unwrap();
    assert_ne!(late.assertion, first.assertion);
    s.revalidated_at += 50;
    let after = jira
        .headers_on_connection(&s, t0 + Duration::from_secs(42), &memo)
        .unwrap();
    assert_ne!(after.assertion, late.assertion);
    // Another session on the connection gets its own.
    let mut other_person = session();
    other_person.id = "another-session".into();
    other_person.username = "someone".into();
    let theirs = jira
        .headers_on_connection(&other_person, t0 + Duration::from_secs(43), &memo)
        .unwrap();
    assert_eq!(theirs.values.as_ref().unwrap().user, "someone");
    assert!(!format!("{memo:?}").contains(after.assertion.to_str().unwrap()));
}
