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
async fn a_connection_idle_past_idle_timeout_is_not_reused() {
    let ok = || reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let up = raw_with(
        vec![vec![ok(), ok()], vec![ok()]],
        Duration::from_secs(5),
        Duration::from_millis(100),
        false,
    )
    .await;
    let (_, body) = fetch(&up, get("/a")).await;
    assert_eq!(body.unwrap(), "ok");
    let (_, body) = fetch(&up, get("/b")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, body) = fetch(&up, get("/c")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(
        up.accepts.load(Ordering::SeqCst),
        2,
        "a connection idle for longer than idle_timeout is retired, not reused"
    );
}

#[tokio::test]
async fn the_response_time_counts_from_the_request_start() {
    // The upstream answers 300 ms after each request; the timeout is 1 s.
    let slow = || Reply {
        pieces: vec![
            Vec::new(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ],
        close: false,
        gap: Duration::from_millis(300),
    };
    let quick = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let up = raw_with(
        vec![vec![quick, slow()], vec![slow()]],
        Duration::from_secs(1),
        Duration::from_secs(60),
        false,
    )
    .await;
    let (parts, _) = fetch(&up, get("/warm")).await;
    assert_eq!(parts.status, StatusCode::OK);
    // On the reused connection, a request that arrived 900 ms ago has 100 ms left.
    let arrived = tokio::time::Instant::now() - Duration::from_millis(900);
    match forward(&up.pool, get("/late"), arrived).await {
        Err(RequestError::GatewayTimeout { phase, .. }) => assert_eq!(phase, "response"),
        other => panic!(
            "expected a response timeout, got {:?}",
            other.map(|r| r.status())
        ),
    }
    // A request that just arrived has the whole second (on a new connection: the
    // timed-out one is not pooled).
    let (parts, _) = fetch(&up, get("/fresh")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
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
        Duration::from_secs(60),
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
    let pool = UpstreamPool::new(Arc::new(target(port)));
    let Err(e) = forward(&pool, get("/"), tokio::time::Instant::now()).await else {
        panic!("connected to a closed port");
    };
    assert!(cause(&e).contains("connect failed"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_waits_for_the_workers_other_ready_tasks_before_it_is_written() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pool = UpstreamPool::new(Arc::new(target(listener.local_addr().unwrap().port())));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    // Warm up: one exchange leaves a pooled connection, so the next checkout
    // takes it without waiting for anything.
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await.unwrap();
        s.write_all(ok).await.unwrap();
        s
    });
    let warm = forward(&pool, get("/warm"), tokio::time::Instant::now());
    assert_eq!(warm.await.unwrap().status(), StatusCode::OK);
    let mut server = server.await.unwrap();
    assert_eq!(pool.idle_lean_count(), 1);

    // A task made ready just before the request: it looks (without waiting)
    // whether the request has reached the upstream yet, then answers it.
    let early = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = early.clone();
    let other = tokio::spawn(async move {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        let arrived = socket2::SockRef::from(&server).peek(&mut probe);
        seen.store(matches!(arrived, Ok(n) if n > 0), Ordering::SeqCst);
        read_head(&mut server).await.unwrap();
        server.write_all(ok).await.unwrap();
        server
    });
    let resp = forward(&pool, get("/next"), tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _server = other.await.unwrap();
    assert!(
        !early.load(Ordering::SeqCst),
        "the request was written before the worker's other ready task ran"
    );
}
