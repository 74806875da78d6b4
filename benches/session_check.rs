//! Per-request cost of the signed-in hot path: decode the encrypted session cookie,
//! check ttl/idle, look up the cached identity assertion, build the identity header
//! values. Target: <= 2 µs median on one core. Run: `cargo bench --bench session_check`.
//! `session_check_full` is the steady state (the browser sends the same cookie
//! value again: memo hit); `session_check_connection` is that on a keep-alive
//! connection remembering its last cookie (what the proxy does from a
//! connection's second request on); `session_check_first_sight` decrypts and parses.
// A benchmark harness, like a test: a broken fixture should stop it loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, Criterion};
use futures_util::FutureExt;
use usher::auth::assertion::{AssertionCache, AssertionSigner, ConnIdentityMemo};
use usher::config::Secret;
use usher::session::conn_memo::ConnCookieMemo;
use usher::session::decoded::DecodedCookies;
use usher::session::store::CookieStore;
use usher::session::{CookieCodec, CookiePayload, Session, SessionPolicy, Sessions};

fn fixture() -> (Sessions, Session, String) {
    let policy = SessionPolicy {
        ttl: Duration::from_secs(12 * 3600),
        idle_timeout: Duration::from_secs(2 * 3600),
        revalidate_after: Duration::from_secs(300),
    };
    let codec = CookieCodec::new(
        "_usher",
        "session",
        &Secret::new("k".repeat(48)),
        &[Secret::new("o".repeat(48))],
        true,
    )
    .expect("codec");
    let now = SystemTime::now();
    let mut session = Session::new(
        "google",
        "110169484474386276334",
        "ann.example@example.com",
        "ann.example",
        now,
    );
    session.groups = (0..10).map(|i| format!("jira-group-{i}")).collect();
    session.display_name = "Ann Example".into();
    let set = codec
        .encode(
            &CookiePayload::Full(std::sync::Arc::new(session.clone())),
            Some(policy.ttl),
        )
        .expect("encode");
    let ours: Vec<&str> = set
        .iter()
        .filter_map(|c| c.split(';').next())
        .filter(|p| p.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect();
    let header = format!(
        "JSESSIONID=0123456789ABCDEF0123456789ABCDEF; atlassian.xsrf.token=BWP3-NZB2-6EDY-6C7K|0123456789abcdef|lin; {}",
        ours.join("; ")
    );
    let sessions = Sessions::new(codec, Arc::new(CookieStore), policy);
    (sessions, session, header)
}

/// One signed-in request's check: resolve the session, then the cached identity
/// headers and assertion.
fn check(sessions: &Sessions, cache: &AssertionCache, header: &str) -> usize {
    let now = SystemTime::now();
    let s = sessions
        .resolve_shared(black_box(header), now)
        .now_or_never()
        .flatten()
        .expect("valid session");
    black_box(cache.headers_for(&s, now).expect("assertion"));
    s.username.len()
}

/// The same check on a keep-alive connection that remembers its last cookie and
/// identity headers: what the proxy does from a connection's second request on.
fn check_on_connection(
    sessions: &Sessions,
    cache: &AssertionCache,
    header: &str,
    memo: &(ConnCookieMemo, ConnIdentityMemo),
) -> usize {
    let now = SystemTime::now();
    let s = sessions
        .resolve_on_connection(black_box(header.as_bytes()), now, &memo.0)
        .now_or_never()
        .flatten()
        .expect("valid session");
    black_box(
        cache
            .headers_on_connection(&s, now, &memo.1)
            .expect("assertion"),
    );
    s.username.len()
}

fn bench(c: &mut Criterion) {
    let (sessions, session, header) = fixture();
    let signer = Arc::new(AssertionSigner::generate("https://jira.example.com").expect("signer"));
    let cache = AssertionCache::new(signer, "jira");
    let now = SystemTime::now();
    cache.header_for(&session, now).expect("warm cache");
    println!("cookie header bytes: {}", header.len());

    c.bench_function("decode_cookie_only", |b| {
        b.iter(|| black_box(sessions.codec.decode::<CookiePayload>(black_box(&header))))
    });

    c.bench_function("session_check_full", |b| {
        b.iter(|| black_box(check(&sessions, &cache, &header)))
    });

    let memo = (ConnCookieMemo::default(), ConnIdentityMemo::default());
    c.bench_function("session_check_connection", |b| {
        b.iter(|| black_box(check_on_connection(&sessions, &cache, &header, &memo)))
    });

    // The first request with a cookie value (after sign-in or a touch): the memo
    // misses and the cookie is decrypted and parsed.
    let uncached = Sessions {
        decoded: Arc::new(DecodedCookies::with_capacity(0)),
        ..sessions.clone()
    };
    c.bench_function("session_check_first_sight", |b| {
        b.iter(|| black_box(check(&uncached, &cache, &header)))
    });
}

/// `USHER_BENCH_LOOP=N`: run the full check N times and exit, for measuring CPU time
/// with `perf stat -e task-clock` (immune to preemption on a busy shared machine):
/// (task-clock(N) - task-clock(0)) / N is the per-request cost.
fn fixed_loop(n: u64) {
    let (sessions, session, header) = fixture();
    let signer = Arc::new(AssertionSigner::generate("https://jira.example.com").expect("signer"));
    let cache = AssertionCache::new(signer, "jira");
    cache
        .headers_for(&session, SystemTime::now())
        .expect("warm cache");
    for _ in 0..n {
        black_box(check(&sessions, &cache, &header));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench, pieces
}
fn main() {
    if let Some(n) = std::env::var("USHER_BENCH_LOOP")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        fixed_loop(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

#[allow(dead_code)]
fn pieces(c: &mut Criterion) {
    let (sessions, session, header) = fixture();
    let json = serde_json::to_string(&CookiePayload::Full(std::sync::Arc::new(session.clone())))
        .expect("json");
    println!("json bytes: {}", json.len());
    c.bench_function("piece_serde_parse", |b| {
        b.iter(|| black_box(serde_json::from_str::<CookiePayload>(black_box(&json)).ok()))
    });
    let key = cookie::Key::from(&[7u8; 64]);
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&key)
        .add(cookie::Cookie::new("__Host-_usher", json.clone()));
    let sealed = jar
        .get("__Host-_usher")
        .map(|c| c.value().to_string())
        .expect("sealed");
    c.bench_function("piece_private_jar_decrypt", |b| {
        b.iter(|| {
            let jar = cookie::CookieJar::new();
            black_box(jar.private(&key).decrypt(cookie::Cookie::new(
                "__Host-_usher",
                black_box(sealed.clone()),
            )))
        })
    });
    let _ = (sessions, header);
}
