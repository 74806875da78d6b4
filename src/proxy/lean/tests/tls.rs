//! The lean exchange over TLS (`https://` upstreams): the same framing, pooling,
//! idle checks and retry as over plain TCP.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;

use super::*;

#[tokio::test]
async fn bodies_and_keep_alive_reuse_over_tls() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n";
    let up = raw_tls(vec![vec![
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"),
        Reply {
            pieces: chunked.chunks(5).map(|c| c.to_vec()).collect(),
            close: false,
            gap: Duration::from_millis(1),
        },
        reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]])
    .await;
    let (parts, body) = fetch(&up, get("/one")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.unwrap(), "first");
    assert_eq!(up.pool.idle_lean_count(), 1);
    let (_, body) = fetch(&up, get("/two")).await;
    assert_eq!(body.unwrap(), "hello world");
    let (parts, body) = fetch(&up, get("/three")).await;
    assert_eq!(parts.status, StatusCode::NO_CONTENT);
    assert!(body.unwrap().is_empty());
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1, "one TLS connection");
    let reqs = up.requests.lock().unwrap().clone();
    assert_eq!(reqs[0], "GET /one HTTP/1.1\r\nhost: app.test\r\n\r\n");
}

#[tokio::test]
async fn body_until_close_over_tls() {
    let up = raw_tls(vec![vec![Reply {
        pieces: vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ".to_vec(), b"close".to_vec()],
        close: true,
        gap: Duration::from_millis(2),
    }]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "until close");
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn eof_mid_body_over_tls_is_a_body_error() {
    let up = raw_tls(vec![vec![closing(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
    )]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert!(body
        .unwrap_err()
        .to_string()
        .contains("6 bytes before the end"));
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn idle_tls_connection_closed_by_the_upstream_is_not_reused() {
    let up = raw_tls(vec![
        vec![closing(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, body) = fetch(&up, get("/again")).await;
    assert_eq!(body.unwrap(), "two");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
    assert_eq!(up.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn reused_tls_connection_closed_before_any_byte_is_retried_once() {
    let up = raw_tls(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            closing(b""),
        ],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    let (_, body) = fetch(&up, get("/again")).await;
    assert_eq!(body.unwrap(), "two");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
    assert_eq!(up.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn untrusted_tls_upstream_is_bad_gateway() {
    // The pool trusts a different certificate than the upstream presents.
    let up = raw_tls(vec![vec![reply(b"HTTP/1.1 200 OK\r\n\r\n")]]).await;
    let other = raw_tls(vec![]).await;
    let pool = UpstreamPool::new(Arc::new(UpstreamTarget {
        tls: other.pool.target.tls.clone(),
        ..target(up.pool.target.port)
    }));
    let Err(e) = forward(&pool, get("/"), tokio::time::Instant::now()).await else {
        panic!("an untrusted certificate was accepted");
    };
    assert!(cause(&e).contains("connect failed"), "{e}");
}
