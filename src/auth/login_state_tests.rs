//! Tests of the per-login state cookies: round trip, mismatch, replay, expiry,
//! tampering, and the bound on pending logins.

use super::*;
use std::time::UNIX_EPOCH;

fn states() -> LoginStates {
    LoginStates::new("_usher", &Secret::new("x".repeat(32)), &[], true).unwrap()
}

fn login(rd: &str, at: u64) -> LoginState {
    LoginState {
        idp: "google".into(),
        state: random_value(),
        nonce: random_value(),
        pkce_verifier: random_value(),
        rd: rd.into(),
        created_at: at,
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Applies Set-Cookie values to a cookie jar string like a browser would.
fn apply(jar: &str, set: &[String]) -> String {
    let mut cookies: Vec<(String, String)> = jar
        .split("; ")
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for sc in set {
        let pair = sc.split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        cookies.retain(|(name, _)| name != k);
        if !sc.contains("Max-Age=0") {
            cookies.push((k.to_string(), v.to_string()));
        }
    }
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn round_trip_then_replay_is_rejected() {
    let s = states();
    let l = login("/browse/X-1", 1000);
    let set = s.issue(&l, "", at(1000)).unwrap();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with(&format!("__Host-_usher_login_{}=", &l.state[..12])));
    assert!(
        set[0].contains("Max-Age=600")
            && set[0].contains("HttpOnly")
            && set[0].contains("SameSite=Lax")
    );
    let jar = apply("JSESSIONID=1", &set);
    let (back, clear) = s.take(&jar, &l.state, at(1100)).unwrap();
    assert_eq!(back, l);
    assert_eq!(back.redirect().as_str(), "/browse/X-1");
    assert!(clear[0].contains("Max-Age=0"));
    // Same callback again with the cookie still present (e.g. replayed request): refused.
    let err = s.take(&jar, &l.state, at(1101)).unwrap_err();
    assert_eq!(err.reason, DenialReason::ReplayedCallback);
    // And after the browser applied the clearing, the cookie is gone: also a replay.
    let jar = apply(&jar, &clear);
    let fresh = states();
    assert_eq!(
        fresh.take(&jar, &l.state, at(1101)).unwrap_err().reason,
        DenialReason::ReplayedCallback
    );
}

#[test]
fn state_mismatch_expiry_and_tampering() {
    let s = states();
    let l = login("/", 1000);
    let jar = apply("", &s.issue(&l, "", at(1000)).unwrap());
    // Another valid-looking state with the same id prefix but different tail.
    let mut other = l.state.clone();
    other.replace_range(20..22, if &other[20..22] == "AA" { "BB" } else { "AA" });
    assert_eq!(
        s.take(&jar, &other, at(1001)).unwrap_err().reason,
        DenialReason::StateMismatch
    );
    assert_eq!(
        s.take(&jar, "short", at(1001)).unwrap_err().reason,
        DenialReason::StateMismatch
    );
    assert_eq!(
        s.take(&jar, "", at(1001)).unwrap_err().reason,
        DenialReason::StateMismatch
    );
    assert_eq!(
        s.take(&jar, &l.state, at(1600)).unwrap_err().reason,
        DenialReason::LoginExpired
    );
    // Tampered cookie value.
    let name = format!("__Host-_usher_login_{}=", &l.state[..12]);
    let tampered = jar.replace(&name, &format!("{name}1.AAAA"));
    let err = states().take(&tampered, &l.state, at(1001)).unwrap_err();
    assert_eq!(err.reason, DenialReason::StateMismatch);
    // A cookie sealed under another secret.
    let foreign = LoginStates::new("_usher", &Secret::new("y".repeat(32)), &[], true).unwrap();
    let jar2 = apply("", &foreign.issue(&l, "", at(1000)).unwrap());
    assert_eq!(
        s.take(&jar2, &l.state, at(1001)).unwrap_err().reason,
        DenialReason::StateMismatch
    );
    // Errors never carry the state or nonce.
    assert!(!err.to_string().contains(&l.state) && !err.to_string().contains(&l.nonce));
    assert!(!format!("{l:?}").contains(&l.nonce));
}

#[test]
fn pending_logins_are_bounded_and_oldest_dropped() {
    let s = states();
    let mut jar = String::from("other=1");
    let mut logins = Vec::new();
    for i in 0..7u64 {
        let l = login("/", 1000 + i);
        jar = apply(&jar, &s.issue(&l, &jar, at(1000 + i)).unwrap());
        logins.push(l);
    }
    let count = jar.matches("__Host-_usher_login_").count();
    assert_eq!(count, MAX_PENDING, "{jar}");
    assert!(jar.contains("other=1"));
    // The newest four survive, the oldest three were dropped.
    for l in &logins[..3] {
        assert!(!jar.contains(&l.state[..12]));
    }
    for l in &logins[3..] {
        assert!(s.take(&jar, &l.state, at(1010)).is_ok());
    }
}

#[test]
fn expired_and_garbage_login_cookies_are_cleared_on_issue() {
    let s = states();
    let old = login("/", 1000);
    let mut jar = apply("", &s.issue(&old, "", at(1000)).unwrap());
    jar.push_str("; __Host-_usher_login_garbage00000=zzz");
    let new = login("/", 2000);
    let set = s.issue(&new, &jar, at(2000)).unwrap();
    let jar = apply(&jar, &set);
    assert_eq!(jar.matches("__Host-_usher_login_").count(), 1, "{jar}");
    assert!(jar.contains(&new.state[..12]));
}

#[test]
fn oversized_rd_is_refused_not_truncated() {
    let s = states();
    let mut l = login("/", 1000);
    l.rd = format!("/{}", "a".repeat(5000));
    assert!(matches!(
        s.issue(&l, "", at(1000)),
        Err(CookieError::TooLarge { .. })
    ));
}
