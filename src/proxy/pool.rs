//! Upstream connections for one worker thread: a small LIFO stack of idle HTTP/1.1
//! connections per upstream, owned by the worker (nothing shared between cores,
//! see shared/reference/proxy-performance.md). A connection returns to the stack
//! when its response body ended cleanly; broken, expired or surplus connections
//! are dropped. No background task: expiry is checked on checkout and on return.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
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

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

/// One worker's idle connections to one upstream.
pub struct UpstreamPool {
    /// The upstream these connections lead to.
    pub target: Arc<UpstreamTarget>,
    idle: Mutex<Vec<Idle>>,
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
        })
    }

    /// Number of idle connections (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
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
