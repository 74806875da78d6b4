//! The request path: a client request comes in on a worker, is checked and
//! cleaned at the trust boundary, routed to usher's own endpoints or an upstream,
//! and the answer streams back. `Proxy` is the immutable, compiled form of the
//! config that every worker shares; each worker owns its upstream pools.

pub mod access;
pub mod body;
pub mod conn_life;
pub mod cookies;
pub mod forward;
pub mod headers;
pub mod lean;
pub mod pool;
pub mod reserved;
pub mod route;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use ipnet::IpNet;

use std::time::SystemTime;

use crate::admin::metrics::{upstream_metrics, UpstreamErrorKind, UpstreamMetrics};
use crate::auth::assertion::AssertionCache;
use crate::auth::flow::{PageContext, SignIn};
use crate::config::Settings;
use crate::error::{rescue, wants_json, RequestError};
use access::Access;
use body::{AccessRecord, ProxyBody};
use headers::ForbiddenHeaders;
use pool::{UpstreamPool, UpstreamTarget};
use route::HostTable;

/// Facts about the client connection a request arrived on. One shared
/// allocation per connection: a request clones one reference, not one per field.
#[derive(Debug, Clone)]
pub struct ConnInfo(Arc<Conn>);

/// What [`ConnInfo`] shares.
#[derive(Debug)]
pub struct Conn {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// Forwarding-header values for this connection (cached across its requests).
    pub forwarding: headers::ConnForwarding,
    /// What this connection's last signed-in request resolved to.
    pub memo: ConnMemo,
    /// Requests in flight and the idle count, for the worker's timeouts and drain.
    pub life: conn_life::ConnLife,
}

impl std::ops::Deref for ConnInfo {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

/// One client connection's memory of its last signed-in request: its requests
/// carry the same cookie for the same session, so the next one compares bytes
/// instead of searching shared tables, and reads copies owned by this worker.
#[derive(Debug, Default)]
pub struct ConnMemo {
    /// The last `Cookie` header and the session payload it held.
    pub cookie: crate::session::conn_memo::ConnCookieMemo,
    /// The last identity headers and assertion sent.
    pub identity: crate::auth::assertion::ConnIdentityMemo,
    /// What was forwarded for the last `Cookie` header (usher's cookies taken out).
    pub forward_cookie: cookies::ConnCookieForward,
}

impl ConnInfo {
    /// Describes a freshly accepted connection.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        ConnInfo(Arc::new(Conn {
            peer,
            tls,
            forwarding: headers::ConnForwarding::new(peer.ip(), tls),
            memo: ConnMemo::default(),
            life: conn_life::ConnLife::default(),
        }))
    }

    /// A reference that does not keep the connection's memory alive.
    pub fn downgrade(&self) -> std::sync::Weak<Conn> {
        Arc::downgrade(&self.0)
    }
}

/// One request in flight on its connection, from the moment the request is
/// taken until its response body is finished or dropped (also when the client
/// goes away first): what keeps the connection from counting as idle.
#[derive(Debug)]
pub struct InFlight(ConnInfo);

impl InFlight {
    fn begin(conn: ConnInfo, version: http::Version) -> Self {
        conn.life.begin(version == http::Version::HTTP_2);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.life.end();
    }
}

/// One configured upstream, compiled.
pub struct UpstreamRoute {
    /// How to reach it (shared by every worker's pool).
    pub target: Arc<UpstreamTarget>,
    /// Signed identity assertions for this upstream (`aud` = its name), cached per
    /// session; `None` when no `assertion_header` is configured.
    pub assertions: Option<AssertionCache>,
    /// This upstream's request counters, resolved once; `None` while metrics are off.
    pub metrics: Option<&'static UpstreamMetrics>,
}

/// Everything a worker needs to handle requests, built once from [`Settings`].
pub struct Proxy {
    /// The validated configuration this proxy was built from.
    pub settings: Arc<Settings>,
    /// Upstreams in config order (index 0 is the default).
    pub upstreams: Vec<UpstreamRoute>,
    hosts: HostTable,
    forbidden: ForbiddenHeaders,
    trusted: Vec<IpNet>,
    /// Readiness probe state for `/_usher/readyz`.
    pub readiness: reserved::Readiness,
    /// Sign-in endpoints and the per-request session check.
    pub sign_in: Arc<SignIn>,
    /// Inbound SCIM (`/_usher/scim/v2/{idp}/`), set once by `App::build` when an
    /// `[[idp]]` has a `scim_token`.
    pub scim: std::sync::OnceLock<Arc<crate::directory::scim_in::ScimServer>>,
    /// The admin console (`/_usher/admin/`), installed by `App::build` once the sync
    /// service exists; unset, the console answers 404.
    pub admin: std::sync::OnceLock<Arc<crate::admin::Admin>>,
    /// Request counters of usher's own answers (`upstream="usher"`).
    usher_metrics: Option<&'static UpstreamMetrics>,
}

/// Why the proxy could not be built from a valid config (files, certificates).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// An upstream URL cannot be used for connections.
    #[error("upstream {name}: {reason}")]
    Upstream {
        /// Config name of the upstream.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl Proxy {
    /// Compiles the config into the shared request-path state.
    pub fn build(settings: Arc<Settings>, sign_in: Arc<SignIn>) -> Result<Arc<Proxy>, BuildError> {
        let mut upstreams = Vec::with_capacity(settings.upstreams.len());
        let mut forbidden_names: Vec<String> = Vec::new();
        for u in &settings.upstreams {
            let ih = &u.identity_headers;
            for h in [&ih.user, &ih.email, &ih.groups, &u.assertion_header]
                .into_iter()
                .flatten()
            {
                forbidden_names.push(h.as_str().to_owned());
            }
            let https = u.url.scheme() == "https";
            let host = u.url.host_str().ok_or_else(|| BuildError::Upstream {
                name: u.name.clone(),
                reason: "the url has no host; write it as http://HOST:PORT".into(),
            })?;
            let connect_host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = u
                .url
                .port_or_known_default()
                .unwrap_or(if https { 443 } else { 80 });
            let tls = if https {
                Some(tls::upstream_connector(
                    &connect_host,
                    u.ca_file.as_deref(),
                )?)
            } else {
                None
            };
            // Names live for the whole process; leaking them once lets every log
            // line and metric label borrow them without a per-request copy.
            let name: &'static str = Box::leak(u.name.clone().into_boxed_str());
            upstreams.push(UpstreamRoute {
                target: Arc::new(UpstreamTarget {
                    name,
                    connect_host,
                    port,
                    tls,
                    connect_timeout: u.connect_timeout,
                    response_timeout: u.response_timeout,
                    idle_timeout: u.idle_timeout,
                    max_idle: u.max_idle_per_worker,
                }),
                assertions: u
                    .assertion_header
                    .as_ref()
                    .map(|_| AssertionCache::new(sign_in.signer.clone(), &u.name)),
                metrics: upstream_metrics(name),
            });
        }
        let hosts = HostTable::new(settings.upstreams.iter().map(|u| u.host.as_str()));
        let forbidden = ForbiddenHeaders::new(forbidden_names.iter().map(String::as_str));
        let trusted = settings.server.trusted_proxies.clone();
        Ok(Arc::new(Proxy {
            settings,
            upstreams,
            hosts,
            forbidden,
            trusted,
            readiness: reserved::Readiness::default(),
            sign_in,
            scim: std::sync::OnceLock::new(),
            admin: std::sync::OnceLock::new(),
            usher_metrics: upstream_metrics("usher"),
        }))
    }

    /// Fresh per-worker pools, index-aligned with `upstreams`.
    pub fn new_pools(&self) -> Arc<[Arc<UpstreamPool>]> {
        self.upstreams
            .iter()
            .map(|u| UpstreamPool::new(u.target.clone()))
            .collect()
    }

    /// Handles one request end to end; never fails (failures become error pages).
    pub async fn handle(
        &self,
        pools: &Arc<[Arc<UpstreamPool>]>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        // First, so that if this future is dropped (the client went away) the
        // request still ends for the connection's idle count.
        let in_flight = InFlight::begin(conn, req.version());
        // The clock is read twice per request here and once when the body ends;
        // everything else (session checks, pool expiry, the response timer, the
        // log's timestamp) works from these.
        let start = Instant::now();
        let wall = SystemTime::now();
        let request_id = headers::request_id(req.headers());
        let host = request_host(&req);
        let method = req.method().clone();
        let uri = req.uri().clone();
        let json = wants_json(req.headers());
        let Dispatched {
            result,
            upstream,
            user,
        } = self
            .dispatch(
                pools,
                &in_flight.0,
                req,
                &uri,
                &request_id,
                &host,
                json,
                (start, wall),
            )
            .await;
        let metrics = self.metrics_for(upstream);
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                if let (Some(m), Some(kind)) = (metrics, UpstreamErrorKind::of(&err)) {
                    m.error(kind);
                }
                tracing::warn!(
                    error = %err,
                    request_id = request_id.to_str().unwrap_or("-"),
                    method = %method,
                    path = uri.path(),
                    upstream,
                    "request failed"
                );
                rescue(&err, json, &request_id).map(ProxyBody::full)
            }
        };
        resp.headers_mut()
            .insert(headers::request_id_header(), request_id.clone());
        let record = Box::new(AccessRecord {
            start,
            wall,
            method,
            host,
            uri,
            status: resp.status(),
            upstream,
            request_id,
            user,
            metrics,
            in_flight,
        });
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, body.with_log(record))
    }

    /// The counters of the upstream named `upstream` (a name from `Dispatched`, so
    /// compared by address: a few pointer comparisons, no string compare).
    fn metrics_for(&self, upstream: &'static str) -> Option<&'static UpstreamMetrics> {
        // Metrics off (no admin listener): every table is `None`; skip the scan.
        self.usher_metrics?;
        self.upstreams
            .iter()
            .find(|u| std::ptr::eq(u.target.name, upstream))
            .map_or(self.usher_metrics, |u| u.metrics)
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        pools: &Arc<[Arc<UpstreamPool>]>,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        uri: &Uri,
        request_id: &HeaderValue,
        host: &HeaderValue,
        json: bool,
        (start, now): (Instant, SystemTime),
    ) -> Dispatched {
        // Forged identity headers go first, on every request and every path.
        headers::strip_forged(req.headers_mut(), &self.forbidden);
        // Room for what usher adds (forwarding family, request id, identity): one
        // growth of the header table at most, instead of rehashing mid-way.
        req.headers_mut().reserve(12);
        // Decided on a copy of the URI so the path stays borrowed while the
        // request is rewritten below.
        let path = match route::normalized_path(uri.path()) {
            Ok(p) => p,
            Err(e) => return Dispatched::usher(Err(e.into())),
        };
        if route::is_reserved(&path) {
            // usher's own endpoints are boxed: their large futures would otherwise
            // be part of (and copied with) every proxied request's future.
            if crate::directory::scim_in::is_scim_path(&path) {
                // Bearer-authenticated by the IdP's token, never behind sign-in.
                let resp = Box::pin(reserved::scim(self, &path, req)).await;
                return Dispatched::usher(resp.map(|r| r.map(ProxyBody::full)));
            }
            let ctx = PageContext { json, request_id };
            if crate::admin::is_admin_path(&path) {
                let resp = Box::pin(crate::admin::handle(self, &path, req, &ctx)).await;
                return Dispatched::usher(Ok(resp.map(ProxyBody::full)));
            }
            let resp = Box::pin(reserved::handle(self, &path, &req, &ctx)).await;
            return Dispatched::usher(resp.map(|r| r.map(ProxyBody::full)));
        }
        let index = self.hosts.pick(host.to_str().unwrap_or(""));
        let (Some(route), Some(pool), Some(up)) = (
            self.upstreams.get(index),
            pools.get(index),
            self.settings.upstreams.get(index),
        ) else {
            return Dispatched::usher(Err(RequestError::NotFound));
        };
        let name = route.target.name;

        // Who may pass: decided on the normalized path, before anything is rewritten.
        let access = access::classify(
            &up.public,
            &up.passthrough,
            &path,
            access::has_authorization(req.headers()),
        );
        let mut session = None;
        let mut refreshed_cookies = None;
        let cookies = cookies::RequestCookies::of(req.headers());
        if access == Access::SignedIn {
            let mut resolved = self
                .sign_in
                .sessions
                .resolve_on_connection(cookies.as_bytes(), now, &conn.memo.cookie)
                .await;
            if let Some(s) = resolved.as_mut() {
                // The session is the connection memo's copy: copied only when it changes.
                if s.revalidation_due(&self.sign_in.sessions.policy, now) {
                    match Box::pin(self.sign_in.revalidate(Arc::make_mut(s), now)).await {
                        Some(set) => refreshed_cookies = Some(set),
                        None => resolved = None,
                    }
                }
            }
            match resolved {
                Some(mut s) => {
                    if refreshed_cookies.is_none()
                        && s.touch_due(&self.sign_in.sessions.policy, now)
                    {
                        let touch = self
                            .sign_in
                            .sessions
                            .touch_if_due(Arc::make_mut(&mut s), now);
                        refreshed_cookies = match Box::pin(touch).await {
                            Ok(set) => set,
                            Err(e) => {
                                tracing::warn!(error = %e, "could not refresh the session's activity time");
                                None
                            }
                        };
                    }
                    if refreshed_cookies.is_some() {
                        self.sign_in.sessions.remember_refresh(
                            cookies.as_bytes(),
                            &s,
                            &conn.memo.cookie,
                        );
                    }
                    session = Some(s);
                }
                None => {
                    let resp = signed_out(req.method(), req.headers(), json, uri, request_id);
                    return Dispatched::usher(Ok(resp.map(ProxyBody::full)));
                }
            }
        }
        // usher's own cookies never reach the upstream (Tomcat's 8 KB header limit,
        // and they are none of its business).
        cookies.strip_ours(
            req.headers_mut(),
            self.sign_in.cookie_names(),
            &conn.memo.forward_cookie,
        );

        let upgrade = headers::strip_hop_by_hop(req.headers_mut());
        let trusted = headers::is_trusted(conn.peer.ip(), &self.trusted);
        headers::set_forwarded(req.headers_mut(), &conn.forwarding, host, trusted);
        req.headers_mut()
            .insert(headers::request_id_header(), request_id.clone());
        // Identity last: nothing the client sent (not even `Connection:`) can touch it.
        let user = match &session {
            Some(s) => {
                inject_identity(req.headers_mut(), up, route, s, now, &conn.memo.identity);
                Some(s.clone())
            }
            None => None,
        };
        if let Err(e) = to_origin_form(&mut req, host) {
            return Dispatched {
                result: Err(e),
                upstream: name,
                user,
            };
        }
        let client_upgrade = match upgrade {
            Some(up) => {
                let on = hyper::upgrade::on(&mut req);
                forward::request_upgrade(&mut req, up.protocol);
                Some(on)
            }
            None => None,
        };
        let mut result = forward::forward(pool, req, client_upgrade, start.into()).await;
        if let (Ok(resp), Some(set)) = (&mut result, refreshed_cookies) {
            for c in set {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
        Dispatched {
            result,
            upstream: name,
            user,
        }
    }
}

/// The outcome of routing one request, for the access log.
struct Dispatched {
    result: Result<Response<ProxyBody>, RequestError>,
    upstream: &'static str,
    user: Option<Arc<crate::session::Session>>,
}

impl Dispatched {
    fn usher(result: Result<Response<ProxyBody>, RequestError>) -> Self {
        Dispatched {
            result,
            upstream: "usher",
            user: None,
        }
    }
}

/// Sets the identity headers and the signed assertion from the session.
fn inject_identity(
    headers: &mut http::HeaderMap,
    up: &crate::config::UpstreamSettings,
    route: &UpstreamRoute,
    session: &crate::session::Session,
    now: SystemTime,
    memo: &crate::auth::assertion::ConnIdentityMemo,
) {
    let ih = &up.identity_headers;
    let Some(cache) = &route.assertions else {
        // No assertion configured: plain values only.
        if let Some(v) = crate::auth::assertion::identity_values(session) {
            insert_identity(headers, ih, &v);
        }
        return;
    };
    match cache.headers_on_connection(session, now, memo) {
        Ok(identity) => {
            if let Some(v) = &identity.values {
                insert_identity(headers, ih, v);
            } else {
                tracing::warn!(
                    user = %session.username,
                    "session holds a value that cannot be sent in a header; no identity headers sent"
                );
            }
            if let Some(name) = &up.assertion_header {
                headers.insert(name.clone(), identity.assertion.clone());
            }
        }
        Err(e) => tracing::error!(error = %e, "could not sign the identity assertion"),
    }
}

fn insert_identity(
    headers: &mut http::HeaderMap,
    names: &crate::config::IdentityHeaders,
    values: &crate::auth::assertion::IdentityValues,
) {
    for (name, value) in [
        (&names.user, &values.user),
        (&names.email, &values.email),
        (&names.groups, &values.groups),
    ] {
        if let Some(name) = name {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The answer to a signed-out request that needs a session (also the admin console's).
pub(crate) fn signed_out(
    method: &http::Method,
    headers: &http::HeaderMap,
    json: bool,
    uri: &Uri,
    request_id: &HeaderValue,
) -> Response<bytes::Bytes> {
    match access::signed_out(method, headers, json) {
        access::SignedOut::RedirectToLogin => {
            let original = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let rd: String = url::form_urlencoded::byte_serialize(original.as_bytes()).collect();
            let mut resp = Response::new(bytes::Bytes::new());
            *resp.status_mut() = http::StatusCode::FOUND;
            let location = format!("{}?rd={rd}", crate::auth::flow::LOGIN_PATH);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        access::SignedOut::Unauthorized => crate::error::page(
            http::StatusCode::UNAUTHORIZED,
            "Sign in first: open this site in a browser, or send your own Authorization header to an API path.",
            true,
            request_id,
        ),
    }
}

/// The host the client addressed: the URI authority (HTTP/2, absolute-form) wins
/// over `Host`, as RFC 9112 §3.2.2 requires.
fn request_host<B>(req: &Request<B>) -> HeaderValue {
    if let Some(a) = req.uri().authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            return v;
        }
    }
    req.headers()
        .get(header::HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

/// Rewrites the request for an HTTP/1.1 upstream: origin-form target, `Host` kept
/// as the client sent it (Atlassian products build links from it).
fn to_origin_form<B>(req: &mut Request<B>, host: &HeaderValue) -> Result<(), RequestError> {
    if req.uri().authority().is_some() || req.uri().scheme().is_some() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .ok_or(RequestError::BadRequest("request target has no path"))?;
        *req.uri_mut() = Uri::from(pq);
    }
    *req.version_mut() = Version::HTTP_11;
    // Usually `host` is the request's own single `Host` header: nothing to change.
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let unchanged = matches!((hosts.next(), hosts.next()), (Some(h), None) if h == host);
    if !host.is_empty() && !unchanged {
        req.headers_mut().insert(header::HOST, host.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_authority_first() {
        let req = Request::get("http://a.example/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), "a.example");
        let req = Request::get("/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), "b.example");
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(request_host(&req), "");
    }

    #[test]
    fn origin_form_rewrite() {
        let mut req = Request::get("https://a.example/p?q=1")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        to_origin_form(&mut req, &HeaderValue::from_static("a.example")).unwrap();
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "a.example");
    }

    #[test]
    fn the_upstream_gets_exactly_one_host_header_with_the_routed_host() {
        // Already right: left as it is.
        let mut req = Request::get("/p")
            .header("host", "a.example")
            .body(())
            .unwrap();
        to_origin_form(&mut req, &HeaderValue::from_static("a.example")).unwrap();
        assert_eq!(req.headers().get_all("host").iter().count(), 1);
        assert_eq!(req.headers()["host"], "a.example");
        // Two Host headers (a smuggling attempt) become the one usher routed on.
        let mut req = Request::get("/p")
            .header("host", "a.example")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        to_origin_form(&mut req, &HeaderValue::from_static("a.example")).unwrap();
        let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
        assert_eq!(hosts, ["a.example"]);
        // An absolute-form target's authority wins over a different Host header.
        let mut req = Request::get("http://a.example/p")
            .header("host", "b.example")
            .body(())
            .unwrap();
        to_origin_form(&mut req, &HeaderValue::from_static("a.example")).unwrap();
        assert_eq!(req.headers()["host"], "a.example");
    }
}
