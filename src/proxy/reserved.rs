//! usher's own endpoints under `/_usher/`, answered here and never forwarded.
//! Health is an exact path match (never decided by User-Agent or any header,
//! advisory #649/GHSA-5hvv); readiness probes every upstream at most once a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};

use super::pool::{open, UpstreamTarget};
use super::Proxy;
use crate::auth::flow::PageContext;
use crate::error::RequestError;

/// How long a readiness answer is reused, so probes cannot be turned into load.
const READY_CACHE: Duration = Duration::from_secs(1);

/// Cached result of the last upstream probe.
#[derive(Debug, Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    fn cached(&self) -> Option<bool> {
        let last = self.last.lock().ok()?;
        match *last {
            Some((at, ok)) if at.elapsed() < READY_CACHE => Some(ok),
            _ => None,
        }
    }

    fn store(&self, ok: bool) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), ok));
        }
    }
}

/// Answers a request for a reserved path.
pub async fn handle<B>(
    proxy: &Proxy,
    path: &str,
    req: &Request<B>,
    ctx: &PageContext<'_>,
) -> Result<Response<Bytes>, RequestError> {
    let get_or_head = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(resp) = proxy
        .sign_in
        .endpoint(path, req.method(), req.uri().query(), req.headers(), ctx)
        .await
    {
        return Ok(resp);
    }
    match path {
        "/_usher/healthz" if get_or_head => Ok(text(StatusCode::OK, "ok\n")),
        "/_usher/readyz" if get_or_head => {
            if ready(proxy).await {
                Ok(text(StatusCode::OK, "ready\n"))
            } else {
                Err(RequestError::Unavailable(
                    "an identity provider or upstream is not answering",
                ))
            }
        }
        _ => Err(RequestError::NotFound),
    }
}

/// Answers an inbound SCIM request (`/_usher/scim/...`): 404 when no `[[idp]]` of
/// that name has a `scim_token`.
pub async fn scim<B>(
    proxy: &Proxy,
    path: &str,
    req: Request<B>,
) -> Result<Response<Bytes>, RequestError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match proxy.scim.get() {
        Some(server) => server.handle(path, req).await.ok_or(RequestError::NotFound),
        None => Err(RequestError::NotFound),
    }
}

/// Whether every identity provider's discovery is loaded and every upstream
/// answers an HTTP request right now (cached for a second).
pub async fn ready(proxy: &Proxy) -> bool {
    if let Some(ok) = proxy.readiness.cached() {
        return ok;
    }
    let mut ok = proxy.sign_in.ready().await;
    for u in &proxy.upstreams {
        if !probe(&u.target).await {
            tracing::warn!(upstream = u.target.name, "upstream is not answering");
            ok = false;
        }
    }
    proxy.readiness.store(ok);
    ok
}

/// One `HEAD /` on a fresh connection; any HTTP answer counts as alive.
async fn probe(target: &UpstreamTarget) -> bool {
    let budget = target.connect_timeout + Duration::from_secs(2);
    let attempt = async {
        let mut sender = open::<Empty<Bytes>>(target).await.ok()?;
        let req = Request::head("/")
            .header(header::HOST, target.connect_host.as_str())
            .header("user-agent", "usher-readiness")
            .body(Empty::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let _ = resp.into_body().collect().await;
        Some(())
    };
    matches!(tokio::time::timeout(budget, attempt).await, Ok(Some(())))
}

fn text(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
