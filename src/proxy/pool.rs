//! Upstream connections for one worker thread: small LIFO stacks of idle HTTP/1.1
//! connections per upstream (hyper client connections, and raw ones for the lean
//! exchange of `proxy::lean`), owned by the worker (nothing shared between cores,
//! see shared/reference/proxy-performance.md). A connection returns to the stack
//! when its response body ended cleanly; broken, expired or surplus connections
//! are dropped. No background task: expiry is checked on checkout and on return.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Initial read buffer of a lean connection (grown as needed).
pub const LEAN_READ_BUF: usize = 16 * 1024;

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
    since: Instant,
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
}

impl LeanCheckout {
    /// Returns the connection to its pool. The caller guarantees the previous
    /// response was read exactly and allowed keep-alive; a connection with
    /// unread bytes is dropped here anyway.
    pub fn release(self) {
        let LeanCheckout { pool, conn, .. } = self;
        pool.put_lean(conn);
    }
}

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
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
}

impl Checkout {
    /// Returns the connection to its pool (dropped if closed or the pool is full).
    pub fn release(self) {
        self.pool.put(self.sender);
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

    fn put_lean(&self, conn: LeanConn) {
        if !conn.read_buf.is_empty() {
            return;
        }
        let Ok(mut idle) = self.idle_lean.lock() else {
            return;
        };
        if let Some(oldest) = idle.first() {
            if oldest.since.elapsed() > self.target.idle_timeout {
                idle.remove(0);
            }
        }
        if idle.len() < self.target.max_idle {
            idle.push(IdleLean {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn take_idle_lean(&self) -> Option<LeanConn> {
        let Ok(mut idle) = self.idle_lean.lock() else {
            return None;
        };
        while let Some(mut i) = idle.pop() {
            if i.since.elapsed() <= self.target.idle_timeout && i.conn.is_quiet() {
                return Some(i.conn);
            }
        }
        None
    }

    /// A lean connection: the most recently used idle one, else a new one. An
    /// idle connection the upstream closed meanwhile is found out by the first
    /// read or write (the caller retries once on a fresh connection).
    pub async fn checkout_lean(self: &Arc<Self>) -> Result<LeanCheckout, ConnectError> {
        if let Some(conn) = self.take_idle_lean() {
            return Ok(LeanCheckout {
                pool: self.clone(),
                conn,
                reused: true,
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
        })
    }

    fn put(&self, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // Expire the oldest (bottom of the LIFO stack) while we are here.
        if let Some(oldest) = idle.first() {
            if oldest.since.elapsed() > self.target.idle_timeout || oldest.sender.is_closed() {
                idle.remove(0);
            }
        }
        if idle.len() < self.target.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Incoming>> {
        let Ok(mut idle) = self.idle.lock() else {
            return None;
        };
        while let Some(i) = idle.pop() {
            if !i.sender.is_closed() && i.since.elapsed() <= self.target.idle_timeout {
                return Some(i.sender);
            }
        }
        None
    }

    /// A ready connection: the most recently used idle one, else a new one.
    pub async fn checkout(self: &Arc<Self>) -> Result<Checkout, ConnectError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_ok() {
                return Ok(Checkout {
                    pool: self.clone(),
                    sender,
                    reused: true,
                });
            }
        }
        self.connect().await
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
