//! The admin console under `/_usher/admin/` (never forwarded upstream): the gate
//! (signed in + `[admin]` member, else sign-in / 401 / 403), the router to the
//! server-rendered pages (`pages`) and the JSON API (`api`), CSRF and same-origin
//! checks for every POST. Owns no sync or directory logic: it calls `SyncService`,
//! the audit log and the mapping explanation. The `admin_listen` listener
//! (metrics, health) lives in `listener` and `metrics`, never on the public port.

pub mod access;
mod api;
pub mod audit_view;
pub mod csrf;
#[cfg(test)]
mod gate_tests;
pub mod listener;
pub mod lookup;
pub mod metrics;
pub mod page;
mod pages;
pub mod plan_view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::auth::flow::{cookie_header, PageContext};
use crate::config::Settings;
use crate::directory::connect::DirectoryConnect;
use crate::error::page as error_page;
use crate::proxy::Proxy;
use crate::session::Session;
use crate::sync::SyncService;

use self::access::Gate;
use self::csrf::CsrfKey;
use self::page::BASE;

/// Largest POST body the console reads (a form with a token and two flags).
const MAX_BODY: usize = 16 * 1024;

/// The console's long-lived state, built once by `App::build` and handed to the proxy.
pub struct Admin {
    settings: Arc<Settings>,
    sync: Option<Arc<SyncService>>,
    csrf: CsrfKey,
    started: Instant,
    started_at: SystemTime,
    /// Origins a POST may come from besides the addressed host: the public URL's.
    origins: Vec<String>,
    /// The directory consent round trip (`[directory] oauth = true` only).
    pub(crate) connect: Option<DirectoryConnect>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("sync", &self.sync.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The console over these settings and (when a `[directory]` and targets exist)
    /// the sync service; the CSRF key comes from `[session] secret`.
    pub fn new(settings: Arc<Settings>, sync: Option<Arc<SyncService>>) -> Self {
        let origin = settings.server.public_url.origin().ascii_serialization();
        let connect = DirectoryConnect::from_settings(&settings).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the directory consent endpoint is off");
            None
        });
        Admin {
            connect,
            csrf: CsrfKey::from_secret(&settings.session.secret),
            settings,
            sync,
            started: Instant::now(),
            started_at: SystemTime::now(),
            origins: vec![origin],
        }
    }
}

/// Whether `path` (normalized) belongs to the console.
pub fn is_admin_path(path: &str) -> bool {
    path == BASE || path.starts_with("/_usher/admin/")
}

/// Everything a page or API handler needs about one admitted request.
pub(crate) struct Ctx<'a> {
    pub admin: &'a Admin,
    pub proxy: &'a Proxy,
    pub session: Session,
    /// The administrator's e-mail (lower-case).
    pub email: String,
    /// Answer JSON (Accept / X-Requested-With / `format=json`).
    pub json: bool,
    pub query: BTreeMap<String, String>,
    pub request_id: &'a HeaderValue,
    pub csrf_token: String,
}

impl Ctx<'_> {
    /// An error in the form the client asked for.
    pub fn error(&self, status: StatusCode, message: &str) -> Response<Bytes> {
        if self.json {
            page::json_error(status, message, &[])
        } else {
            let mut r = error_page(status, message, false, self.request_id);
            page::secure(&mut r);
            r
        }
    }

    /// The 404 that says why there is no sync service.
    pub fn no_sync(&self) -> Response<Bytes> {
        self.error(
            StatusCode::NOT_FOUND,
            "No sync is configured: a full sync needs a [directory] section and at least one [[target]] in the config.",
        )
    }
}

/// Query pairs, first value wins.
pub(crate) fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

/// Answers a request under `/_usher/admin`. Resolves (and, when due, revalidates)
/// the session itself, so the console works the same on every listener path.
pub async fn handle<B>(
    proxy: &Proxy,
    path: &str,
    req: Request<B>,
    ctx: &PageContext<'_>,
) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(admin) = proxy.admin.get() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "There is nothing at this address.",
            ctx.json,
            ctx.request_id,
        );
    };
    let now = SystemTime::now();
    let cookies = cookie_header(req.headers());
    let mut set_cookies = Vec::new();
    let mut session = proxy.sign_in.sessions.resolve(&cookies, now).await;
    if let Some(s) = session.as_mut() {
        if s.revalidation_due(&proxy.sign_in.sessions.policy, now) {
            match proxy.sign_in.revalidate(s, now).await {
                Some(set) => set_cookies = set,
                None => session = None,
            }
        } else {
            // Console use is activity too (idle timeout), as on proxied requests.
            match proxy.sign_in.sessions.touch_if_due(s, now).await {
                Ok(Some(set)) => set_cookies = set,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh the session's activity time")
                }
            }
        }
    }
    let query = query_map(req.uri().query());
    let json = ctx.json || query.get("format").is_some_and(|f| f == "json");
    let email = match access::gate(session.as_ref()) {
        Gate::SignIn => {
            return crate::proxy::signed_out(
                req.method(),
                req.headers(),
                json,
                req.uri(),
                ctx.request_id,
            );
        }
        Gate::Forbidden => {
            tracing::warn!(
                user = session.as_ref().map_or("-", |s| s.username.as_str()),
                path,
                "admin console refused: not in [admin] users or groups"
            );
            let mut r = error_page(
                StatusCode::FORBIDDEN,
                "The admin console is for usher administrators ([admin] users or groups). Ask one to add you.",
                json,
                ctx.request_id,
            );
            page::secure(&mut r);
            return r;
        }
        Gate::Admin(email) => email,
    };
    let Some(session) = session else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first.",
            json,
            ctx.request_id,
        );
    };
    let cx = Ctx {
        admin,
        proxy,
        csrf_token: admin.csrf.token(&session.id),
        session,
        email,
        json,
        query,
        request_id: ctx.request_id,
    };
    let mut resp = route(&cx, path, req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cx.csrf_token) {
        h.insert(csrf::HEADER, v);
    }
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn route<B>(cx: &Ctx<'_>, path: &str, req: Request<B>) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let sub = path.strip_prefix(BASE).unwrap_or("");
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match (sub, get) {
        ("" | "/", true) => pages::status(cx).await,
        ("/plan", true) => pages::plan(cx).await,
        ("/audit", true) if cx.json => api::audit(cx),
        ("/audit", true) => pages::audit(cx),
        ("/person", true) if cx.json => api::person(cx).await,
        ("/person", true) => pages::person(cx).await,
        ("/sync/last", true) => api::last(cx).await,
        ("/sync", false) if *req.method() == Method::POST => post_sync(cx, req).await,
        ("/connect/google", true) => connect_google(cx, &req).await,
        (s, true) => {
            if let Some(id) = s.strip_prefix("/sync/") {
                api::status(cx, id).await
            } else if let Some(id) = s.strip_prefix("/report/") {
                pages::report(cx, id).await
            } else if let Some(name) = s.strip_prefix("/static/") {
                page::asset(name).unwrap_or_else(|| {
                    cx.error(StatusCode::NOT_FOUND, "There is nothing at this address.")
                })
            } else {
                cx.error(StatusCode::NOT_FOUND, "There is nothing at this address.")
            }
        }
        (_, false) => cx.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "This address does not accept that method.",
        ),
    }
}

/// `POST /_usher/admin/sync`: same-origin and CSRF checks, then start the sync.
async fn post_sync<B>(cx: &Ctx<'_>, req: Request<B>) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    if access::same_origin(req.headers(), &host, &cx.admin.origins).is_err() {
        tracing::warn!(admin = %cx.email, "cross-site POST to the admin console refused");
        return cx.error(
            StatusCode::FORBIDDEN,
            "Cross-site request refused: start syncs from the admin console itself.",
        );
    }
    let header_token = req
        .headers()
        .get(csrf::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let token = form
        .get(csrf::FIELD)
        .cloned()
        .or(header_token)
        .unwrap_or_default();
    if !cx.admin.csrf.verify(&cx.session.id, &token) {
        tracing::warn!(admin = %cx.email, "admin POST without a valid CSRF token refused");
        return cx.error(
            StatusCode::FORBIDDEN,
            "The form has expired or did not come from the admin console (CSRF token missing or wrong). Reload the page and try again.",
        );
    }
    let flag = |k: &str| {
        cx.query
            .get(k)
            .or_else(|| form.get(k))
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"))
    };
    api::start_sync(
        cx,
        flag("dry_run"),
        flag("approve"),
        !form.is_empty() && !cx.json,
    )
    .await
}

/// Reads a small url-encoded body (empty for other content types).
async fn read_form<B>(req: Request<B>) -> Result<BTreeMap<String, String>, Response<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = req.into_parts();
    let bytes = match crate::proxy::body::read_capped(&parts.headers, body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Err(page::json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large or broken.",
                &[],
            ))
        }
    };
    if !is_form {
        return Ok(BTreeMap::new());
    }
    Ok(url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// `GET /_usher/admin/connect/google`: the admin's one-time consent that lets
/// usher read the directory in refresh-token mode (start, and Google's return).
async fn connect_google<B>(cx: &Ctx<'_>, req: &Request<B>) -> Response<Bytes> {
    let Some(flow) = &cx.admin.connect else {
        return cx.error(
            StatusCode::NOT_FOUND,
            "Nothing to connect: the directory is not in refresh-token mode. With [directory] oauth = true an admin connects it here; a service account needs no consent.",
        );
    };
    let idp = cx
        .admin
        .settings
        .directory
        .as_ref()
        .map(|d| d.idp.as_str())
        .unwrap_or_default();
    let rp = cx
        .proxy
        .sign_in
        .relying_parties()
        .iter()
        .find(|rp| rp.name() == idp);
    let endpoint = match rp {
        Some(rp) => rp.authorization_endpoint().await,
        None => {
            return cx.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The directory's [[idp]] has no relying party; check [directory] idp.",
            )
        }
    };
    let endpoint = match endpoint {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "directory consent: the IdP's discovery failed");
            return cx.error(
                StatusCode::BAD_GATEWAY,
                "Google's discovery document could not be loaded; try again in a minute.",
            );
        }
    };
    let cookies = cookie_header(req.headers());
    let mut resp = flow
        .handle(req.uri().query(), &cookies, &endpoint, &cx.email)
        .await;
    page::secure(&mut resp);
    resp
}
