//! Connection reuse on the lean path: what goes back to the pool, idle checks,
//! the one retry of a stale reused connection, timeouts and refused connects.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use http_body::Body as _;

use super::*;

#[tokio::test]
async fn idle_connection_closed_by_the_upstream_is_not_reused() {
    let up = raw(vec![
        vec![closing(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    assert_eq!(up.pool.idle_lean_count(), 1, "looked reusable");
    // Let the upstream's close arrive: the checkout notices it and connects anew.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (parts, body) = fetch(&up, get("/again")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.unwrap(), "two");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
    assert_eq!(up.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn bytes_arriving_on_an_idle_connection_retire_it() {
    let up = raw(vec![
        vec![Reply {
            pieces: vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none".to_vec(),
                b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ],
            close: false,
            gap: Duration::from_millis(100),
        }],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    assert_eq!(up.pool.idle_lean_count(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (parts, body) = fetch(&up, get("/again")).await;
    assert_eq!(
        parts.status,
        StatusCode::OK,
        "the unsolicited 408 was taken as the answer"
    );
    assert_eq!(body.unwrap(), "two");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn reused_connection_closed_before_any_response_byte_is_retried_once() {
    let up = raw(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            // Reads the next request, then closes without a byte.
            closing(b""),
        ],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    let (parts, body) = fetch(&up, get("/again")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.unwrap(), "two");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
    let reqs = up.requests.lock().unwrap().clone();
    assert_eq!(
        reqs.len(),
        3,
        "sent on the stale connection, then once more"
    );
    assert_eq!(reqs[1], reqs[2]);
}

#[tokio::test]
async fn reused_connection_reset_before_any_response_byte_is_retried_once() {
    let up = raw(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            Reply {
                pieces: vec![],
                close: true,
                gap: Duration::ZERO,
            },
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
async fn a_bodyless_post_is_not_repeated_after_it_was_sent() {
    let up = raw(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            // Reads the POST (it may have acted on it), then closes without a byte.
            closing(b""),
        ],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    let post = Request::post("/rest/api/2/issue/ABC-1/transitions?to=done")
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap();
    let e = error_of(&up, post).await;
    assert!(cause(&e).contains("closed before a response"), "{e}");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1, "no second connection");
    assert_eq!(
        up.requests.lock().unwrap().len(),
        2,
        "the POST reached the upstream once"
    );
}

#[tokio::test]
async fn the_retry_happens_only_once() {
    let up = raw(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            closing(b""),
        ],
        vec![closing(b"")],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    let e = error_of(&up, get("/again")).await;
    assert!(cause(&e).contains("closed before a response"), "{e}");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn reused_connection_failing_mid_head_is_not_retried() {
    let up = raw(vec![
        vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            closing(b"HTTP/1.1 200 OK\r\n"),
        ],
        vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")],
    ])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "one");
    let e = error_of(&up, get("/again")).await;
    assert!(cause(&e).contains("before a complete response head"), "{e}");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn eof_before_any_byte_on_a_fresh_connection_is_not_retried() {
    let up = raw(vec![
        vec![closing(b"")],
        vec![reply(b"HTTP/1.1 200 OK\r\n\r\n")],
    ])
    .await;
    let e = error_of(&up, get("/")).await;
    assert!(cause(&e).contains("closed before a response"), "{e}");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_close_and_http10_responses_are_not_pooled() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    )]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert!(!parts.headers.contains_key("connection"));
    assert_eq!(up.pool.idle_lean_count(), 0);

    let up = raw(vec![vec![reply(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    )]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\n\
          Upgrade: h2c\r\nX-Kept: k\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
          Content-Length: 2\r\n\r\nok",
    )]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(!parts.headers.contains_key(gone), "{gone} forwarded");
    }
    assert_eq!(parts.headers["x-kept"], "k");
    let cookies: Vec<_> = parts.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(up.pool.idle_lean_count(), 1);
}

#[tokio::test]
async fn custom_reason_phrase_is_kept() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
    )]])
    .await;
    let resp = forward(&up.pool, get("/"), tokio::time::Instant::now())
        .await
        .unwrap();
    let phrase = resp.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
    assert_eq!(phrase.as_bytes(), b"Fine Thanks");
    // A zero-length body ends at once and frees the connection.
    assert!(resp.body().is_end_stream());
    assert_eq!(up.pool.idle_lean_count(), 1);
}

#[tokio::test]
async fn slow_upstream_is_gateway_timeout() {
    let up = raw_with(
        vec![vec![Reply {
            pieces: vec![b"HTTP/1.1 200 OK\r\n".to_vec()],
            close: false,
            gap: Duration::from_millis(2),
        }]],
        Duration::from_millis(200),
        false,
    )
    .await;
    let e = error_of(&up, get("/")).await;
    assert!(
        matches!(
            e,
            RequestError::GatewayTimeout {
                phase: "response",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_bad_gateway() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let pool = UpstreamPool::new(Arc::new(UpstreamTarget {
        name: "raw",
        connect_host: "127.0.0.1".into(),
        port,
        tls: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(60),
        max_idle: 4,
    }));
    let Err(e) = forward(&pool, get("/"), tokio::time::Instant::now()).await else {
        panic!("connected to a closed port");
    };
    assert!(cause(&e).contains("connect failed"), "{e}");
}
