//! The tiny HTTP server every emulator runs on: accept on a listener, collect the
//! (small) request body, hand the request to the emulator, write its answer.
//! Emulators are plain `async fn(Request<Bytes>) -> Response<Bytes>`; this file
//! owns sockets and shutdown, nothing product-specific.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The client's socket address, put into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Largest request body an emulator accepts (its peers send small JSON/forms).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A boxed emulator response future.
pub type EmulatorFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// An emulator: one function from a fully-read request to a response.
pub type Handler = Arc<dyn Fn(Request<Bytes>) -> EmulatorFuture + Send + Sync>;

/// A running emulator server; dropping the handle does not stop it, [`Running::stop`] does.
pub struct Running {
    /// Where it listens (an ephemeral loopback port in tests).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting; open connections end when their current request completes.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Serves an emulator held in an `Arc` by calling `respond` with a clone of it per
/// request: every product emulator starts this way, so the boxing lives here once.
pub async fn serve_shared<E, F, Fut>(
    addr: SocketAddr,
    emulator: &Arc<E>,
    respond: F,
) -> std::io::Result<Running>
where
    E: Send + Sync + 'static,
    F: Fn(Arc<E>, Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Bytes>> + Send + 'static,
{
    let emulator = emulator.clone();
    let handler: Handler = Arc::new(move |req| Box::pin(respond(emulator.clone(), req)));
    serve(addr, handler).await
}

/// Binds `addr` (use port 0 for an ephemeral port) and serves `handler` until stopped.
pub async fn serve(addr: SocketAddr, handler: Handler) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => break,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    // Emulators that check the caller's address (Crowd) read it here.
                    req.extensions_mut().insert(PeerAddr(peer));
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(dispatch(handler, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Running { addr, stop })
}

async fn dispatch(handler: Handler, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or broken",
            );
        }
    };
    let resp = handler(Request::from_parts(parts, bytes)).await;
    resp.map(Full::new)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Builds a JSON response with the given status (emulator helper).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let body = Bytes::from(value.to_string());
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

/// Builds an empty response with the given status (e.g. 204).
pub fn empty(status: StatusCode) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}

/// Splits a query string into decoded `(key, value)` pairs (repeated keys kept in order).
pub fn query_pairs(req: &Request<Bytes>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_and_stops() {
        let handler: Handler = Arc::new(|req: Request<Bytes>| {
            Box::pin(async move {
                json(
                    StatusCode::OK,
                    &serde_json::json!({"path": req.uri().path(), "len": req.body().len()}),
                )
            })
        });
        let running = serve("127.0.0.1:0".parse().unwrap(), handler)
            .await
            .unwrap();
        let body = reqwest::Client::new()
            .post(format!("{}/x/y", running.url()))
            .body("hello")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, r#"{"len":5,"path":"/x/y"}"#);
        running.stop();
    }

    #[test]
    fn query_pairs_decodes() {
        let req = Request::get("/a?x=1&y=a%20b&x=2")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            query_pairs(&req),
            vec![
                ("x".into(), "1".into()),
                ("y".into(), "a b".into()),
                ("x".into(), "2".into())
            ]
        );
    }
}
