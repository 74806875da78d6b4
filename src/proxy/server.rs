//! Accepting clients. One OS thread per worker, each running a single-threaded
//! tokio runtime with its own SO_REUSEPORT listener and its own upstream pools:
//! nothing on the request path is shared between cores (measured in
//! shared/reference/proxy-performance.md: 15–35% less CPU per request than one
//! multi-threaded runtime). HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge
//! in clear text) through hyper-util's auto builder. Each worker sweeps its own
//! connections for the slow-loris/idle timeout and drains them at shutdown (up
//! to `shutdown_grace`): see [`super::conn_life`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::conn_life::{self, DoneOnDrop, Drainable, SweepPlan, WatchedIo};
use super::{Conn, ConnInfo, Proxy};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}; is another process using the port, or is the address wrong?")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A worker runtime could not be created.
    #[error("cannot start a worker thread: {0}")]
    Runtime(io::Error),
}

/// Binds `count` listeners on the same address with SO_REUSEPORT so the kernel
/// spreads connections over the workers. Port 0 is resolved by the first bind.
pub fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, ServeError> {
    let mut out = Vec::with_capacity(count.max(1));
    let mut addr_actual = addr;
    for _ in 0..count.max(1) {
        let l = bind_one(addr_actual).map_err(|source| ServeError::Bind { addr, source })?;
        addr_actual = l
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        out.push(l);
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Server-wide knobs, copied out of the config once.
#[derive(Clone)]
pub struct ServerOptions {
    pub tls: Option<TlsAcceptor>,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Running worker threads; [`Workers::join`] waits until all have drained.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    /// Open client connections right now (all workers).
    pub open_connections: Arc<AtomicUsize>,
}

impl Workers {
    /// Blocks until every worker has stopped (after shutdown was signalled).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Starts one worker thread per listener. They run until `shutdown` turns true,
/// then stop accepting and give in-flight requests `shutdown_grace` to finish.
pub fn start(
    proxy: Arc<Proxy>,
    listeners: Vec<std::net::TcpListener>,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Workers, ServeError> {
    let open_connections = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let proxy = proxy.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        let open = open_connections.clone();
        let handle = std::thread::Builder::new()
            .name(format!("usher-worker-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => worker(l, proxy, options, open, shutdown).await,
                        Err(e) => {
                            tracing::error!(error = %e, "worker could not adopt its listener")
                        }
                    }
                });
            })
            .map_err(ServeError::Runtime)?;
        handles.push(handle);
    }
    Ok(Workers {
        handles,
        open_connections,
    })
}

/// Decrements the open-connection count when a connection ends.
struct ConnSlot(Arc<AtomicUsize>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a worker's requests need, owned by that worker.
struct WorkerContext {
    proxy: Arc<Proxy>,
    pools: Arc<[Arc<super::pool::UpstreamPool>]>,
}

fn http_builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 timer: `header_read_timeout` is the worker's sweep (conn_life),
    // not a sleep boxed and registered for every request head.
    builder
        .http1()
        .max_buf_size(options.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_header_bytes as u32)
        .max_concurrent_streams(250);
    builder
}

async fn worker(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    options: ServerOptions,
    open: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    // One reference per worker, cloned per request: the shared `Arc<Proxy>`'s
    // count is never touched on the request path, so its cache line does not
    // move between cores on every request.
    let here = Arc::new(WorkerContext {
        pools: proxy.new_pools(),
        proxy,
    });
    // Access-log lines are batched per worker and handed over on this timer.
    let flusher = tokio::spawn(crate::telemetry::access_log::run_flusher());
    let builder = http_builder(&options);
    // This worker's connections, swept for the slow-loris/idle timeout. Weak:
    // a closed connection's memo is freed at once, not at the next sweep.
    let mut conns: Vec<Weak<Conn>> = Vec::new();
    let plan = SweepPlan::new(options.header_read_timeout, options.keepalive_timeout);
    let mut sweep = tokio::time::interval(plan.every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = sweep.tick() => {
                conns.retain(|c| c.upgrade().is_some_and(|c| c.life.sweep(plan)));
                continue;
            }
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= options.max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, max = options.max_connections, "connection refused: limit reached");
            drop(stream);
            continue;
        }
        let slot = ConnSlot(open.clone());
        let _ = stream.set_nodelay(true);
        let info = ConnInfo::new(peer, options.tls.is_some());
        conns.push(info.downgrade());
        let stream = WatchedIo::new(stream, info.clone());
        let here = here.clone();
        let conn = info.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let here = here.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(here.proxy.handle(&here.pools, conn, req).await) }
        });
        let builder = builder.clone();
        match options.tls.clone() {
            None => {
                tokio::spawn(async move {
                    let _done = DoneOnDrop(&info.life);
                    serve(builder, &info, TokioIo::new(stream), service).await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let timeout = options.header_read_timeout;
                tokio::spawn(async move {
                    let _done = DoneOnDrop(&info.life);
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve(builder, &info, TokioIo::new(tls), service).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    drain(conns, options.shutdown_grace).await;
    flusher.abort();
    crate::telemetry::access_log::flush();
}

/// Asks every connection of this worker to finish what it is answering and
/// close, and waits for them up to `grace`.
async fn drain(mut conns: Vec<Weak<Conn>>, grace: Duration) {
    for c in conns.iter().filter_map(Weak::upgrade) {
        c.life.drain();
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        conns.retain(|c| c.upgrade().is_some_and(|c| !c.life.is_done()));
        if conns.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                grace = ?grace,
                open = conns.len(),
                "shutdown grace period over; closing remaining connections"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl<I, S, B> Drainable for auto::UpgradeableConnection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn start_draining(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn serve<I, S>(
    builder: auto::Builder<TokioExecutor>,
    info: &ConnInfo,
    io: TokioIo<I>,
    service: S,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<super::body::ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, service);
    match conn_life::run(&info.life, conn).await {
        Some(Err(e)) => tracing::debug!(error = %e, "client connection ended with an error"),
        Some(Ok(())) => {}
        None => {
            tracing::debug!(peer = %info.peer, "client connection closed: idle past header_read_timeout or keepalive_timeout")
        }
    }
}
