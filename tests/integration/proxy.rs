//! The proxy core end to end: forwarding, the trust boundary (forged headers,
//! `Connection:` tricks, hostile paths, request smuggling), streaming, upgrades,
//! HTTP/2, TLS, upstream failures, limits and graceful shutdown.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{self, client, open_config, settings};
use crate::upstream;

async fn echo_json(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(resp.status(), 200, "echo failed");
    resp.json().await.unwrap()
}

fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

fn header_names(echo: &serde_json::Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_owned())
        .collect()
}

/// Sends raw bytes and returns everything the proxy answered until it closed
/// or `wait` passed.
async fn raw(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn forwards_with_forwarding_headers_and_request_id() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let resp = client()
        .get(proxy.url("/browse/ABC-1?x=1"))
        .header("host", "jira.test")
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(rid.len(), 32);
    assert!(
        !resp.headers().contains_key("x-upstream-secret"),
        "hop-by-hop response header named in Connection must not reach the client"
    );
    let echo = echo_json(resp).await;
    assert_eq!(echo["uri"], "/browse/ABC-1?x=1");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(header_values(&echo, "host"), vec!["jira.test"]);
    assert_eq!(header_values(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(header_values(&echo, "x-forwarded-host"), vec!["jira.test"]);
    assert_eq!(
        header_values(&echo, "forwarded"),
        vec!["for=127.0.0.1;proto=http;host=jira.test"]
    );
    assert_eq!(header_values(&echo, "x-request-id"), vec![rid]);

    // A sane client request id is propagated both ways.
    let resp = client()
        .get(proxy.url("/x"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let echo = echo_json(resp).await;
    assert_eq!(header_values(&echo, "x-request-id"), vec!["trace-abc-123"]);
}

#[tokio::test]
async fn reserved_prefix_is_never_forwarded() {
    let up = upstream::start().await;
    let (op, _op_running) = harness::start_google(vec![]).await;
    let cfg = open_config(&up.url(), "", "").replace(harness::NO_ISSUER, op.issuer());
    let proxy = harness::start(settings(&cfg)).await;
    let c = client();
    let r = c.get(proxy.url("/_usher/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = c.get(proxy.url("/_usher/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/_usher/", "/_usher/nope", "/_usher", "/_usher/healthz/x"] {
        let r = c.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // Health is decided by the path only, never by a header such as User-Agent.
    let r = c
        .get(proxy.url("/secure/admin"))
        .header("user-agent", "")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        2,
        "readyz probe + one forward"
    );
}

#[tokio::test]
async fn readyz_fails_while_the_upstream_is_down_and_requests_get_502() {
    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let proxy = harness::start(settings(&open_config(&url, "", ""))).await;
    let c = client();
    let r = c.get(proxy.url("/_usher/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = c.get(proxy.url("/browse/X")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("could not be reached"), "{body}");
    assert!(
        !body.contains("127.0.0.1"),
        "error page must not leak addresses: {body}"
    );
    let r = c
        .get(proxy.url("/browse/X"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], 502);
}

#[tokio::test]
async fn slow_upstream_gets_504() {
    let up = upstream::start().await;
    let cfg = open_config(&up.url(), "", "response_timeout = \"300ms\"");
    let proxy = harness::start(settings(&cfg)).await;
    let started = std::time::Instant::now();
    let r = client()
        .get(proxy.url("/slow?ms=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
    // The next request on a fresh connection still works.
    let r = client().get(proxy.url("/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Every spelling of every identity header a client might forge.
const FORGED: &[&str] = &[
    "X-Forwarded-User",
    "x-forwarded-user",
    "X_Forwarded_User",
    "x.forwarded.user",
    "X-FORWARDED-USER",
    "x-forwarded_user",
    "X-Forwarded-Email",
    "x_forwarded_email",
    "X-Forwarded-Groups",
    "X.Forwarded.Groups",
    "X-Usher-Assertion",
    "x_usher_assertion",
    "X-Remote-User",
    "x_remote_user",
];

#[tokio::test]
async fn forged_identity_headers_never_reach_the_upstream() {
    let up = upstream::start().await;
    // A second upstream with other header names: those are forbidden everywhere too.
    let extra = format!(
        r#"
[[upstream]]
name = "wiki"
host = "wiki.test"
url = "{}"
identity_headers = {{ user = "X-Remote-User" }}
public = ["^/"]
"#,
        up.url()
    );
    let proxy = harness::start(settings(&open_config(&up.url(), "", &extra))).await;
    let c = client();
    for host in ["jira.test", "wiki.test", "other.test"] {
        for name in FORGED {
            // Alone, duplicated, and combined with a Connection: trick naming it.
            let mut headers = reqwest::header::HeaderMap::new();
            let hn = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(hn.clone(), "admin".parse().unwrap());
            headers.append(hn, "root".parse().unwrap());
            let resp = c
                .get(proxy.url("/echo"))
                .header("host", host)
                .headers(headers)
                .send()
                .await
                .unwrap();
            let echo = echo_json(resp).await;
            for seen in header_names(&echo) {
                let folded = seen.to_ascii_lowercase().replace(['_', '.'], "-");
                assert!(
                    !matches!(
                        folded.as_str(),
                        "x-forwarded-user"
                            | "x-forwarded-email"
                            | "x-forwarded-groups"
                            | "x-usher-assertion"
                            | "x-remote-user"
                    ),
                    "forged {name} reached the upstream as {seen} via {host}"
                );
            }
        }
    }
}

#[tokio::test]
async fn connection_header_cannot_delete_what_usher_sets() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let resp = client()
        .get(proxy.url("/echo"))
        .header(
            "connection",
            "X-Forwarded-For, X-Forwarded-Proto, Forwarded, X-Request-Id, X-Forwarded-Host, Host",
        )
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(header_values(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(header_values(&echo, "forwarded").len(), 1);
    assert_eq!(header_values(&echo, "x-request-id").len(), 1);
    assert_eq!(header_values(&echo, "host").len(), 1);
    assert_eq!(header_values(&echo, "x-custom"), vec!["kept"]);
    assert!(header_values(&echo, "connection")
        .iter()
        .all(|v| v != "X-Forwarded-For"));

    // A client listing its own header in Connection loses that header (hop-by-hop).
    let resp = client()
        .get(proxy.url("/echo"))
        .header("connection", "x-custom")
        .header("x-custom", "dropped")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert!(header_values(&echo, "x-custom").is_empty());
}

#[tokio::test]
async fn untrusted_forwarding_headers_are_replaced_and_trusted_ones_extended() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let resp = client()
        .get(proxy.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-uri", "/public")
        .header("x_forwarded_host", "evil.test")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(header_values(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["http"]);
    assert!(header_values(&echo, "x-forwarded-uri").is_empty());
    assert!(header_values(&echo, "x_forwarded_host").is_empty());

    let trusted = open_config(&up.url(), "trusted_proxies = [\"127.0.0.0/8\"]", "");
    let proxy = harness::start(settings(&trusted)).await;
    let resp = client()
        .get(proxy.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        vec!["6.6.6.6, 127.0.0.1"]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["https"]);
}

#[tokio::test]
async fn hostile_request_lines_are_rejected_with_400() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    for path in [
        "/public/%23/../admin",
        "/a%23b",
        "/s/../secure/admin",
        "/s/%2e%2e/secure",
        "/s/..;/secure",
        "/a%00b",
        "/a%5c..%5cb",
        "/a%0d%0aSet-Cookie:%20x=1",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: jira.test\r\nConnection: close\r\n\r\n");
        let out = raw(proxy.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
    }
    let framing: [(&str, &[u8]); 3] = [
        (
            "NUL in a header value",
            b"GET /ok HTTP/1.1\r\nHost: jira.test\r\nX-A: a\0b\r\nConnection: close\r\n\r\n",
        ),
        (
            "conflicting Content-Length values",
            b"POST /ok HTTP/1.1\r\nHost: jira.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /ok HTTP/1.1\r\nHost: jira.test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ),
    ];
    for (what, request) in framing {
        let out = raw(proxy.addr, request, Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
    }
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "nothing hostile was forwarded"
    );

    // A raw '#' in the request line is cut off by the HTTP parser before usher
    // routes (the `http` crate drops fragments), so usher decides on, and the
    // upstream receives, the same path without it: nothing can be widened.
    let out = raw(
        proxy.addr,
        b"GET /public/x#/../../admin HTTP/1.1\r\nHost: jira.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(r#""uri":"/public/x""#), "{out}");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    // CL says 4 bytes ("0\r\n\r"), chunked framing ends the body earlier, and the
    // rest is a second request. Transfer-Encoding wins, Content-Length is dropped
    // and the connection is closed after the response (RFC 9112 §6.1), so the
    // smuggled request never reaches the upstream.
    let out = raw(
        proxy.addr,
        b"POST /first HTTP/1.1\r\nHost: jira.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: jira.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.contains("/smuggled"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_bodies_stream_both_ways_in_bounded_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let before = vm_hwm_kib();

    // Upload: a chunked body generated on the fly.
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = SIZE / chunk.len() as u64;
    let stream =
        futures_util::stream::iter(0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
    let resp = client()
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let echo = echo_json(resp).await;
    assert_eq!(echo["body_len"], SIZE);
    assert_eq!(echo["body_sum"], SIZE * 7);

    // Download: counted as it arrives, never held.
    let mut resp = client()
        .get(proxy.url(&format!("/big?n={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got: u64 = 0;
    while let Some(c) = resp.chunk().await.unwrap() {
        got += c.len() as u64;
    }
    assert_eq!(got, SIZE);
    let grown_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "moving 2 x 256 MiB grew resident memory by {grown_mib} MiB"
    );
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let url = format!("ws://{}/ws", proxy.addr);
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    for text in ["hello", "through", "usher"] {
        ws.send(Message::text(text)).await.unwrap();
        let got = ws.next().await.unwrap().unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn http2_clients_reach_an_http1_upstream() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("http://jira.test:{}/h2?q=1", proxy.addr.port()))
        .body("h2 body")
        .send()
        .await;
    // reqwest resolves jira.test via DNS; use the address with an explicit authority.
    let resp = match resp {
        Ok(r) => r,
        Err(_) => h2
            .post(proxy.url("/h2?q=1"))
            .body("h2 body")
            .send()
            .await
            .unwrap(),
    };
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo = echo_json(resp).await;
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["uri"], "/h2?q=1");
    assert_eq!(echo["body_len"], 7);
    assert_eq!(header_values(&echo, "host").len(), 1);
}

#[tokio::test]
async fn tls_listener_speaks_h2_and_http1() {
    let up = upstream::start().await;
    let dir = harness::temp_dir("tls").join("certs");
    let (cert, key) =
        usher::proxy::tls::write_dev_certificate(&dir, &["localhost".to_string()]).unwrap();
    let server_extra = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let proxy = harness::start(settings(&open_config(&up.url(), &server_extra, ""))).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let url = format!("https://localhost:{}/tls", proxy.addr.port());
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .resolve("localhost", proxy.addr);
        if http1_only {
            b = b.http1_only();
        }
        let resp = b.build().unwrap().get(&url).send().await.unwrap();
        assert_eq!(resp.version(), version);
        let echo = echo_json(resp).await;
        assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["https"]);
    }
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let up = upstream::start().await;
    let cfg = open_config(&up.url(), "max_header_bytes = 8192", "");
    let proxy = harness::start(settings(&cfg)).await;
    let big = "a".repeat(16 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: jira.test\r\nCookie: {big}\r\n\r\n");
    let out = raw(proxy.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connection_limit_is_enforced() {
    let up = upstream::start().await;
    let cfg = open_config(&up.url(), "max_connections = 2\nworkers = 1", "");
    let cfg = cfg.replacen("workers = 2\n", "", 1);
    let proxy = harness::start(settings(&cfg)).await;
    let _a = TcpStream::connect(proxy.addr).await.unwrap();
    let _b = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: jira.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        out.is_empty(),
        "third connection should be closed unanswered: {out}"
    );
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: jira.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A raw connection to the proxy that has sent `bytes`.
async fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads what the proxy sends until it closes the connection, which must happen
/// no sooner than `not_before` from now and within 5 s; returns the bytes.
async fn read_until_closed(s: &mut TcpStream, not_before: Duration, what: &str) -> Vec<u8> {
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "{what} should be closed, not left open");
    let after = started.elapsed();
    assert!(
        after >= not_before,
        "{what} was closed after {after:?}, before {not_before:?}"
    );
    out
}

/// Sends `bytes` on a new connection and waits for the proxy to close it (no
/// sooner than `not_before`); returns what it answered.
async fn send_then_closed(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    not_before: Duration,
    what: &str,
) -> Vec<u8> {
    let mut s = send_raw(addr, bytes).await;
    read_until_closed(&mut s, not_before, what).await
}

/// Slowloris: a client that trickles a request head loses the connection after
/// `header_read_timeout`; one that keeps a connection open without starting its
/// next request loses it after `keepalive_timeout` (and not before); a prompt
/// client on the same proxy is served.
#[tokio::test]
async fn slow_request_heads_and_idle_keep_alives_are_cut_off() {
    let up = upstream::start().await;
    let cfg = open_config(
        &up.url(),
        "header_read_timeout = \"400ms\"\nkeepalive_timeout = \"1500ms\"",
        "",
    );
    let proxy = harness::start(settings(&cfg)).await;

    // A head that never ends: closed without an answer being forwarded.
    let out = send_then_closed(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: jira.test\r\nX-A: 1\r\n",
        Duration::from_millis(300),
        "a connection with a slow head",
    )
    .await;
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("200 OK"), "{text}");
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );

    // A keep-alive connection that goes quiet after one answer is closed too.
    let mut idle = send_raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: jira.test\r\n\r\n").await;
    let mut buf = vec![0u8; 64 * 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // keepalive_timeout (1.5 s), not header_read_timeout (0.4 s).
    read_until_closed(
        &mut idle,
        Duration::from_millis(1300),
        "an idle keep-alive connection",
    )
    .await;

    // Meanwhile a prompt client is served as usual.
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: jira.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// The same timeout is about requests, not bytes: an answer that takes longer
/// than `header_read_timeout` is not cut off, and an HTTP/2 connection that
/// opens and then sends nothing is closed like an idle HTTP/1.1 one.
#[tokio::test]
async fn the_idle_timeout_spares_slow_answers_and_ends_idle_http2() {
    let up = upstream::start().await;
    let cfg = open_config(&up.url(), "header_read_timeout = \"400ms\"", "");
    let proxy = harness::start(settings(&cfg)).await;

    let resp = client()
        .get(proxy.url("/slow?ms=1200"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow done");

    // Prior-knowledge HTTP/2: the client preface and an empty SETTINGS frame.
    let out = send_then_closed(
        proxy.addr,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        Duration::from_millis(300),
        "an idle HTTP/2 connection",
    )
    .await;
    // The server spoke HTTP/2 first (its SETTINGS frame: type 4).
    assert!(out.len() >= 9 && out[3] == 4, "{out:?}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = upstream::start().await;
    let proxy = harness::start(settings(&open_config(&up.url(), "", ""))).await;
    let url = proxy.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = proxy.addr;
    let drained = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections are accepted while draining.
    assert!(
        TcpStream::connect(addr).await.is_err()
            || raw(
                addr,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_millis(500)
            )
            .await
            .is_empty()
    );
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow done");
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn keep_alive_reuses_upstream_connections() {
    let up = upstream::start().await;
    let cfg = open_config(&up.url(), "", "").replacen("workers = 2", "workers = 1", 1);
    let proxy = harness::start(settings(&cfg)).await;
    let c = client();
    let mut ports = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let echo = echo_json(c.get(proxy.url("/echo")).send().await.unwrap()).await;
        assert_eq!(echo["uri"], "/echo");
        ports.insert(echo["peer_port"].as_u64().unwrap());
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 20);
    assert_eq!(
        ports.len(),
        1,
        "sequential requests should share one upstream connection: {ports:?}"
    );
}
