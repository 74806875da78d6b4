//! The lean upstream exchange: a bodyless request is written and its response
//! read directly by the request task over a pooled raw connection (TCP, or TLS
//! for `https://` upstreams; one write for the head, the head parsed with
//! `httparse`, the body read inside `poll_frame`), instead of crossing into a
//! hyper client connection task. It must behave like the hyper path towards the
//! client: the same errors, the same hop-by-hop stripping, the same retry rule.
//! Requests with a body and upgrades never come here (see `forward::forward`).

pub mod body;
pub mod chunked;
pub mod head;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, Request, Response, Version};
use tokio::io::AsyncWriteExt;

use super::body::ProxyBody;
use super::headers::strip_hop_by_hop;
use super::pool::{LeanCheckout, LeanConn, LeanStream, UpstreamPool, Within};
use crate::error::RequestError;
use body::LeanBody;
use head::{BodyPlan, Framing, Head, HeadError};

/// Whether a request can take the lean path: no request body (and no
/// `Transfer-Encoding` announcing one) and no protocol upgrade.
pub fn eligible<B: http_body::Body>(req: &Request<B>, upgrade: bool) -> bool {
    !upgrade && req.body().is_end_stream() && !req.headers().contains_key(header::TRANSFER_ENCODING)
}

/// Most interim (1xx) responses skipped before the final one; an upstream that
/// keeps sending them is broken (it would otherwise spin until the timeout).
const MAX_INTERIM: u32 = 16;

/// How one attempt on a connection failed.
enum Failure {
    /// Nothing came back before the connection failed (write error, or EOF or
    /// reset before the first response byte): retried once on a fresh connection
    /// when the connection was a reused one and either the request never left
    /// (`sent` false) or its method is idempotent — an upstream that closes after
    /// reading a bodyless POST may have acted on it (RFC 9110 §9.2.2).
    Stale { error: io::Error, sent: bool },
    /// Anything else: a 502 with this cause.
    Invalid(String),
}

/// Sends the bodyless `req` (already cleaned and in origin-form) to the pool's
/// upstream over a lean connection and returns the response with its body
/// streaming from that connection. `now` is when the request arrived.
pub async fn forward<B>(
    pool: &Arc<UpstreamPool>,
    req: Request<B>,
    now: tokio::time::Instant,
) -> Result<Response<ProxyBody>, RequestError> {
    let target = &pool.target;
    let name = target.name;
    let (parts, _empty_body) = req.into_parts();
    // Let the worker's other ready tasks run before this request goes out, as
    // they would with hyper's client (whose connection task does the write).
    // Writing at once, a worker that keeps finding new requests keeps waking
    // the upstream while answers for its other clients wait: measured, usher's
    // p99 doubled (BENCHMARKS.md, tenth session).
    tokio::task::yield_now().await;
    let mut checkout = pool
        .checkout_lean(now)
        .await
        .map_err(|e| super::forward::connect_error(name, e))?;
    // A new connection may have taken a while (up to `connect_timeout`): the
    // response time starts once it is there, as on the hyper path.
    checkout.arm(if checkout.reused {
        now
    } else {
        tokio::time::Instant::now()
    });
    let first = within(&mut checkout, &parts)
        .await
        .map_err(|_| super::forward::response_timeout(name))?;
    let head = match first {
        Ok(head) => head,
        Err(Failure::Stale { error: e, sent })
            if checkout.reused && (!sent || parts.method.is_idempotent()) =>
        {
            tracing::debug!(upstream = name, error = %e, "pooled upstream connection was stale; retrying on a fresh one");
            checkout = Box::pin(pool.connect_lean())
                .await
                .map_err(|e| super::forward::connect_error(name, e))?;
            // The retry gets its own full response time, as a first try would.
            checkout.arm(tokio::time::Instant::now());
            // Boxed like the connect: rare, and it keeps the request future small.
            Box::pin(within(&mut checkout, &parts))
                .await
                .map_err(|_| super::forward::response_timeout(name))?
                .map_err(|f| fatal(name, f))?
        }
        Err(f) => return Err(fatal(name, f)),
    };
    respond(checkout, head, parts.method == Method::HEAD)
        .map_err(|e| bad_gateway(name, e.to_string()))
}

/// One exchange raced against the connection's response timer (armed before).
fn within<'a>(
    checkout: &'a mut LeanCheckout,
    parts: &'a Parts,
) -> Within<'a, impl std::future::Future<Output = Result<Head, Failure>> + 'a> {
    Within {
        response: exchange(&mut checkout.conn, parts),
        timer: checkout.timer.as_mut(),
    }
}

fn fatal(upstream: &str, f: Failure) -> RequestError {
    match f {
        Failure::Stale { error: e, .. } => bad_gateway(
            upstream,
            format!("connection closed before a response arrived: {e}"),
        ),
        Failure::Invalid(cause) => bad_gateway(upstream, cause),
    }
}

fn bad_gateway(upstream: &str, cause: String) -> RequestError {
    RequestError::BadGateway {
        upstream: upstream.to_owned(),
        cause,
    }
}

/// The client response for a final head: framing decided, hop-by-hop headers
/// dropped, body reading from `checkout`'s connection.
fn respond(
    checkout: LeanCheckout,
    head: Head,
    head_request: bool,
) -> Result<Response<ProxyBody>, HeadError> {
    let Head {
        status,
        minor,
        reason,
        mut headers,
    } = head;
    let BodyPlan { framing, reusable } = head::plan(head_request, status, minor, &headers)?;
    strip_hop_by_hop(&mut headers);
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        // Transfer-Encoding won over a Content-Length; hyper re-frames the body.
        headers.remove(header::CONTENT_LENGTH);
    }
    let body = LeanBody::new(checkout, framing, reusable);
    let mut resp = Response::new(ProxyBody::lean(body));
    *resp.status_mut() = status;
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = headers;
    if let Some(reason) = reason {
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason) {
            resp.extensions_mut().insert(phrase);
        }
    }
    Ok(resp)
}

/// One attempt: writes the request head and reads up to the final response head
/// (interim 1xx responses skipped).
async fn exchange(conn: &mut LeanConn, parts: &Parts) -> Result<Head, Failure> {
    write_head(
        &mut conn.write_buf,
        &parts.method,
        &parts.uri,
        &parts.headers,
    );
    let written = match &mut conn.stream {
        LeanStream::Plain(s) => s.write_all(&conn.write_buf).await,
        LeanStream::Tls(s) => match s.write_all(&conn.write_buf).await {
            // rustls buffers; the flush puts the records on the wire.
            Ok(()) => s.flush().await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        return Err(Failure::Stale {
            error: e,
            sent: false,
        });
    }
    let mut received = false;
    let mut interim = 0u32;
    loop {
        match head::parse(&mut conn.read_buf) {
            Ok(Some(h)) if h.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                return Err(invalid("upstream switched protocols without being asked"));
            }
            Ok(Some(h)) if h.status.is_informational() => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(invalid("upstream sent too many interim (1xx) responses"));
                }
                continue;
            }
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {}
            Err(e) => return Err(invalid(&e.to_string())),
        }
        match std::future::poll_fn(|cx| body::poll_fill(conn, cx)).await {
            Ok(0) if !received => {
                return Err(Failure::Stale {
                    error: io::ErrorKind::UnexpectedEof.into(),
                    sent: true,
                });
            }
            Ok(0) => {
                return Err(invalid(
                    "upstream closed the connection before a complete response head",
                ));
            }
            Ok(_) => received = true,
            Err(e) if !received => {
                return Err(Failure::Stale {
                    error: e,
                    sent: true,
                })
            }
            Err(e) => {
                return Err(invalid(&format!(
                    "reading the upstream response head failed: {e}"
                )))
            }
        }
    }
}

fn invalid(cause: &str) -> Failure {
    Failure::Invalid(cause.to_owned())
}

/// Serializes `METHOD SP target SP HTTP/1.1 CRLF`, each header line and the
/// final CRLF into `out` (cleared first; its capacity is reused).
pub fn write_head(out: &mut Vec<u8>, method: &Method, uri: &http::Uri, headers: &HeaderMap) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
