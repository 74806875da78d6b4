//! The lean upstream exchange (bodyless requests) seen
//! from a real client through usher's server: re-framed bodies, kept lengths,
//! pooled upstream connections and broken upstream bodies that break the
//! client's body instead of looking complete.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{self, client, open_config, settings};

/// What the raw upstream answers to a request path: bytes written in pieces,
/// then whether to close.
type Script = fn(&str) -> (Vec<Vec<u8>>, bool);

struct RawUpstream {
    url: String,
    accepts: Arc<AtomicUsize>,
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

/// A request for `path` as a browser on `jira.test` sends it through usher.
async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    proxy: &harness::Proxy,
    path: &str,
) -> reqwest::Response {
    c.request(method, proxy.url(path))
        .header("host", "jira.test")
        .send()
        .await
        .unwrap()
}

async fn start(script: Script) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut s).await {
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (pieces, close) = script(&path);
                    for p in pieces {
                        if s.write_all(&p).await.is_err() {
                            return;
                        }
                        s.flush().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    RawUpstream { url, accepts }
}

fn answers(path: &str) -> (Vec<Vec<u8>>, bool) {
    let one = |b: &[u8]| vec![b.to_vec()];
    match path {
        "/length" => (
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-App: len\r\n\r\nhello world"),
            false,
        ),
        "/chunked" => {
            let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;e=1\r\nhello\r\n6\r\n chunk\r\n0\r\nX-T: 1\r\n\r\n";
            (wire.chunks(4).map(|c| c.to_vec()).collect(), false)
        }
        "/head" => (
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n"),
            false,
        ),
        "/nocontent" => (one(b"HTTP/1.1 204 No Content\r\n\r\n"), false),
        "/until-close" => (
            vec![
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ".to_vec(),
                b"close".to_vec(),
            ],
            true,
        ),
        "/broken" => (
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"),
            true,
        ),
        "/broken-chunked" => (
            one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            true,
        ),
        _ => (
            one(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            false,
        ),
    }
}

#[tokio::test]
async fn lean_bodies_reach_the_client_over_one_pooled_upstream_connection() {
    let up = start(answers).await;
    let proxy = harness::start(settings(&open_config(&up.url, "", ""))).await;
    let c = client();
    for _ in 0..2 {
        let resp = send(&c, reqwest::Method::GET, &proxy, "/length").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(11));
        assert_eq!(resp.headers()["x-app"], "len");
        assert_eq!(resp.text().await.unwrap(), "hello world");

        let resp = send(&c, reqwest::Method::GET, &proxy, "/chunked").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "hello chunk");

        let resp = send(&c, reqwest::Method::HEAD, &proxy, "/head").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "4096");
        assert!(resp.bytes().await.unwrap().is_empty());

        let resp = send(&c, reqwest::Method::GET, &proxy, "/nocontent").await;
        assert_eq!(resp.status(), 204);
    }
    assert_eq!(
        up.accepts.load(Ordering::SeqCst),
        1,
        "every request reused the pooled upstream connection"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn lean_body_until_close_is_reframed_and_not_pooled() {
    let up = start(answers).await;
    let proxy = harness::start(settings(&open_config(&up.url, "", ""))).await;
    let c = client();
    for _ in 0..2 {
        let resp = send(&c, reqwest::Method::GET, &proxy, "/until-close").await;
        assert_eq!(resp.status(), 200);
        assert!(!resp.headers().contains_key("connection"));
        assert_eq!(resp.text().await.unwrap(), "until close");
    }
    assert_eq!(up.accepts.load(Ordering::SeqCst), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn lean_broken_upstream_body_breaks_the_client_body() {
    let up = start(answers).await;
    let proxy = harness::start(settings(&open_config(&up.url, "", ""))).await;
    let c = client();
    let resp = send(&c, reqwest::Method::GET, &proxy, "/broken").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(100));
    assert!(
        resp.bytes().await.is_err(),
        "a truncated upstream body must not look complete"
    );
    // Chunked: without the error hyper would end the re-chunked body cleanly.
    let resp = send(&c, reqwest::Method::GET, &proxy, "/broken-chunked").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a truncated chunked upstream body must not look complete"
    );
    // The next request gets a fresh upstream connection and a whole answer.
    let resp = send(&c, reqwest::Method::GET, &proxy, "/length").await;
    assert_eq!(resp.text().await.unwrap(), "hello world");
    assert_eq!(up.accepts.load(Ordering::SeqCst), 3);
    proxy.shutdown().await;
}
