//! The response body usher sends: either bytes it made itself (error pages,
//! health answers) or the upstream's body streamed through frame by frame. When
//! an upstream body ends cleanly its connection goes back to the worker's pool;
//! when the body is finished or dropped the request's access-log line is written
//! and its status and duration counted, so bytes and duration are the real ones.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::lean::body::LeanBody;
use super::pool::Checkout;
use crate::admin::metrics::{UpstreamErrorKind, UpstreamMetrics};
use crate::telemetry::access_log::AccessLine;

/// What the access log needs to know about one request.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request head was received.
    pub start: Instant,
    /// The same moment on the wall clock (the log line's timestamp is this plus
    /// the elapsed time: one clock read fewer per request).
    pub wall: SystemTime,
    pub method: Method,
    pub host: HeaderValue,
    pub uri: Uri,
    pub status: StatusCode,
    /// Upstream name, or `usher` for answers usher made itself.
    pub upstream: &'static str,
    pub request_id: HeaderValue,
    /// The signed-in session, once known (shared, not copied: the log needs only
    /// its username).
    pub user: Option<std::sync::Arc<crate::session::Session>>,
    /// The upstream's request counters (`None` while metrics are off).
    pub metrics: Option<&'static UpstreamMetrics>,
    /// The request counts as in flight on its connection until this is dropped.
    pub in_flight: super::InFlight,
}

impl AccessRecord {
    fn write(&self, bytes: u64) {
        let elapsed = self.start.elapsed();
        if let Some(m) = self.metrics {
            m.record(self.status.as_u16(), elapsed);
        }
        let now = self.wall + elapsed;
        crate::telemetry::access_log::write(
            now,
            &AccessLine {
                method: self.method.as_str(),
                host: self.host.to_str().unwrap_or("-"),
                path: self.uri.path(),
                status: self.status.as_u16(),
                bytes,
                duration_us: elapsed.as_micros() as u64,
                upstream: self.upstream,
                request_id: self.request_id.to_str().unwrap_or("-"),
                user: self.user.as_ref().map_or("-", |s| s.username.as_str()),
            },
        );
    }
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        connection: Option<Checkout>,
    },
    /// An upstream body read by the request task itself (`proxy::lean`); it
    /// returns its connection to the pool on its own when it ends exactly.
    Lean(LeanBody),
}

/// The error of a response body usher streams (hyper's or the lean path's).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response usher writes to a client.
pub struct ProxyBody {
    kind: Kind,
    /// Boxed: the response (and so this body) is moved several times on its way
    /// to hyper, and the record is most of its size.
    log: Option<Box<AccessRecord>>,
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

    /// An upstream body from the lean exchange.
    pub fn lean(body: LeanBody) -> Self {
        ProxyBody {
            kind: Kind::Lean(body),
            log: None,
            bytes: 0,
        }
    }

    /// Attaches the access-log record written when the body completes.
    pub fn with_log(mut self, record: Box<AccessRecord>) -> Self {
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
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
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
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Kind::Lean(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.bytes += d.len() as u64;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(m) = this.log.as_ref().and_then(|r| r.metrics) {
                        m.error(UpstreamErrorKind::Body);
                    }
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Lean(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Lean(body) => body.size_hint(),
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

/// Why [`read_capped`] returned no body.
#[derive(Debug, PartialEq, Eq)]
pub enum CappedError {
    /// More than the allowed bytes were sent (or declared).
    TooLarge,
    /// The client's body broke off or could not be read.
    Unreadable,
}

/// How much of an oversized body is still read (and dropped) before answering,
/// and for how long: a client still writing when the 413 and the close arrive
/// would otherwise get a reset and lose the answer (the "lingering close" nginx
/// does). Beyond either bound the connection is simply closed.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(3);

/// Reads a request body of at most `max` bytes for usher's own endpoints. An
/// oversized body (declared by `Content-Length` or found while reading) is
/// drained within bounds before the caller answers 413.
pub async fn read_capped<B>(
    headers: &http::HeaderMap,
    body: B,
    max: usize,
) -> Result<Bytes, CappedError>
where
    B: http_body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = std::pin::pin!(body);
    if declared.is_some_and(|n| n > max as u64) {
        drain(body.as_mut(), 0).await;
        return Err(CappedError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(CappedError::Unreadable);
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                drain(body.as_mut(), buf.len() + data.len()).await;
                return Err(CappedError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and drops the rest of `body` (already `seen` bytes), within
/// [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain<B>(mut body: Pin<&mut B>, mut seen: usize)
where
    B: http_body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod capped_tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn chunks(n: usize, size: usize) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> {
        let frames = (0..n).map(move |_| Ok(http_body::Frame::data(Bytes::from(vec![b'x'; size]))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn small_bodies_come_back_whole() {
        let h = http::HeaderMap::new();
        let got = read_capped(&h, Full::new(Bytes::from_static(b"a=1")), 10).await;
        assert_eq!(got, Ok(Bytes::from_static(b"a=1")));
        let got = read_capped(&h, chunks(3, 4), 12).await;
        assert_eq!(got.map(|b| b.len()), Ok(12));
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_and_drained() {
        let h = http::HeaderMap::new();
        assert_eq!(
            read_capped(&h, chunks(3, 5), 12).await,
            Err(CappedError::TooLarge)
        );
        let mut declared = http::HeaderMap::new();
        declared.insert(http::header::CONTENT_LENGTH, "100".parse().unwrap());
        assert_eq!(
            read_capped(&declared, Full::new(Bytes::from_static(b"x")), 12).await,
            Err(CappedError::TooLarge)
        );
        // Draining consumes what the client still sends.
        let mut body = std::pin::pin!(chunks(4, 8));
        drain(body.as_mut(), 0).await;
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_broken_body_is_unreadable() {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> =
            vec![Err(std::io::Error::other("reset"))];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let h = http::HeaderMap::new();
        assert_eq!(
            read_capped(&h, body, 12).await,
            Err(CappedError::Unreadable)
        );
    }
}
