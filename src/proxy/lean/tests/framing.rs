//! Response framing on the lean path: lengths, chunks, close-delimited bodies,
//! bodyless responses, interim responses, bounds and broken bodies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use http_body::Body as _;

use super::*;

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
    let resp = forward(&up.pool, get("/"), tokio::time::Instant::now())
        .await
        .unwrap();
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
    let resp = forward(&up.pool, req, tokio::time::Instant::now())
        .await
        .unwrap();
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
async fn endless_interim_responses_are_bad_gateway() {
    let up = raw(vec![vec![reply(
        &b"HTTP/1.1 100 Continue\r\n\r\n".repeat(17),
    )]])
    .await;
    let e = error_of(&up, get("/")).await;
    assert!(cause(&e).contains("too many interim"), "{e}");
    // Sixteen are fine.
    let mut wire = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(16);
    wire.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let up = raw(vec![vec![reply(&wire)]]).await;
    let (_, body) = fetch(&up, get("/")).await;
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

#[test]
fn only_bodyless_non_upgrade_requests_are_eligible() {
    assert!(eligible(&get("/"), false));
    let post_empty = Request::post("/")
        .header("content-length", "0")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    assert!(eligible(&post_empty, false));
    // Not: a protocol upgrade, a body, or a body announced by Transfer-Encoding.
    assert!(!eligible(&get("/"), true));
    let with_body = Request::post("/")
        .body(http_body_util::Full::new(Bytes::from_static(b"x=1")))
        .unwrap();
    assert!(!eligible(&with_body, false));
    let chunked = Request::post("/")
        .header("transfer-encoding", "chunked")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(!eligible(&chunked, false));
}
