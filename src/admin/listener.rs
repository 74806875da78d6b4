//! The `[server] admin_listen` listener: a small HTTP/1.1 server on the control
//! runtime that answers `GET /metrics` (Prometheus text), `/healthz` and `/readyz`
//! for scrapers and orchestrators, and 404 to anything else. It is bound when the
//! App is built (so its address is known) and stops with the same shutdown watch.
//! It never serves the public listener, never proxies, and shows no personal data.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics;
use crate::proxy::server::ServeError;
use crate::proxy::Proxy;

/// A slow scraper is not waited for longer than this at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A future that says whether usher can take traffic.
pub type ReadyFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// What `/readyz` asks. The proxy answers it (IdP discovery loaded, upstreams
/// answering, cached for a second); tests plug in a fixed answer.
pub trait ReadyProbe: Send + Sync + 'static {
    /// True when usher is ready for traffic.
    fn ready(&self) -> ReadyFuture<'_>;
}

impl ReadyProbe for Proxy {
    fn ready(&self) -> ReadyFuture<'_> {
        Box::pin(crate::proxy::reserved::ready(self))
    }
}

/// What the admin listener needs from the running App.
#[derive(Clone)]
pub struct AdminState {
    /// Answers `/readyz`.
    pub ready: Arc<dyn ReadyProbe>,
    /// Open public connections, exported as `usher_open_connections` at each scrape.
    pub open_connections: Option<Arc<AtomicUsize>>,
}

/// What a request to the admin listener asks for. Decided on method and exact
/// path only (no query, no header), like the public health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /metrics`.
    Metrics,
    /// `GET|HEAD /healthz`: the process serves.
    Health,
    /// `GET|HEAD /readyz`: the proxy can take traffic.
    Ready,
    /// A known path with another method: 405.
    MethodNotAllowed,
    /// Anything else: 404.
    NotFound,
}

/// Routes a request (pure).
pub fn route(method: &Method, path: &str) -> Route {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let known = match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        _ => return Route::NotFound,
    };
    if read {
        known
    } else {
        Route::MethodNotAllowed
    }
}

/// The admin listener, bound but not yet serving.
#[derive(Debug)]
pub struct AdminListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl AdminListener {
    /// Binds `addr` (port 0 picks a free port). Fails like the public listener does
    /// when the port is taken.
    pub fn bind(addr: SocketAddr) -> Result<AdminListener, ServeError> {
        let bind_err = |source| ServeError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok(AdminListener { listener, addr })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on `runtime` until `shutdown` turns true.
    pub fn spawn(
        self,
        runtime: &Handle,
        state: AdminState,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let addr = self.addr;
        let listener = self.listener;
        runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(l) => serve(l, state, shutdown).await,
                Err(e) => tracing::error!(%addr, error = %e, "admin listener could not start"),
            }
        })
    }
}

async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin listener serving /metrics, /healthz, /readyz");
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        let (stream, _) = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(answer(&state, &req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// The answer to one admin request.
pub async fn answer<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    match route(req.method(), req.uri().path()) {
        Route::Metrics => {
            if let Some(open) = &state.open_connections {
                metrics::set_open_connections(open.load(Ordering::Relaxed));
            }
            text(StatusCode::OK, metrics::CONTENT_TYPE, metrics::render())
        }
        Route::Health => text(StatusCode::OK, PLAIN, "ok\n".into()),
        Route::Ready => {
            if state.ready.ready().await {
                text(StatusCode::OK, PLAIN, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "not ready: an identity provider or upstream is not answering\n".into(),
                )
            }
        }
        Route::MethodNotAllowed => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n".into());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        Route::NotFound => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: this listener serves /metrics, /healthz and /readyz\n".into(),
        ),
    }
}

const PLAIN: &str = "text/plain; charset=utf-8";

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Fixed(AtomicBool);

    impl ReadyProbe for Fixed {
        fn ready(&self) -> ReadyFuture<'_> {
            let ok = self.0.load(Ordering::Relaxed);
            Box::pin(async move { ok })
        }
    }

    #[test]
    fn routes_by_exact_path_and_method() {
        let table = [
            (Method::GET, "/metrics", Route::Metrics),
            (Method::HEAD, "/metrics", Route::Metrics),
            (Method::GET, "/healthz", Route::Health),
            (Method::GET, "/readyz", Route::Ready),
            (Method::HEAD, "/readyz", Route::Ready),
            (Method::POST, "/metrics", Route::MethodNotAllowed),
            (Method::DELETE, "/readyz", Route::MethodNotAllowed),
            (Method::GET, "/metrics/", Route::NotFound),
            (Method::GET, "/Metrics", Route::NotFound),
            (Method::GET, "/_usher/healthz", Route::NotFound),
            (Method::GET, "/", Route::NotFound),
            (Method::POST, "/nope", Route::NotFound),
        ];
        for (method, path, want) in table {
            assert_eq!(route(&method, path), want, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_until_shutdown() {
        metrics::install();
        let open = Arc::new(AtomicUsize::new(3));
        let probe = Arc::new(Fixed(AtomicBool::new(true)));
        let state = AdminState {
            ready: probe.clone(),
            open_connections: Some(open.clone()),
        };
        let listener = AdminListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = watch::channel(false);
        let task = listener.spawn(&Handle::current(), state, stopped);
        let http = reqwest::Client::new();
        let get = |path: &str| http.get(format!("http://{addr}{path}")).send();

        let r = get("/metrics").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], metrics::CONTENT_TYPE);
        let scrape = metrics::Scrape::parse(&r.text().await.unwrap()).unwrap();
        assert_eq!(
            scrape.get(metrics::OPEN_CONNECTIONS, &[]),
            Some(3.0),
            "the gauge is read at scrape time"
        );
        assert_eq!(
            scrape.get(
                metrics::BUILD_INFO,
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );

        let r = get("/healthz").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok\n");
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        probe.0.store(false, Ordering::Relaxed);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        let r = get("/anything").await.unwrap();
        assert_eq!(r.status(), 404);
        let r = http
            .post(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
        let fresh = reqwest::Client::new();
        assert!(
            fresh
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_err(),
            "no longer listening"
        );
    }
}
