//! Tests of the session lifetime rules and the `Sessions` façade.

use super::*;
use crate::config::Secret;
use std::time::Duration;

pub(crate) fn policy() -> SessionPolicy {
    SessionPolicy {
        ttl: Duration::from_secs(12 * 3600),
        idle_timeout: Duration::from_secs(2 * 3600),
        revalidate_after: Duration::from_secs(300),
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn ttl_and_idle_are_enforced_at_the_boundary() {
    let p = policy();
    let mut s = Session::new("google", "sub-1", "a@example.com", "a", at(1_000_000));
    assert_eq!(s.check(&p, at(1_000_000)), Ok(()));
    assert_eq!(s.check(&p, at(1_000_000 + 7199)), Ok(()));
    assert_eq!(s.check(&p, at(1_000_000 + 7200)), Err(SessionEnd::Idle));
    // Activity keeps it alive until the absolute ttl.
    for step in 1..=12 {
        s.touch(at(1_000_000 + step * 3600 - 1));
    }
    assert_eq!(s.check(&p, at(1_000_000 + 12 * 3600 - 1)), Ok(()));
    assert_eq!(
        s.check(&p, at(1_000_000 + 12 * 3600)),
        Err(SessionEnd::Expired)
    );
    assert_eq!(
        s.remaining(&p, at(1_000_000 + 11 * 3600)),
        Duration::from_secs(3600)
    );
}

#[test]
fn timestamps_from_the_future_are_refused() {
    let s = Session::new("google", "sub-1", "a@example.com", "a", at(2_000_000));
    assert_eq!(
        s.check(&policy(), at(1_000_000)),
        Err(SessionEnd::FromTheFuture)
    );
    assert_eq!(s.check(&policy(), at(2_000_000 - 30)), Ok(()));
}

#[test]
fn touch_and_revalidation_due() {
    let p = policy();
    let mut s = Session::new("google", "sub-1", "a@example.com", "a", at(100));
    assert!(!s.touch_due(&p, at(159)));
    assert!(s.touch_due(&p, at(160)));
    s.touch(at(160));
    assert_eq!(s.last_seen, 160);
    s.touch(at(150)); // never moves backwards
    assert_eq!(s.last_seen, 160);
    assert!(!s.revalidation_due(&p, at(399)));
    assert!(s.revalidation_due(&p, at(400)));
}

#[test]
fn session_ids_are_random_and_long() {
    let a = new_session_id();
    let b = new_session_id();
    assert_ne!(a, b);
    assert_eq!(a.len(), 43);
}

fn sessions(store: Arc<dyn SessionStore>) -> Sessions {
    let codec =
        CookieCodec::new("_usher", "session", &Secret::new("k".repeat(32)), &[], true).unwrap();
    Sessions::new(codec, store, policy())
}

fn header_from(set_cookies: &[String]) -> String {
    set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `who` signed in at `at` with a `kind` store: the façade and the `Cookie`
/// header a browser would send next.
async fn signed_in(kind: SessionStoreKind, who: &Session, at: SystemTime) -> (Sessions, String) {
    let sessions = Sessions::from_settings(&settings(kind), false)
        .await
        .unwrap();
    let header = header_from(&sessions.issue(who, at).await.unwrap());
    (sessions, header)
}

#[tokio::test]
async fn facade_issue_resolve_end_with_memory_store() {
    let store = store::MemoryStore::new();
    let s = sessions(store.clone());
    let now = SystemTime::now();
    let session = Session::new("google", "sub-9", "z@example.com", "z", now);
    let set = s.issue(&session, now).await.unwrap();
    assert!(set[0].starts_with("__Host-_usher="));
    let header = format!("other=1; {}", header_from(&set));
    assert_eq!(s.resolve(&header, now).await, Some(session.clone()));
    // Idle past the timeout: gone.
    assert_eq!(
        s.resolve(&header, now + Duration::from_secs(7201)).await,
        None
    );
    let cleared = s.end(&header).await;
    assert_eq!(cleared.len(), cookie::MAX_CHUNKS);
    assert!(store.is_empty());
    assert_eq!(s.resolve(&header, now).await, None);
}

#[tokio::test]
async fn facade_with_cookie_store_needs_no_server_state() {
    let s = sessions(Arc::new(store::CookieStore));
    let now = SystemTime::now();
    let mut session = Session::new("google", "sub-9", "z@example.com", "z", now);
    session.groups = (0..400)
        .map(|i| format!("group-number-{i}@example.com"))
        .collect();
    let set = s.issue(&session, now).await.unwrap();
    let header = header_from(&set);
    assert!(
        header.contains("__Host-_usher_1="),
        "large sessions are chunked"
    );
    assert_eq!(s.resolve(&header, now).await, Some(session));
    assert_eq!(s.resolve("", now).await, None);
    assert_eq!(s.resolve("__Host-_usher=garbage", now).await, None);
}

fn settings(store: crate::config::SessionStoreKind) -> crate::config::SessionSettings {
    crate::config::SessionSettings {
        secret: Secret::new("n".repeat(32)),
        previous_secrets: vec![Secret::new("o".repeat(32))],
        cookie_name: "_usher".into(),
        ttl: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
        revalidate_after: Duration::from_secs(60),
        store,
        redis_url: None,
    }
}

#[tokio::test]
async fn from_settings_builds_each_store() {
    use crate::config::SessionStoreKind;
    let s = Sessions::from_settings(&settings(SessionStoreKind::Cookie), true)
        .await
        .unwrap();
    assert_eq!(s.store.kind(), "cookie");
    assert_eq!(s.codec.name(), "__Host-_usher");
    assert_eq!(s.policy.idle_timeout, Duration::from_secs(600));
    let names = s.cookie_names("__Host-_usher_login_");
    assert!(names.is_ours("__Host-_usher_2") && names.is_ours("__Host-_usher_login_abc"));
    let m = Sessions::from_settings(&settings(SessionStoreKind::Memory), false)
        .await
        .unwrap();
    assert_eq!(m.store.kind(), "memory");
    assert_eq!(m.codec.name(), "_usher");
    let now = SystemTime::now();
    let session = Session::new("google", "s", "e@example.com", "e", now);
    let header = header_from(&m.issue(&session, now).await.unwrap());
    assert_eq!(m.resolve(&header, now).await, Some(session));
    let err = Sessions::from_settings(&settings(SessionStoreKind::Redis), true)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::MissingRedisUrl), "{err}");
    // Rotation: a cookie made with the previous secret still resolves.
    let mut old = settings(SessionStoreKind::Cookie);
    old.secret = Secret::new("o".repeat(32));
    old.previous_secrets.clear();
    let old = Sessions::from_settings(&old, true).await.unwrap();
    let session = Session::new("google", "s2", "f@example.com", "f", now);
    let header = header_from(&old.issue(&session, now).await.unwrap());
    assert_eq!(s.resolve(&header, now).await, Some(session));
}

#[tokio::test]
async fn activity_keeps_a_cookie_session_alive_past_the_idle_timeout() {
    let s = sessions(Arc::new(store::CookieStore));
    let t0 = SystemTime::now();
    let mut session = Session::new("google", "sub-a", "a@example.com", "a", t0);
    let mut header = header_from(&s.issue(&session, t0).await.unwrap());
    // Not due yet: nothing to send.
    assert_eq!(
        s.touch_if_due(&mut session, t0 + Duration::from_secs(10))
            .await
            .unwrap(),
        None
    );
    // A request every 30 minutes for 3 hours (idle timeout is 2 h).
    for step in 1..=6u64 {
        let now = t0 + Duration::from_secs(step * 1800);
        let mut current = s.resolve(&header, now).await.expect("still signed in");
        if let Some(set) = s.touch_if_due(&mut current, now).await.unwrap() {
            header = header_from(&set);
        }
        assert_eq!(current.last_seen, crate::session::unix_secs(now));
    }
    // Then silence longer than the idle timeout ends it.
    let later = t0 + Duration::from_secs(6 * 1800 + 7201);
    assert_eq!(s.resolve(&header, later).await, None);
}

#[tokio::test]
async fn the_decode_memo_never_skips_expiry_or_accepts_a_tampered_value() {
    let s = sessions(Arc::new(store::CookieStore));
    let now = SystemTime::now();
    let session = Session::new("google", "sub-m", "m@example.com", "m", now);
    let header = header_from(&s.issue(&session, now).await.unwrap());
    assert!(s.decoded.is_empty());
    assert_eq!(s.resolve(&header, now).await, Some(session.clone()));
    assert_eq!(s.decoded.len(), 1, "a value that opened is remembered");
    assert_eq!(s.resolve(&header, now).await, Some(session.clone()));
    // Remembered, yet past the idle timeout it is no session.
    assert_eq!(
        s.resolve(&header, now + Duration::from_secs(7201)).await,
        None
    );
    // One character changed: a different value, decrypted (and refused), never memoized.
    let (name, value) = header.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    assert_eq!(s.resolve(&tampered, now).await, None);
    assert_eq!(s.decoded.len(), 1, "failures are not remembered");
}

#[test]
fn a_held_token_never_shows_in_debug_output_but_survives_the_cookie() {
    let mut s = Session::new("google", "sub-t", "t@example.com", "t", SystemTime::now());
    s.revoke_token = Some(HeldToken::new(&Secret::new("ya29.secret-value")));
    let shown = format!("{s:?}");
    assert!(!shown.contains("ya29"), "{shown}");
    let json = serde_json::to_string(&s).unwrap();
    let back: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.revoke_token.map(|t| t.secret().expose().to_string()),
        Some("ya29.secret-value".to_string())
    );
    // Sessions without one keep their old, shorter form.
    let plain = Session::new("google", "sub-u", "u@example.com", "u", SystemTime::now());
    assert!(!serde_json::to_string(&plain).unwrap().contains("\"k\""));
}

#[tokio::test]
async fn the_request_path_shares_the_memo_copy_and_still_checks_lifetimes() {
    let s = Sessions::from_settings(&settings(SessionStoreKind::Cookie), false)
        .await
        .unwrap();
    let now = SystemTime::now();
    let session = Session::new("google", "s", "e@example.com", "e", now);
    let header = header_from(&s.issue(&session, now).await.unwrap());
    let first = s.resolve_shared(&header, now).await.unwrap();
    let second = s.resolve_shared(&header, now).await.unwrap();
    assert_eq!(*first, session);
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second request reads the memo's copy"
    );
    // A change on the request path copies; the memo's copy stays as it was.
    let mut changed = second.clone();
    Arc::make_mut(&mut changed).touch(now + Duration::from_secs(120));
    assert_eq!(
        s.resolve_shared(&header, now).await.unwrap().last_seen,
        session.last_seen
    );
    // The memo never lets an expired session through.
    assert_eq!(
        s.resolve_shared(&header, now + Duration::from_secs(13 * 3600))
            .await,
        None
    );
    // Memory store: the cookie holds a reference; the session comes from the store.
    let m = Sessions::from_settings(&settings(SessionStoreKind::Memory), false)
        .await
        .unwrap();
    let header = header_from(&m.issue(&session, now).await.unwrap());
    assert_eq!(
        m.resolve_shared(&header, now).await.as_deref(),
        Some(&session)
    );
    m.store.revoke(&session.id).await.unwrap();
    assert_eq!(
        m.resolve_shared(&header, now).await,
        None,
        "revocation is seen through the memo"
    );
}

#[tokio::test]
async fn a_connection_remembers_its_cookie_but_never_skips_a_check() {
    use super::conn_memo::ConnCookieMemo;
    let now = SystemTime::now();
    let alice = Session::new("google", "a", "a@example.com", "a", now);
    let bob = Session::new("google", "b", "b@example.com", "b", now);
    // Cookie store: the second request on the connection reads the
    // connection's own copy, not the memo every worker shares.
    let c = Sessions::from_settings(&settings(SessionStoreKind::Cookie), false)
        .await
        .unwrap();
    let memo = ConnCookieMemo::default();
    let a_header = header_from(&c.issue(&alice, now).await.unwrap());
    let first = c
        .resolve_on_connection(a_header.as_bytes(), now, &memo)
        .await
        .unwrap();
    let second = c
        .resolve_on_connection(a_header.as_bytes(), now, &memo)
        .await
        .unwrap();
    let shared = c.resolve_shared(&a_header, now).await.unwrap();
    assert_eq!((*first).clone(), alice);
    assert!(Arc::ptr_eq(&first, &second), "remembered by the connection");
    assert!(
        !Arc::ptr_eq(&first, &shared),
        "a copy of the connection's own"
    );
    // Another cookie on the same connection is another person.
    let b_header = header_from(&c.issue(&bob, now).await.unwrap());
    let b = c
        .resolve_on_connection(b_header.as_bytes(), now, &memo)
        .await
        .unwrap();
    assert_eq!(b.sub, "b");
    // Garbage is never remembered, and a remembered session still expires.
    assert_eq!(
        c.resolve_on_connection(b"_usher=1.garbage", now, &memo)
            .await,
        None
    );
    // A session cookie that is not UTF-8 is no session usher sealed; another
    // site's cookie that is not UTF-8 does not hide a real one.
    assert_eq!(
        c.resolve_on_connection(b"_usher=1.\xff", now, &memo).await,
        None
    );
    let mut latin1 = b"city=Z\xfcrich; ".to_vec();
    latin1.extend_from_slice(a_header.as_bytes());
    let found = c.resolve_on_connection(&latin1, now, &memo).await;
    assert_eq!(found.map(|s| s.sub.clone()), Some("a".to_string()));
    assert_eq!(
        c.resolve_on_connection(
            a_header.as_bytes(),
            now + Duration::from_secs(2 * 3600),
            &memo
        )
        .await,
        None
    );
    // Memory store: revocation is seen on the very next request of the connection.
    let (m, header) = signed_in(SessionStoreKind::Memory, &alice, now).await;
    let memo = ConnCookieMemo::default();
    assert!(m
        .resolve_on_connection(header.as_bytes(), now, &memo)
        .await
        .is_some());
    assert!(m
        .resolve_on_connection(header.as_bytes(), now, &memo)
        .await
        .is_some());
    m.store.revoke(&alice.id).await.unwrap();
    assert_eq!(
        m.resolve_on_connection(header.as_bytes(), now, &memo).await,
        None
    );
}

#[tokio::test]
async fn a_refreshed_cookie_is_resealed_once_per_connection_not_per_request() {
    use super::conn_memo::ConnCookieMemo;
    let t0 = SystemTime::now();
    let alice = Session::new("google", "a", "a@example.com", "a", t0);
    let (c, old) = signed_in(SessionStoreKind::Cookie, &alice, t0).await;
    let memo = ConnCookieMemo::default();
    // A minute on, the idle clock is due a refresh: the cookie is re-sealed.
    let t1 = t0 + Duration::from_secs(61);
    let mut s = c
        .resolve_on_connection(old.as_bytes(), t1, &memo)
        .await
        .unwrap();
    assert!(s.touch_due(&c.policy, t1));
    let set = c.touch_if_due(Arc::make_mut(&mut s), t1).await.unwrap();
    assert!(set.is_some_and(|set| !set.is_empty()), "re-sealed once");
    c.remember_refresh(old.as_bytes(), &s, &memo);
    // The client sends the old cookie again (it has not stored the new one yet,
    // or never will): on this connection it reads as the refreshed session.
    let t1b = t1 + Duration::from_secs(1);
    let again = c
        .resolve_on_connection(old.as_bytes(), t1b, &memo)
        .await
        .unwrap();
    assert_eq!(again.last_seen, s.last_seen);
    assert!(!again.touch_due(&c.policy, t1b), "not due again");
    // Activity on this connection keeps it past the old cookie's idle limit ...
    let t2 = t0 + Duration::from_secs(600 + 30);
    assert!(c
        .resolve_on_connection(old.as_bytes(), t2, &memo)
        .await
        .is_some());
    // ... another connection reads the old cookie as it is: idle-expired ...
    assert_eq!(
        c.resolve_on_connection(old.as_bytes(), t2, &ConnCookieMemo::default())
            .await,
        None
    );
    // ... and the absolute ttl still counts from the sign-in.
    let past_ttl = t0 + Duration::from_secs(3600 + 1);
    assert_eq!(
        c.resolve_on_connection(old.as_bytes(), past_ttl, &memo)
            .await,
        None
    );
    // A server-side store holds the refreshed session itself; the connection
    // keeps naming it, so revocation is still seen on the next request.
    let (m, h) = signed_in(SessionStoreKind::Memory, &alice, t0).await;
    let memo = ConnCookieMemo::default();
    let s = m
        .resolve_on_connection(h.as_bytes(), t1, &memo)
        .await
        .unwrap();
    m.remember_refresh(h.as_bytes(), &s, &memo);
    assert!(matches!(
        memo.get(h.as_bytes()),
        Some(CookiePayload::Ref { .. })
    ));
    m.store.revoke(&alice.id).await.unwrap();
    assert_eq!(m.resolve_on_connection(h.as_bytes(), t1, &memo).await, None);
}
