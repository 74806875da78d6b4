//! The lean exchange against hand-written upstreams on 127.0.0.1 that write
//! exact bytes: framing, interim responses, bounds, broken bodies, pooling and
//! the stale-connection retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::proxy::body::BodyError;
use crate::proxy::pool::UpstreamTarget;

/// What the upstream does for one request on a connection.
#[derive(Clone)]
struct Reply {
    /// Written in this order, flushed and briefly paused between pieces.
    pieces: Vec<Vec<u8>>,
    /// Close the connection after writing.
    close: bool,
    /// Pause between pieces.
    gap: Duration,
}

fn reply(bytes: &[u8]) -> Reply {
    Reply {
        pieces: vec![bytes.to_vec()],
        close: false,
        gap: Duration::from_millis(2),
    }
}

fn closing(bytes: &[u8]) -> Reply {
    Reply {
        pieces: vec![bytes.to_vec()],
        close: true,
        gap: Duration::from_millis(2),
    }
}

/// A raw upstream: connection `k` answers its requests with `script[k]` in order.
struct Raw {
    pool: Arc<UpstreamPool>,
    accepts: Arc<AtomicUsize>,
    /// Every request head received, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn raw(script: Vec<Vec<Reply>>) -> Raw {
    raw_with(script, Duration::from_secs(5)).await
}

async fn raw_with(script: Vec<Vec<Reply>>, response_timeout: Duration) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (a, r) = (accepts.clone(), requests.clone());
    tokio::spawn(async move {
        for replies in script {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                for rep in replies {
                    let Some(head) = read_head(&mut s).await else {
                        return;
                    };
                    r.lock().unwrap().push(head);
                    for (i, p) in rep.pieces.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(rep.gap).await;
                        }
                        if s.write_all(p).await.is_err() {
                            return;
                        }
                        s.flush().await.unwrap();
                    }
                    if rep.close {
                        if rep.pieces.iter().all(|p| p.is_empty()) && rep.gap.is_zero() {
                            // Zero gap on an empty close: abort with a reset (RST).
                            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        }
                        return;
                    }
                }
                // Keep the connection open until the proxy closes it.
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    let target = UpstreamTarget {
        name: "raw",
        connect_host: "127.0.0.1".into(),
        port,
        tls: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout,
        idle_timeout: Duration::from_secs(60),
        max_idle: 4,
    };
    Raw {
        pool: UpstreamPool::new(Arc::new(target)),
        accepts,
        requests,
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap()
}

/// Sends `req` and reads the whole body.
async fn fetch(
    up: &Raw,
    req: Request<Empty<Bytes>>,
) -> (http::response::Parts, Result<Bytes, BodyError>) {
    let resp = forward(&up.pool, req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes());
    (parts, body)
}

async fn error_of(up: &Raw, req: Request<Empty<Bytes>>) -> RequestError {
    match forward(&up.pool, req).await {
        Ok(resp) => panic!("expected an error, got {}", resp.status()),
        Err(e) => e,
    }
}

fn cause(e: &RequestError) -> &str {
    match e {
        RequestError::BadGateway { cause, upstream } => {
            assert_eq!(upstream, "raw");
            cause
        }
        other => panic!("expected a 502, got {other:?}"),
    }
}

#[test]
fn request_head_is_serialized_exactly() {
    let req = Request::get("/a/b?x=1&y")
        .header("host", "app.test")
        .header("x-multi", "one")
        .header("x-multi", "two")
        .body(())
        .unwrap();
    let mut out = b"stale bytes".to_vec();
    write_head(&mut out, req.method(), req.uri(), req.headers());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /a/b?x=1&y HTTP/1.1\r\nhost: app.test\r\nx-multi: one\r\nx-multi: two\r\n\r\n"
    );
    let mut out = Vec::new();
    let req = Request::head("*").body(()).unwrap();
    write_head(&mut out, req.method(), req.uri(), req.headers());
    assert_eq!(out, b"HEAD * HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn content_length_body_and_keep_alive_reuse() {
    let up = raw(vec![vec![
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: 1\r\n\r\nhello"),
        reply(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop"),
    ]])
    .await;
    let (parts, body) = fetch(&up, get("/first?q=1")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-length"], "5");
    assert_eq!(parts.headers["x-app"], "1");
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(up.pool.idle_lean_count(), 1, "connection back in the pool");
    let (parts, body) = fetch(&up, get("/second")).await;
    assert_eq!(parts.status, StatusCode::NOT_FOUND);
    assert_eq!(body.unwrap(), "nop");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1, "one TCP connection");
    let reqs = up.requests.lock().unwrap().clone();
    assert_eq!(
        reqs,
        [
            "GET /first?q=1 HTTP/1.1\r\nhost: app.test\r\n\r\n",
            "GET /second HTTP/1.1\r\nhost: app.test\r\n\r\n"
        ]
    );
}

#[tokio::test]
async fn size_hint_is_exact_for_content_length() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
    )]])
    .await;
    let resp = forward(&up.pool, get("/")).await.unwrap();
    assert_eq!(resp.body().size_hint().exact(), Some(11));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello world");
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_in_small_writes() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\n\r\n\
        5;ext=1\r\nhello\r\n1;a;b=\"c\"\r\n \r\nA\r\n0123456789\r\n0;end\r\nX-Trailer: t\r\n\r\n";
    let pieces: Vec<Vec<u8>> = wire.chunks(3).map(|c| c.to_vec()).collect();
    let up = raw(vec![vec![
        Reply {
            pieces,
            close: false,
            gap: Duration::from_millis(2),
        },
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "hello 0123456789");
    assert!(!parts.headers.contains_key("transfer-encoding"));
    assert!(!parts.headers.contains_key("content-length"));
    assert_eq!(parts.headers["x-app"], "1");
    assert_eq!(up.pool.idle_lean_count(), 1);
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn body_until_close_is_not_pooled() {
    let up = raw(vec![vec![Reply {
        pieces: vec![
            b"HTTP/1.1 200 OK\r\n\r\npart one, ".to_vec(),
            b"part two".to_vec(),
        ],
        close: true,
        gap: Duration::from_millis(2),
    }]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.unwrap(), "part one, part two");
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn head_request_has_no_body_despite_content_length() {
    let up = raw(vec![vec![
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]])
    .await;
    let req = Request::head("/x")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = forward(&up.pool, req).await.unwrap();
    assert!(resp.body().is_end_stream());
    assert_eq!(resp.headers()["content-length"], "1234");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(up.pool.idle_lean_count(), 1);
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    let up = raw(vec![vec![
        reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        reply(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n"),
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(parts.status, StatusCode::NO_CONTENT);
    assert!(body.unwrap().is_empty());
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    assert_eq!(parts.headers["etag"], "\"e\"");
    assert!(body.unwrap().is_empty());
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let up = raw(vec![vec![Reply {
        pieces: vec![
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 2".to_vec(),
            b"00 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ],
        close: false,
        gap: Duration::from_millis(2),
    }]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert!(!parts.headers.contains_key("link"));
    assert_eq!(body.unwrap(), "ok");
}

#[tokio::test]
async fn unrequested_switching_protocols_is_bad_gateway() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )]])
    .await;
    let e = error_of(&up, get("/")).await;
    assert!(cause(&e).contains("switched protocols"), "{e}");
}

#[tokio::test]
async fn transfer_encoding_and_content_length_is_chunked_and_not_pooled() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "abc");
    assert!(!parts.headers.contains_key("content-length"));
    assert!(!parts.headers.contains_key("transfer-encoding"));
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn bad_content_length_is_bad_gateway() {
    for bad in ["-1", "12abc", "5, 6", ""] {
        let wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\nhello");
        let up = raw(vec![vec![reply(wire.as_bytes())]]).await;
        let e = error_of(&up, get("/")).await;
        assert!(cause(&e).contains("Content-Length"), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn oversized_or_garbage_heads_are_bad_gateway() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "v".repeat(30)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let up1 = raw(vec![vec![reply(&big)]]).await;
    let e = error_of(&up1, get("/")).await;
    assert_eq!(cause(&e), "upstream response head too large");

    let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let up2 = raw(vec![vec![closing(&long)]]).await;
    let e = error_of(&up2, get("/")).await;
    assert_eq!(cause(&e), "upstream response head too large");

    let up3 = raw(vec![vec![closing(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")]]).await;
    let e = error_of(&up3, get("/")).await;
    assert!(cause(&e).contains("invalid upstream response head"), "{e}");

    let up4 = raw(vec![vec![closing(b"HTTP/1.1 200 OK\r\nContent-")]]).await;
    let e = error_of(&up4, get("/")).await;
    assert!(cause(&e).contains("before a complete response head"), "{e}");
}

#[tokio::test]
async fn eof_mid_body_is_a_body_error_and_not_pooled() {
    let up = raw(vec![vec![closing(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
    )]])
    .await;
    let (parts, body) = fetch(&up, get("/")).await;
    assert_eq!(parts.status, StatusCode::OK);
    let err = body.unwrap_err().to_string();
    assert!(err.contains("6 bytes before the end"), "{err}");
    assert_eq!(up.pool.idle_lean_count(), 0);

    let up = raw(vec![vec![closing(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    )]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert!(body.unwrap_err().to_string().contains("chunked"));
    assert_eq!(up.pool.idle_lean_count(), 0);

    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
    )]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert!(body.unwrap_err().to_string().contains("malformed chunked"));
    assert_eq!(up.pool.idle_lean_count(), 0);
}

#[tokio::test]
async fn surplus_bytes_after_the_body_are_not_pooled() {
    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSURPLUS",
    )]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.pool.idle_lean_count(), 0);

    let up = raw(vec![vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nX",
    )]])
    .await;
    let (_, body) = fetch(&up, get("/")).await;
    assert_eq!(body.unwrap(), "ok");
    assert_eq!(up.pool.idle_lean_count(), 0);
}

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
    let resp = forward(&up.pool, get("/")).await.unwrap();
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
    let Err(e) = forward(&pool, get("/")).await else {
        panic!("connected to a closed port");
    };
    assert!(cause(&e).contains("connect failed"), "{e}");
}
