//! The response body usher sends: either bytes it made itself (error pages,
//! health answers) or the upstream's body streamed through frame by frame. When
//! an upstream body ends cleanly its connection goes back to the worker's pool;
//! when the body is finished or dropped the request's access-log line is written
//! and its status and duration counted, so bytes and duration are the real ones.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Checkout;
use crate::admin::metrics::{UpstreamErrorKind, UpstreamMetrics};

/// What the access log needs to know about one request.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request head was received.
    pub start: Instant,
    pub method: Method,
    pub host: HeaderValue,
    pub uri: Uri,
    pub status: StatusCode,
    /// Upstream name, or `usher` for answers usher made itself.
    pub upstream: &'static str,
    pub request_id: HeaderValue,
    /// Signed-in user, once known.
    pub user: Option<String>,
    /// The upstream's request counters (`None` while metrics are off).
    pub metrics: Option<&'static UpstreamMetrics>,
}

impl AccessRecord {
    fn write(&self, bytes: u64) {
        let elapsed = self.start.elapsed();
        if let Some(m) = self.metrics {
            m.record(self.status.as_u16(), elapsed);
        }
        tracing::info!(
            target: "usher::access",
            // Display, not Debug: no per-character escaping on the hot path. None
            // of these can hold a line break (the HTTP parser refuses them).
            method = %self.method,
            host = %self.host.to_str().unwrap_or("-"),
            path = %self.uri.path(),
            status = self.status.as_u16(),
            bytes,
            duration_us = elapsed.as_micros() as u64,
            upstream = %self.upstream,
            request_id = %self.request_id.to_str().unwrap_or("-"),
            user = %self.user.as_deref().unwrap_or("-"),
        );
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        connection: Option<Checkout>,
    },
}

/// The body type of every response usher writes to a client.
pub struct ProxyBody {
    kind: Kind,
    log: Option<AccessRecord>,
    bytes: u64,
}

impl ProxyBody {
    /// A body usher made itself.
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody {
            kind: Kind::Full(if bytes.is_empty() { None } else { Some(bytes) }),
            log: None,
            bytes: 0,
        }
    }

    /// An upstream body; `connection` returns to its pool when the body ends cleanly.
    pub fn upstream(body: Incoming, connection: Option<Checkout>) -> Self {
        ProxyBody {
            kind: Kind::Upstream { body, connection },
            log: None,
            bytes: 0,
        }
    }

    /// Attaches the access-log record written when the body completes.
    pub fn with_log(mut self, record: AccessRecord) -> Self {
        self.log = Some(record);
        self
    }

    fn release_if_done(&mut self) {
        if let Kind::Upstream { body, connection } = &mut self.kind {
            if body.is_end_stream() {
                if let Some(c) = connection.take() {
                    c.release();
                }
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => match data.take() {
                Some(b) => {
                    this.bytes += b.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                None => Poll::Ready(None),
            },
            Kind::Upstream { body, connection } => {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            this.bytes += d.len() as u64;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        if let Some(c) = connection.take() {
                            c.release();
                        }
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // A broken body poisons the connection: never pool it.
                        connection.take();
                        if let Some(m) = this.log.as_ref().and_then(|r| r.metrics) {
                            m.error(UpstreamErrorKind::Body);
                        }
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.release_if_done();
        if let Some(record) = self.log.take() {
            record.write(self.bytes);
        }
    }
}
