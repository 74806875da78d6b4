//! The upstream response body of the lean exchange: read straight from the
//! connection inside `poll_frame` (no task, no channel), framed by Content-Length,
//! chunked coding or connection close. A body that ends exactly hands its
//! connection back to the pool; a body that breaks off is an error (so the client
//! connection is aborted, never a truncated body that looks complete). It must not
//! buffer the whole body.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::Interest;

use super::chunked::{ChunkError, ChunkedDecoder, Decoded};
use super::head::Framing;
use crate::proxy::pool::{LeanCheckout, LeanConn, LeanStream, LEAN_READ_BUF};

/// Free space below which the read buffer is grown before a read.
const MIN_SPARE: usize = 4 * 1024;

/// Why a lean response body broke off.
#[derive(Debug, thiserror::Error)]
pub enum LeanBodyError {
    /// Reading from the upstream failed.
    #[error("reading the upstream response body failed: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed before `Content-Length` bytes arrived.
    #[error("upstream closed the connection {left} bytes before the end of the response body")]
    Truncated {
        /// Bytes still missing.
        left: u64,
    },
    /// The upstream closed in the middle of a chunked body.
    #[error("upstream closed the connection before the end of the chunked response body")]
    TruncatedChunked,
    /// The chunked coding is malformed.
    #[error("upstream sent a malformed chunked body: {0}")]
    Chunk(#[from] ChunkError),
}

enum State {
    Length { left: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A response body read from a lean upstream connection.
pub struct LeanBody {
    /// `None` once the body ended (cleanly or not).
    conn: Option<LeanCheckout>,
    state: State,
    reusable: bool,
}

impl LeanBody {
    /// The body that follows a response head on `conn`. An empty body (or a zero
    /// length) ends at once, handing the connection back before hyper ever polls.
    pub fn new(conn: LeanCheckout, framing: Framing, reusable: bool) -> Self {
        let state = match framing {
            Framing::Length(left) => State::Length { left },
            Framing::Chunked => State::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => State::UntilClose,
            Framing::Empty => State::Length { left: 0 },
        };
        let mut body = LeanBody {
            conn: Some(conn),
            state,
            reusable,
        };
        if let State::Length { left: 0 } = body.state {
            body.finish();
        }
        body
    }

    /// The exact end of the body: the connection goes back to the pool when the
    /// response allowed it and nothing beyond the body was received.
    fn finish(&mut self) {
        if let Some(c) = self.conn.take() {
            if self.reusable && c.conn.read_buf.is_empty() {
                c.release();
            }
        }
    }

    fn fail(&mut self, e: LeanBodyError) -> Poll<Option<Result<Frame<Bytes>, LeanBodyError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

/// Reads whatever the socket has into the connection's buffer (growing it when
/// short of space); `0` means the upstream closed.
pub(super) fn poll_fill(conn: &mut LeanConn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if conn.read_buf.capacity() - conn.read_buf.len() < MIN_SPARE {
        conn.read_buf.reserve(LEAN_READ_BUF);
    }
    let stream = match &mut conn.stream {
        LeanStream::Plain(s) => s,
        LeanStream::Tls(tls) => {
            return tokio_util::io::poll_read_buf(Pin::new(&mut **tls), cx, &mut conn.read_buf);
        }
    };
    let spare = conn.read_buf.capacity() - conn.read_buf.len();
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read_buf(&mut conn.read_buf) {
            Ok(n) => {
                if n > 0 && n < spare {
                    // A short read drained the socket (as nginx assumes with
                    // epoll): forget the readiness without another syscall, so
                    // an idle check on checkout costs nothing unless something
                    // new arrives (that raises a fresh readiness event).
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                    });
                }
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = LeanBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, LeanBodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(checkout) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let conn = &mut checkout.conn;
            match &mut this.state {
                State::Length { left } => {
                    if *left == 0 {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    if !conn.read_buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.read_buf.len());
                        let data = conn.read_buf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            // Done without another read: no syscall after the body.
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let left = *left;
                    match ready!(poll_fill(conn, cx)) {
                        Ok(0) => return this.fail(LeanBodyError::Truncated { left }),
                        Ok(_) => {}
                        Err(e) => return this.fail(e.into()),
                    }
                }
                State::Chunked(decoder) => match decoder.decode(&mut conn.read_buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => match ready!(poll_fill(conn, cx)) {
                        Ok(0) => return this.fail(LeanBodyError::TruncatedChunked),
                        Ok(_) => {}
                        Err(e) => return this.fail(e.into()),
                    },
                    Err(e) => return this.fail(e.into()),
                },
                State::UntilClose => {
                    if !conn.read_buf.is_empty() {
                        let data = conn.read_buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(poll_fill(conn, cx)) {
                        Ok(0) => {
                            // The close is the end; such a connection is never reused.
                            this.conn = None;
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(e) => return this.fail(e.into()),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.state) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), State::Length { left }) => SizeHint::with_exact(*left),
            (Some(_), _) => SizeHint::default(),
        }
    }
}
