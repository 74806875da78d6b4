//! The lean exchange against hand-written upstreams on 127.0.0.1 that write
//! exact bytes: a scripted raw upstream shared by the framing tests (bodies,
//! interim responses, bounds, broken bodies) and the pooling tests (reuse, idle
//! checks, the stale-connection retry, timeouts).

mod framing;
mod pooling;
mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

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

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
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

/// An empty closing reply with no gap: the connection is aborted with a reset.
fn is_reset(rep: &Reply) -> bool {
    rep.close && rep.gap.is_zero() && rep.pieces.iter().all(|p| p.is_empty())
}

/// Serves one connection's replies in order.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    replies: Vec<Reply>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    for rep in replies {
        let Some(head) = read_head(&mut s).await else {
            return;
        };
        requests.lock().unwrap().push(head);
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
            if !is_reset(&rep) {
                // A clean close (TLS: close_notify, then FIN).
                let _ = s.shutdown().await;
            }
            return;
        }
    }
    // Keep the connection open until the proxy closes it.
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink).await;
}

async fn raw(script: Vec<Vec<Reply>>) -> Raw {
    raw_with(
        script,
        Duration::from_secs(5),
        Duration::from_secs(60),
        false,
    )
    .await
}

/// Like [`raw`], over TLS (a fresh self-signed certificate for `localhost`).
async fn raw_tls(script: Vec<Vec<Reply>>) -> Raw {
    raw_with(
        script,
        Duration::from_secs(5),
        Duration::from_secs(60),
        true,
    )
    .await
}

async fn raw_with(
    script: Vec<Vec<Reply>>,
    response_timeout: Duration,
    idle_timeout: Duration,
    tls: bool,
) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (acceptor, connector) = if tls {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "usher-lean-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) =
            crate::proxy::tls::write_dev_certificate(&dir, &["localhost".to_owned()]).unwrap();
        let acceptor = crate::proxy::tls::acceptor(&cert, &key).unwrap();
        let connector = crate::proxy::tls::upstream_connector("localhost", Some(&cert)).unwrap();
        (Some(acceptor), Some(connector))
    } else {
        (None, None)
    };
    let (a, r) = (accepts.clone(), requests.clone());
    tokio::spawn(async move {
        for replies in script {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            if replies.iter().any(is_reset) {
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            let r = r.clone();
            match &acceptor {
                None => {
                    tokio::spawn(serve(s, replies, r));
                }
                Some(acceptor) => {
                    let accept = acceptor.accept(s);
                    tokio::spawn(async move {
                        if let Ok(tls) = accept.await {
                            serve(tls, replies, r).await;
                        }
                    });
                }
            }
        }
    });
    let target = UpstreamTarget {
        tls: connector,
        response_timeout,
        idle_timeout,
        ..target(port)
    };
    Raw {
        pool: UpstreamPool::new(Arc::new(target)),
        accepts,
        requests,
    }
}

/// A plain-TCP upstream on a loopback `port`, with the timeouts the tests use
/// unless they set their own.
fn target(port: u16) -> UpstreamTarget {
    UpstreamTarget {
        name: "raw",
        connect_host: "127.0.0.1".into(),
        port,
        tls: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(60),
        max_idle: 4,
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
    let resp = forward(&up.pool, req, tokio::time::Instant::now())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes());
    (parts, body)
}

async fn error_of(up: &Raw, req: Request<Empty<Bytes>>) -> RequestError {
    match forward(&up.pool, req, tokio::time::Instant::now()).await {
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
