//! Sends one prepared request to its upstream over a pooled HTTP/1.1 connection
//! and turns the answer into the client response: bodies stream both ways,
//! `101 Switching Protocols` becomes a byte tunnel, hop-by-hop response headers
//! are dropped. Failures become [`RequestError`]s; nothing here logs. Bodyless,
//! non-upgrade requests take the lean path instead (`proxy::lean`), which
//! answers the same way.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::headers::strip_hop_by_hop;
use super::pool::{ConnectError, UpstreamPool};
use crate::error::RequestError;

/// Forwards `req` (already cleaned and rewritten to origin-form) to the pool's
/// upstream. `client_upgrade` is the client side of a requested protocol switch;
/// `now` is when the request arrived (the response time counts from there).
pub async fn forward(
    pool: &Arc<UpstreamPool>,
    req: Request<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    now: tokio::time::Instant,
) -> Result<Response<ProxyBody>, RequestError> {
    if super::lean::eligible(&req, client_upgrade.is_some()) {
        return super::lean::forward(pool, req, now).await;
    }
    // Boxed: hyper's client futures are large and this path is the rarer one;
    // inline, they would be part of (and copied with) every request's future.
    Box::pin(forward_with_hyper(pool, req, client_upgrade, now)).await
}

async fn forward_with_hyper(
    pool: &Arc<UpstreamPool>,
    req: Request<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    now: tokio::time::Instant,
) -> Result<Response<ProxyBody>, RequestError> {
    let target = &pool.target;
    let timed_out = |_| response_timeout(target.name);
    let mut checkout = pool
        .checkout(now)
        .await
        .map_err(|e| connect_error(target.name, e))?;
    // A new connection may have taken a while (up to `connect_timeout`): the
    // response time starts once it is there, as it always has.
    let sent_at = if checkout.reused {
        now
    } else {
        tokio::time::Instant::now()
    };
    let sent = checkout
        .send_within(req, sent_at)
        .await
        .map_err(timed_out)?;
    let mut resp = match sent {
        Ok(resp) => resp,
        Err(mut e) => match e.take_message() {
            // Nothing was written on a reused connection that the upstream had
            // already closed: safe to send on a fresh one, whatever the method.
            Some(req) if checkout.reused => {
                checkout = Box::pin(pool.connect())
                    .await
                    .map_err(|e| connect_error(target.name, e))?;
                // The retry gets its own full response time, as a first try would.
                let retry_start = tokio::time::Instant::now();
                match checkout
                    .send_within(req, retry_start)
                    .await
                    .map_err(timed_out)?
                {
                    Ok(resp) => resp,
                    Err(e) => return Err(bad_gateway(target.name, e.error())),
                }
            }
            _ => return Err(bad_gateway(target.name, e.error())),
        },
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(RequestError::BadGateway {
                upstream: target.name.to_owned(),
                cause: "upstream switched protocols without being asked".into(),
            });
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, ProxyBody::upstream(body, None)));
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        ProxyBody::upstream(body, Some(checkout)),
    ))
}

/// Marks a request as a protocol switch towards the upstream after the client's
/// own `Connection`/`Upgrade` headers were removed.
pub fn request_upgrade(req: &mut Request<Incoming>, protocol: HeaderValue) {
    let h = req.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, protocol);
}

async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "protocol upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection closed with an error");
    }
}

/// The client-facing error for a response head that did not arrive within
/// `response_timeout` (shared with the lean path).
pub(super) fn response_timeout(upstream: &str) -> RequestError {
    RequestError::GatewayTimeout {
        upstream: upstream.to_owned(),
        phase: "response",
    }
}

/// The client-facing error for a failed connect (shared with the lean path).
pub(super) fn connect_error(upstream: &str, e: ConnectError) -> RequestError {
    match e {
        ConnectError::Timeout => RequestError::GatewayTimeout {
            upstream: upstream.to_owned(),
            phase: "connect",
        },
        other => RequestError::BadGateway {
            upstream: upstream.to_owned(),
            cause: other.to_string(),
        },
    }
}

fn bad_gateway(upstream: &str, e: &hyper::Error) -> RequestError {
    RequestError::BadGateway {
        upstream: upstream.to_owned(),
        cause: e.to_string(),
    }
}
