//! Upstream connections for one worker thread: small LIFO stacks of idle HTTP/1.1
//! connections per upstream (hyper client connections, and raw ones for the lean
//! exchange of `proxy::lean`), owned by the worker (nothing shared between cores,
//! see shared/reference/proxy-performance.md). A connection returns to the stack
//! when its response body ended cleanly; broken, expired or surplus connections
//! are dropped. No background task: expiry is checked on checkout and on return.
//!
//! Each connection carries its own response timer, moved forward for every
//! request: a timer made per request costs a registration in the runtime's
//! timer wheel and a removal (a lock each), while moving a registered timer to
//! a later deadline is one atomic update. The timer's deadline also tells when
//! the connection was last used, so returning it needs no clock read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

/// How to reach one upstream; built once at start-up and shared by all workers.
pub struct UpstreamTarget {
    /// Config name, used in logs and metrics.
    pub name: &'static str,
    /// Host to connect to (DNS name or IP literal without brackets).
    pub connect_host: String,
    pub port: u16,
    /// Present for `https://` upstreams.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect or TLS handshake took longer than `connect_timeout`.
    #[error("connect timed out")]
    Timeout,
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// The HTTP/1.1 handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Initial read buffer of a lean connection (grown as needed).
pub const LEAN_READ_BUF: usize = 16 * 1024;

/// A raw HTTP/1.1 connection of the lean exchange (`proxy::lean`), driven by the
/// request task itself: the socket, its read buffer (bytes received but not yet
/// consumed stay here) and a reusable buffer for writing request heads.
pub struct LeanConn {
    /// The connection to the upstream.
    pub stream: LeanStream,
    /// Bytes read from `stream`; empty whenever the connection is idle.
    pub read_buf: BytesMut,
    /// Scratch space for serializing request heads (kept for its capacity).
    pub write_buf: Vec<u8>,
}

/// The byte stream of a lean connection: plain TCP, or TLS over TCP for
/// `https://` upstreams.
pub enum LeanStream {
    /// Plain TCP (`http://` upstreams).
    Plain(TcpStream),
    /// TLS (`https://` upstreams); boxed, the TLS state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl LeanConn {
    /// Whether nothing arrived while the connection was idle: no unsolicited
    /// bytes (say a `408` before a close) and no close. On plain TCP this costs
    /// no syscall unless the socket was signalled readable since the last short
    /// read; on TLS it also consumes records without application data (session
    /// tickets).
    fn is_quiet(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match &mut self.stream {
            LeanStream::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            LeanStream::Tls(s) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut buf = tokio::io::ReadBuf::new(&mut probe);
                tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut **s), &mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

struct IdleLean {
    conn: LeanConn,
    /// The connection's response timer (see [`Idle::timer`]).
    timer: Pin<Box<Sleep>>,
}

/// A lean connection taken from (or newly made for) a pool;
/// [`LeanCheckout::release`] gives it back for reuse.
pub struct LeanCheckout {
    pool: Arc<UpstreamPool>,
    /// The connection.
    pub conn: LeanConn,
    /// Whether this connection served requests before (a failure before any
    /// response byte justifies one retry on a fresh connection).
    pub reused: bool,
    /// The connection's response timer, armed by [`LeanCheckout::arm`].
    pub timer: Pin<Box<Sleep>>,
}

impl LeanCheckout {
    /// Sets the response timer to `response_timeout` after `start`, for the
    /// exchange about to begin (raced with it through [`Within`]).
    pub fn arm(&mut self, start: Instant) {
        let deadline = deadline_after(start, self.pool.target.response_timeout);
        self.timer.as_mut().reset(deadline);
    }

    /// Returns the connection to its pool. The caller guarantees the previous
    /// response was read exactly and allowed keep-alive; a connection with
    /// unread bytes is dropped here anyway.
    pub fn release(self) {
        let LeanCheckout {
            pool, conn, timer, ..
        } = self;
        pool.put_lean(IdleLean { conn, timer });
    }
}

struct Idle {
    sender: SendRequest<Incoming>,
    /// The connection's response timer; its deadline was set when its last
    /// request started.
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    /// See [`unused_too_long`].
    fn expired(&self, t: &UpstreamTarget, now: Instant) -> bool {
        unused_too_long(&self.timer, t, now)
    }
}

/// One worker's idle connections to one upstream.
pub struct UpstreamPool {
    /// The upstream these connections lead to.
    pub target: Arc<UpstreamTarget>,
    idle: Mutex<Vec<Idle>>,
    idle_lean: Mutex<Vec<IdleLean>>,
}

/// A connection taken from (or newly made for) a pool; [`Checkout::release`]
/// gives it back for reuse.
pub struct Checkout {
    pool: Arc<UpstreamPool>,
    /// The sender half of the HTTP/1.1 connection.
    pub sender: SendRequest<Incoming>,
    /// Whether this connection served requests before (a failure on it before
    /// anything was written justifies one retry on a fresh connection).
    pub reused: bool,
    timer: Pin<Box<Sleep>>,
}

impl Checkout {
    /// Returns the connection to its pool (dropped if closed or the pool is full).
    pub fn release(self) {
        self.pool.put(Idle {
            sender: self.sender,
            timer: self.timer,
        });
    }

    /// Sends `req` and waits for the response head, at most the upstream's
    /// `response_timeout` from `now`. `Err(Elapsed)` when the time ran out.
    pub async fn send_within(
        &mut self,
        req: hyper::Request<Incoming>,
        now: Instant,
    ) -> Result<
        Result<
            hyper::Response<Incoming>,
            hyper::client::conn::TrySendError<hyper::Request<Incoming>>,
        >,
        Elapsed,
    > {
        self.timer
            .as_mut()
            .reset(deadline_after(now, self.pool.target.response_timeout));
        let response = self.sender.try_send_request(req);
        Within {
            response,
            timer: self.timer.as_mut(),
        }
        .await
    }
}

/// When the request that last armed `timer` started (its deadline less the
/// timeout; checked, as absurd configured timeouts are clamped by tokio).
fn last_start(timer: &Sleep, t: &UpstreamTarget) -> Instant {
    let deadline = timer.deadline();
    deadline.checked_sub(t.response_timeout).unwrap_or(deadline)
}

/// Whether the connection whose response timer is `timer` has been unused for
/// longer than `idle_timeout`, counted from its last request's start (a little
/// early, the safe side: the danger is an upstream that already closed its end).
fn unused_too_long(timer: &Sleep, t: &UpstreamTarget, now: Instant) -> bool {
    now.saturating_duration_since(last_start(timer, t)) > t.idle_timeout
}

/// `now + timeout`, or as far as tokio's timers go.
fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    // About 30 years, tokio's own cap for far-off sleeps.
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(timeout.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// The response did not start within `response_timeout`.
#[derive(Debug)]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// A response future raced against the connection's timer.
    pub struct Within<'a, F> {
        #[pin]
        pub response: F,
        pub timer: Pin<&'a mut Sleep>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.response.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl UpstreamPool {
    /// An empty pool for one worker.
    pub fn new(target: Arc<UpstreamTarget>) -> Arc<Self> {
        Arc::new(UpstreamPool {
            target,
            idle: Mutex::new(Vec::new()),
            idle_lean: Mutex::new(Vec::new()),
        })
    }

    /// Number of idle connections (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Number of idle lean connections (for tests and metrics).
    pub fn idle_lean_count(&self) -> usize {
        self.idle_lean.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn put_lean(&self, conn: IdleLean) {
        if !conn.conn.read_buf.is_empty() {
            return;
        }
        let Ok(mut idle) = self.idle_lean.lock() else {
            return;
        };
        // As in `put`: the returned connection's last start stands in for now.
        let now = last_start(&conn.timer, &self.target);
        if idle
            .first()
            .is_some_and(|oldest| unused_too_long(&oldest.timer, &self.target, now))
        {
            idle.remove(0);
        }
        if idle.len() < self.target.max_idle {
            idle.push(conn);
        }
    }

    fn take_idle_lean(&self, now: Instant) -> Option<IdleLean> {
        let Ok(mut idle) = self.idle_lean.lock() else {
            return None;
        };
        while let Some(mut i) = idle.pop() {
            if !unused_too_long(&i.timer, &self.target, now) && i.conn.is_quiet() {
                return Some(i);
            }
        }
        None
    }

    /// A lean connection: the most recently used idle one, else a new one. An
    /// idle connection the upstream closed meanwhile is found out by the first
    /// read or write (the caller retries once on a fresh connection). `now` is
    /// the request's start.
    pub async fn checkout_lean(
        self: &Arc<Self>,
        now: Instant,
    ) -> Result<LeanCheckout, ConnectError> {
        if let Some(IdleLean { conn, timer }) = self.take_idle_lean(now) {
            return Ok(LeanCheckout {
                pool: self.clone(),
                conn,
                reused: true,
                timer,
            });
        }
        // Boxed: connecting (TCP, TLS handshake) is rare next to reuse, and its
        // future is large.
        Box::pin(self.connect_lean()).await
    }

    /// Always a new lean connection (TCP, then TLS for `https://` upstreams;
    /// also used for the retry), within `connect_timeout`.
    pub async fn connect_lean(self: &Arc<Self>) -> Result<LeanCheckout, ConnectError> {
        let t = &self.target;
        let stream = tokio::time::timeout(t.connect_timeout, async {
            let s = TcpStream::connect((t.connect_host.as_str(), t.port)).await?;
            s.set_nodelay(true)?;
            match &t.tls {
                None => Ok::<_, io::Error>(LeanStream::Plain(s)),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), s).await?;
                    Ok(LeanStream::Tls(Box::new(tls)))
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Timeout)??;
        Ok(LeanCheckout {
            pool: self.clone(),
            conn: LeanConn {
                stream,
                read_buf: BytesMut::with_capacity(LEAN_READ_BUF),
                write_buf: Vec::with_capacity(1024),
            },
            reused: false,
            // Armed before the first exchange.
            timer: Box::pin(tokio::time::sleep(t.response_timeout)),
        })
    }

    fn put(&self, conn: Idle) {
        if conn.sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // Expire the oldest (bottom of the LIFO stack) while we are here; `now`
        // is at least the returned connection's last start, which is enough.
        let now = last_start(&conn.timer, &self.target);
        if let Some(oldest) = idle.first() {
            if oldest.expired(&self.target, now) || oldest.sender.is_closed() {
                idle.remove(0);
            }
        }
        if idle.len() < self.target.max_idle {
            idle.push(conn);
        }
    }

    fn take_idle(&self, now: Instant) -> Option<Idle> {
        let Ok(mut idle) = self.idle.lock() else {
            return None;
        };
        while let Some(i) = idle.pop() {
            if !i.sender.is_closed() && !i.expired(&self.target, now) {
                return Some(i);
            }
        }
        None
    }

    /// A ready connection: the most recently used idle one, else a new one.
    /// `now` is the request's start (read once by the caller).
    pub async fn checkout(self: &Arc<Self>, now: Instant) -> Result<Checkout, ConnectError> {
        while let Some(mut conn) = self.take_idle(now) {
            if conn.sender.ready().await.is_ok() {
                return Ok(Checkout {
                    pool: self.clone(),
                    sender: conn.sender,
                    reused: true,
                    timer: conn.timer,
                });
            }
        }
        // Boxed: connecting (TCP, TLS handshake, HTTP/1 handshake) is rare next to
        // reuse, and its future is large; inline, it would be part of (and copied
        // with) every request's future.
        Box::pin(self.connect()).await
    }

    /// Always a new connection (used for the retry after a reused one failed).
    pub async fn connect(self: &Arc<Self>) -> Result<Checkout, ConnectError> {
        let t = &self.target;
        let sender = tokio::time::timeout(t.connect_timeout, open(t))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        Ok(Checkout {
            pool: self.clone(),
            sender,
            reused: false,
            // Armed by the first `send_within`.
            timer: Box::pin(tokio::time::sleep(t.response_timeout)),
        })
    }
}

/// Opens one HTTP/1.1 connection to the upstream (TCP, optional TLS, handshake) and
/// spawns its driver task on the current runtime.
pub async fn open<B>(t: &UpstreamTarget) -> Result<SendRequest<B>, ConnectError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect((t.connect_host.as_str(), t.port)).await?;
    tcp.set_nodelay(true)?;
    let mut builder = http1::Builder::new();
    builder.max_buf_size(64 * 1024);
    match &t.tls {
        None => {
            let (sender, conn) = builder.handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Ok(sender)
        }
        Some((connector, server_name)) => {
            let tls = connector.connect(server_name.clone(), tcp).await?;
            let (sender, conn) = builder.handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Ok(sender)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(response: Duration, idle: Duration) -> UpstreamTarget {
        UpstreamTarget {
            name: "t",
            connect_host: "127.0.0.1".into(),
            port: 9,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: response,
            idle_timeout: idle,
            max_idle: 4,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_armed_for_a_request_tells_when_it_started() {
        let t = target(Duration::from_secs(30), Duration::from_secs(60));
        let start = Instant::now();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(1)));
        timer
            .as_mut()
            .reset(deadline_after(start, t.response_timeout));
        assert_eq!(timer.deadline(), start + Duration::from_secs(30));
        assert_eq!(last_start(&timer, &t), start);
        // Moving the deadline forward for the next request moves the start too.
        tokio::time::advance(Duration::from_secs(5)).await;
        let next = Instant::now();
        timer
            .as_mut()
            .reset(deadline_after(next, t.response_timeout));
        assert_eq!(last_start(&timer, &t), next);
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_timeouts_neither_panic_nor_wrap() {
        let now = Instant::now();
        let huge = Duration::from_secs(u64::MAX / 4);
        let d = deadline_after(now, huge);
        assert!(d > now + Duration::from_secs(86_400 * 365));
        let t = target(huge, Duration::from_secs(60));
        let timer = Box::pin(tokio::time::sleep_until(d));
        // The subtraction is checked: at worst the start reads as the deadline,
        // which only makes the connection look fresher than it is.
        assert!(last_start(&timer, &t) <= d);
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_timer_fires_and_is_reusable_afterwards() {
        let t = Arc::new(target(Duration::from_millis(200), Duration::from_secs(60)));
        let mut timer = Box::pin(tokio::time::sleep(t.response_timeout));
        let never = std::future::pending::<()>();
        let out = Within {
            response: never,
            timer: timer.as_mut(),
        }
        .await;
        assert!(out.is_err(), "a response that never comes times out");
        // Re-armed after firing, the same timer waits again.
        timer
            .as_mut()
            .reset(deadline_after(Instant::now(), t.response_timeout));
        let ready = Within {
            response: std::future::ready(7),
            timer: timer.as_mut(),
        }
        .await;
        assert_eq!(ready.ok(), Some(7));
        assert!(!timer.is_elapsed());
    }
}
