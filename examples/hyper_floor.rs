//! The floor of usher's HTTP stack: the least a reverse proxy built on hyper 1
//! and tokio can do per request, with usher's threading model (one
//! single-threaded runtime per core, SO_REUSEPORT listeners, a per-worker LIFO
//! pool of keep-alive HTTP/1.1 upstream connections) and nothing else — no
//! routing, no header rewriting, no sessions, no access log, no timers.
//!
//! `bench/proxy.sh` runs it beside nginx and usher so that the CPU per request
//! of the chosen stack itself is measured in the same run: usher cannot cost
//! less than this, so the distance between usher and this floor is usher's own
//! work, and the distance between this floor and nginx is the stack's.
//!
//!   cargo run --release --example hyper_floor -- 127.0.0.1:8081 127.0.0.1:8080
//!   (listen address, upstream address)

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Pool = Rc<RefCell<Vec<SendRequest<Incoming>>>>;
type OutBody = Either<Pooled, Full<Bytes>>;

/// The upstream body; gives its connection back to the pool when it ends.
struct Pooled {
    body: Incoming,
    conn: Option<(SendRequest<Incoming>, Pool)>,
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // hyper stops polling once the body says it has ended, so the end is
        // also seen after the last data frame, not only as Ready(None).
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some((sender, pool)) = this.conn.take() {
                pool.borrow_mut().push(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

async fn connect(upstream: SocketAddr) -> Result<SendRequest<Incoming>, String> {
    let tcp = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connect {upstream}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake {upstream}: {e}"))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn forward(
    pool: Pool,
    upstream: SocketAddr,
    req: hyper::Request<Incoming>,
) -> hyper::Response<OutBody> {
    let bad_gateway = |why: String| {
        eprintln!("hyper_floor: {why}");
        let mut r = hyper::Response::new(Either::Right(Full::new(Bytes::from_static(
            b"bad gateway\n",
        ))));
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        r
    };
    let idle = pool.borrow_mut().pop();
    let mut sender = match idle {
        Some(s) if !s.is_closed() => s,
        _ => match connect(upstream).await {
            Ok(s) => s,
            Err(why) => return bad_gateway(why),
        },
    };
    if sender.ready().await.is_err() {
        return bad_gateway("upstream connection closed".into());
    }
    match sender.send_request(req).await {
        Ok(resp) => resp.map(|body| {
            Either::Left(Pooled {
                body,
                conn: Some((sender, pool)),
            })
        }),
        Err(e) => bad_gateway(format!("upstream request failed: {e}")),
    }
}

async fn worker(listener: std::net::TcpListener, upstream: SocketAddr) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return eprintln!("hyper_floor: adopting the listener failed: {e}"),
    };
    let pool: Pool = Rc::new(RefCell::new(Vec::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| {
                let pool = pool.clone();
                async move { Ok::<_, Infallible>(forward(pool, upstream, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(Ok(listen)), Some(Ok(upstream))) = (
        args.get(1).map(|a| a.parse::<SocketAddr>()),
        args.get(2).map(|a| a.parse::<SocketAddr>()),
    ) else {
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR (both ip:port)");
        std::process::exit(2);
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::new();
    for _ in 0..workers {
        let l = match listener(listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hyper_floor: cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        threads.push(std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("hyper_floor: runtime: {e}"),
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, worker(l, upstream));
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}
