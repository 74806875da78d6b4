//! The sign-in endpoints under `/_usher/`: `login` (start, or pick an IdP),
//! `callback` (verify, admit, issue the session), `logout` (end the session and
//! clear every cookie of ours) and `jwks.json`. Owns the order of the login path;
//! the decisions live in `oidc`, `login_state`, `redirect` and the [`Admission`]
//! hook (login-time provisioning plugs in there). Never forwards anything.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::assertion::AssertionSigner;
use super::error::{AuthError, DenialReason};
use super::login_state::LoginStates;
use super::oidc::{http_client, CallbackParams, Identity, RelyingParty};
use super::policy::check_allowed_groups;
use super::redirect::{validate_redirect, SafeRedirect};
use crate::admin::metrics;
use crate::config::Settings;
use crate::error::{html_escape, page};
use crate::provision::mapping::Mapper;
use crate::session::{Session, Sessions, StoreError, UsherCookieNames};

/// Path of the login endpoint (also the target of the 302 for signed-out browsers).
pub const LOGIN_PATH: &str = "/_usher/login";

/// What an admitted person becomes: the account name the upstream sees and the
/// groups sent in the identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Atlassian username.
    pub username: String,
    /// Groups for the identity headers (target group names).
    pub groups: Vec<String>,
    /// Display name.
    pub display_name: String,
    /// The person's IdP groups (directory group e-mails and names, or the groups
    /// claim), used to decide `[admin] groups` membership at sign-in.
    pub idp_groups: Vec<String>,
}

/// A boxed future returned by [`Admission::admit`].
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Result<Admitted, AuthError>> + Send + 'a>>;

/// A boxed future returned by [`Admission::revalidate`].
pub type RevalidateFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// The answer of [`Admission::revalidate`]: keep or end the session, and, when the
/// source was asked, the person's IdP groups now (so admin access is re-decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the session may go on.
    pub keep: bool,
    /// The IdP groups as read just now; `None` when the source was not asked
    /// (cached verdict, claims-only provider): admin access then stays as it was.
    pub idp_groups: Option<Vec<String>>,
}

impl From<bool> for Verdict {
    fn from(keep: bool) -> Self {
        Verdict {
            keep,
            idp_groups: None,
        }
    }
}

/// The step between "the IdP vouched for this person" and "issue a session": the
/// place where login-time provisioning runs. Denials are [`AuthError`]s.
pub trait Admission: Send + Sync {
    /// Decides (and, for provisioning implementations, prepares) the account.
    fn admit<'a>(&'a self, identity: &'a Identity, now: SystemTime) -> AdmitFuture<'a>;

    /// Every `revalidate_after`: may this session's person still be signed in? A
    /// suspended or no-longer-allowed person loses the session at that request.
    /// Sources that cannot be asked between sign-ins keep the session.
    fn revalidate<'a>(&'a self, _session: &'a Session) -> RevalidateFuture<'a> {
        Box::pin(async { Verdict::from(true) })
    }
}

/// Admission from the ID token alone: the username from the `[provisioning]`
/// username rule (or the IdP's override), groups from the claim, `allowed_groups`
/// enforced. Used when no directory/targets provision at login.
pub struct ClaimsAdmission {
    idps: BTreeMap<String, (Mapper, Vec<String>)>,
}

impl ClaimsAdmission {
    /// Compiles one mapper per `[[idp]]`.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let mut idps = BTreeMap::new();
        for idp in &settings.idps {
            let mapper = Mapper::for_idp(idp, &settings.provisioning, &settings.groups)
                .map_err(|e| format!("[[idp]] {}: {e}", idp.name))?;
            idps.insert(idp.name.clone(), (mapper, idp.allowed_groups.clone()));
        }
        Ok(ClaimsAdmission { idps })
    }
}

impl Admission for ClaimsAdmission {
    fn admit<'a>(&'a self, identity: &'a Identity, _now: SystemTime) -> AdmitFuture<'a> {
        Box::pin(async move {
            let (mapper, allowed) = self.idps.get(&identity.idp).ok_or_else(|| {
                AuthError::new(DenialReason::Misconfigured, "identity from an unknown idp")
            })?;
            // Google identities carry no groups claim: with allowed_groups set and no
            // directory to ask, this fails closed.
            check_allowed_groups(&identity.groups, allowed)?;
            let username = mapper
                .username_for(&identity.email)
                .map_err(|why| AuthError::new(DenialReason::InvalidUsername, why))?;
            Ok(Admitted {
                username,
                groups: identity.groups.clone(),
                display_name: display_name(identity),
                idp_groups: identity.groups.clone(),
            })
        })
    }
}

fn display_name(identity: &Identity) -> String {
    if let Some(n) = identity.name.as_deref().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    match (&identity.given_name, &identity.family_name) {
        (Some(g), Some(f)) => format!("{g} {f}"),
        (Some(g), None) => g.clone(),
        (None, Some(f)) => f.clone(),
        (None, None) => identity.email.clone(),
    }
}

/// Why the sign-in machinery could not be built (bad keys, store unreachable).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// An `[[idp]]` cannot be used.
    #[error("{0}")]
    Idp(String),
    /// The session store could not be reached or set up.
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    /// The login-state cookie codec refused the keys.
    #[error("session keys: {0}")]
    Keys(String),
    /// The assertion signing key could not be loaded or created.
    #[error("assertion key: {0}")]
    Assertion(String),
    /// The admission rules could not be compiled.
    #[error("{0}")]
    Admission(String),
}

/// Everything the sign-in endpoints and the per-request session check need.
pub struct SignIn {
    rps: Vec<Arc<RelyingParty>>,
    login_states: LoginStates,
    /// Session codec, store and policy (used on every proxied request).
    pub sessions: Sessions,
    /// The key that signs identity assertions; its JWKS is served publicly.
    pub signer: Arc<AssertionSigner>,
    cookie_names: UsherCookieNames,
    redirect_hosts: Vec<String>,
    admission: Arc<dyn Admission>,
    admins: crate::config::AdminSettings,
}

impl SignIn {
    /// Builds the relying parties, cookie codecs, session store and signer. No
    /// network I/O except connecting to Redis for `store = "redis"`; discovery
    /// happens at the first sign-in (and for readiness).
    pub async fn build(settings: &Settings) -> Result<SignIn, SignInError> {
        let secure = settings.server.public_url.scheme() == "https";
        let http = http_client().map_err(|e| SignInError::Idp(e.to_string()))?;
        let rps = settings
            .idps
            .iter()
            .map(|idp| {
                RelyingParty::new(idp.clone(), &settings.server.public_url, http.clone())
                    .map(Arc::new)
                    .map_err(|e| SignInError::Idp(e.detail))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = &settings.session;
        let login_states = LoginStates::new(&s.cookie_name, &s.secret, &s.previous_secrets, secure)
            .map_err(|e| SignInError::Keys(e.to_string()))?;
        let sessions = Sessions::from_settings(s, secure).await?;
        let cookie_names = sessions.cookie_names(&login_states.prefix());
        let issuer = settings.server.public_url.as_str().trim_end_matches('/');
        let signer = AssertionSigner::load_or_create(issuer, &settings.state.dir)
            .map_err(|e| SignInError::Assertion(e.to_string()))?;
        let mut redirect_hosts: Vec<String> =
            settings.upstreams.iter().map(|u| u.host.clone()).collect();
        if let Some(h) = settings.server.public_url.host_str() {
            let host = match settings.server.public_url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            redirect_hosts.push(host);
        }
        let admission = ClaimsAdmission::new(settings).map_err(SignInError::Admission)?;
        Ok(SignIn {
            rps,
            login_states,
            sessions,
            signer: Arc::new(signer),
            cookie_names,
            redirect_hosts,
            admission: Arc::new(admission),
            admins: settings.admin.clone(),
        })
    }

    /// Replaces the admission step (login-time provisioning installs itself here).
    pub fn set_admission(&mut self, admission: Arc<dyn Admission>) {
        self.admission = admission;
    }

    /// Re-checks a session whose `revalidate_after` has passed. `Some(cookies)` keeps
    /// it (with the `Set-Cookie` values carrying the new check time); `None` ends it
    /// (revoked in the store; the caller treats the request as signed out).
    pub async fn revalidate(&self, session: &mut Session, now: SystemTime) -> Option<Vec<String>> {
        let verdict = self.admission.revalidate(session).await;
        if !verdict.keep {
            metrics::session_ended(metrics::SessionEndReason::Revoked);
            let _ = self.sessions.store.revoke(&session.id).await;
            return None;
        }
        if let Some(groups) = &verdict.idp_groups {
            session.admin = crate::admin::access::is_admin(&self.admins, &session.email, groups);
        }
        session.revalidated_at = crate::session::unix_secs(now);
        match self.sessions.issue(session, now).await {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::warn!(error = %e, "could not save the revalidated session; keeping it");
                Some(Vec::new())
            }
        }
    }

    /// Names of usher's own cookies, stripped before forwarding.
    pub fn cookie_names(&self) -> &UsherCookieNames {
        &self.cookie_names
    }

    /// The relying parties, in config order.
    pub fn relying_parties(&self) -> &[Arc<RelyingParty>] {
        &self.rps
    }

    /// True when every IdP's discovery document is loaded (tries to load it).
    pub async fn ready(&self) -> bool {
        let mut ok = true;
        for rp in &self.rps {
            if !rp.is_ready() && rp.discover().await.is_err() {
                tracing::warn!(idp = rp.name(), "identity provider discovery is not loaded");
                ok = false;
            }
        }
        ok
    }

    /// Answers a sign-in endpoint, or `None` when `path` is not one.
    pub async fn endpoint(
        &self,
        path: &str,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        ctx: &PageContext<'_>,
    ) -> Option<Response<Bytes>> {
        let cookies = cookie_header(headers);
        let now = SystemTime::now();
        let resp = match (path, method) {
            ("/_usher/login", &Method::GET | &Method::HEAD) => {
                self.login(query.unwrap_or(""), &cookies, now, ctx).await
            }
            ("/_usher/callback", &Method::GET) => {
                self.callback(query.unwrap_or(""), &cookies, now, ctx).await
            }
            ("/_usher/logout", &Method::GET | &Method::POST) => {
                self.logout(query.unwrap_or(""), &cookies, ctx).await
            }
            ("/_usher/jwks.json", &Method::GET | &Method::HEAD) => {
                let mut r =
                    Response::new(Bytes::copy_from_slice(self.signer.jwks_json().as_bytes()));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                r
            }
            _ => return None,
        };
        Some(resp)
    }

    fn safe_rd(&self, raw: Option<&str>) -> SafeRedirect {
        raw.and_then(|r| validate_redirect(r, &self.redirect_hosts).ok())
            .unwrap_or_else(SafeRedirect::root)
    }

    async fn login(
        &self,
        query: &str,
        cookies: &str,
        now: SystemTime,
        ctx: &PageContext<'_>,
    ) -> Response<Bytes> {
        let params = query_map(query);
        let rd = self.safe_rd(params.get("rd").map(String::as_str));
        let rp = match params.get("idp") {
            Some(name) => match self.rps.iter().find(|rp| rp.name() == name) {
                Some(rp) => rp,
                None => return self.picker(&rd, ctx),
            },
            None if self.rps.len() == 1 => &self.rps[0],
            None => return self.picker(&rd, ctx),
        };
        let (auth_url, login) = match rp.begin(&rd, now).await {
            Ok(pair) => pair,
            Err(e) => return self.denied(&e, ctx, Vec::new()),
        };
        let set = match self.login_states.issue(&login, cookies, now) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(error = %e, "could not encode the login state cookie");
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in could not start. Please try again.",
                    ctx.json,
                    ctx.request_id,
                );
            }
        };
        redirect(&auth_url, set)
    }

    async fn callback(
        &self,
        query: &str,
        cookies: &str,
        now: SystemTime,
        ctx: &PageContext<'_>,
    ) -> Response<Bytes> {
        let params = CallbackParams::from_query(query);
        let Some(state) = params.state.as_deref() else {
            let e = AuthError::new(DenialReason::StateMismatch, "callback without state");
            return self.denied(&e, ctx, Vec::new());
        };
        let (login, mut set) = match self.login_states.take(cookies, state, now) {
            Ok(pair) => pair,
            Err(e) => return self.denied(&e, ctx, Vec::new()),
        };
        let Some(rp) = self.rps.iter().find(|rp| rp.name() == login.idp) else {
            let e = AuthError::new(DenialReason::StateMismatch, "login names an unknown idp");
            return self.denied(&e, ctx, set);
        };
        let identity = match rp.complete(&login, &params, now).await {
            Ok(id) => id,
            Err(e) => return self.denied_at(rp.name(), &e, ctx, set),
        };
        let admitting = std::time::Instant::now();
        let admission = self.admission.admit(&identity, now).await;
        metrics::login_admission(&identity.idp, admitting.elapsed());
        let admitted = match admission {
            Ok(a) => a,
            Err(e) => return self.denied_at(&identity.idp, &e, ctx, set),
        };
        let mut session = Session::new(
            &identity.idp,
            &identity.sub,
            &identity.email,
            &admitted.username,
            now,
        );
        session.groups = admitted.groups;
        session.display_name = admitted.display_name;
        session.admin =
            crate::admin::access::is_admin(&self.admins, &identity.email, &admitted.idp_groups);
        session.revoke_token = identity
            .access_token
            .as_ref()
            .map(crate::session::HeldToken::new);
        match self.sessions.issue(&session, now).await {
            Ok(cookies) => set.extend(cookies),
            Err(e) => {
                tracing::error!(error = %e, "could not save the session");
                let e = AuthError::new(DenialReason::ProvisioningFailed, "session store failed");
                return self.denied_at(&identity.idp, &e, ctx, set);
            }
        }
        metrics::login_succeeded(&identity.idp);
        tracing::info!(
            idp = %identity.idp,
            user = %session.username,
            "signed in"
        );
        redirect(login.redirect().as_str(), set)
    }

    async fn logout(&self, query: &str, cookies: &str, ctx: &PageContext<'_>) -> Response<Bytes> {
        let params = query_map(query);
        self.revoke_at_idp(cookies).await;
        let mut set = self.sessions.end(cookies).await;
        set.extend(self.login_states.clear_all(cookies));
        match params
            .get("rd")
            .map(|r| validate_redirect(r, &self.redirect_hosts))
        {
            Some(Ok(rd)) => redirect(rd.as_str(), set),
            _ => {
                let mut resp = page(
                    StatusCode::OK,
                    "You are signed out.",
                    ctx.json,
                    ctx.request_id,
                );
                append_cookies(resp.headers_mut(), set);
                resp
            }
        }
    }

    /// With `revoke_on_logout`: revokes the session's access token at its IdP,
    /// waiting at most 3 s; the logout goes on whatever the IdP answers.
    async fn revoke_at_idp(&self, cookies: &str) {
        let Some(session) = self.sessions.resolve(cookies, SystemTime::now()).await else {
            return;
        };
        let (Some(token), Some(rp)) = (
            session.revoke_token.as_ref(),
            self.rps.iter().find(|rp| rp.name() == session.idp),
        ) else {
            return;
        };
        let revoked =
            tokio::time::timeout(Duration::from_secs(3), rp.revoke(&token.secret())).await;
        match revoked {
            Ok(Ok(())) => {
                tracing::info!(idp = %session.idp, user = %session.username, "access token revoked at logout")
            }
            Ok(Err(e)) => {
                tracing::warn!(idp = %session.idp, error = %e, "access token not revoked at logout")
            }
            Err(_) => {
                tracing::warn!(idp = %session.idp, "access token not revoked at logout: the IdP took longer than 3 s")
            }
        }
    }

    fn picker(&self, rd: &SafeRedirect, ctx: &PageContext<'_>) -> Response<Bytes> {
        let rd_q: String = url::form_urlencoded::byte_serialize(rd.as_str().as_bytes()).collect();
        let mut items = String::new();
        for rp in &self.rps {
            let name_q: String =
                url::form_urlencoded::byte_serialize(rp.name().as_bytes()).collect();
            items.push_str(&format!(
                "<li><a href=\"{LOGIN_PATH}?idp={name_q}&amp;rd={rd_q}\">Sign in with {}</a></li>",
                html_escape(rp.name())
            ));
        }
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title>\
             <style>body{{font:16px system-ui,sans-serif;max-width:30em;margin:4em auto}}\
             li{{margin:.6em 0}}</style></head><body><h1>Sign in</h1><ul>{items}</ul>\
             <p><small>Request id: {}</small></p></body></html>\n",
            html_escape(ctx.request_id.to_str().unwrap_or(""))
        );
        crate::error::html_response(StatusCode::OK, body)
    }

    /// A denial of a sign-in that reached identity provider `idp` (counted per IdP).
    fn denied_at(
        &self,
        idp: &str,
        e: &AuthError,
        ctx: &PageContext<'_>,
        set: Vec<String>,
    ) -> Response<Bytes> {
        metrics::login_denied(Some(idp), e.reason);
        self.page_for_denial(e, ctx, set)
    }

    /// The denial page: the reason in plain words, details only in the log.
    fn denied(&self, e: &AuthError, ctx: &PageContext<'_>, set: Vec<String>) -> Response<Bytes> {
        metrics::login_denied(None, e.reason);
        self.page_for_denial(e, ctx, set)
    }

    fn page_for_denial(
        &self,
        e: &AuthError,
        ctx: &PageContext<'_>,
        set: Vec<String>,
    ) -> Response<Bytes> {
        tracing::warn!(
            reason = e.reason.code(),
            detail = %e.detail,
            request_id = ctx.request_id.to_str().unwrap_or("-"),
            "sign-in refused"
        );
        let status = match e.reason {
            r if r.is_forbidden() => StatusCode::FORBIDDEN,
            DenialReason::ProviderUnavailable => StatusCode::BAD_GATEWAY,
            DenialReason::ProvisioningFailed => StatusCode::SERVICE_UNAVAILABLE,
            DenialReason::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = page(status, e.reason.message(), ctx.json, ctx.request_id);
        resp.headers_mut()
            .insert("x-usher-denial", HeaderValue::from_static(e.reason.code()));
        append_cookies(resp.headers_mut(), set);
        resp
    }
}

/// Request facts the pages need.
pub struct PageContext<'a> {
    /// Answer JSON instead of HTML.
    pub json: bool,
    /// Shown on pages and logged.
    pub request_id: &'a HeaderValue,
}

/// All `Cookie` header lines joined (HTTP/2 may split them).
pub fn cookie_header(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for v in headers.get_all(header::COOKIE) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        // Read for usher's own (ASCII) cookies only: another site's cookie that
        // is not UTF-8 becomes U+FFFD here instead of hiding them.
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    out
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

fn append_cookies(headers: &mut HeaderMap, set: Vec<String>) {
    for c in set {
        if let Ok(v) = HeaderValue::from_str(&c) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// A 302 with `Set-Cookie`s; never cached.
fn redirect(location: &str, set: Vec<String>) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => {
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    append_cookies(h, set);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_that_is_not_utf8_does_not_hide_usher_s() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"city=Z\xfcrich; _usher_login_k=1.a").unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("_usher=1.b"));
        let joined = cookie_header(&h);
        assert_eq!(joined, "city=Z\u{fffd}rich; _usher_login_k=1.a; _usher=1.b");
        assert_eq!(
            crate::session::cookie::find_cookie(&joined, "_usher_login_k"),
            Some("1.a")
        );
        assert_eq!(
            crate::session::cookie::find_cookie(&joined, "_usher"),
            Some("1.b")
        );
    }
}
