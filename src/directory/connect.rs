//! The one-time admin consent that connects the Google directory in refresh-token
//! mode (`[directory] oauth = true`): `GET /_usher/admin/connect/google` sends the
//! signed-in admin to Google's consent screen; Google sends them back to the same
//! path with a code, which is exchanged for the admin's refresh token and stored
//! encrypted under `[state] dir`. Owns the consent round trip only; who counts as
//! an admin is decided by the caller (the admin console) before it calls in here.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::CONNECT_PATH;
use super::google_auth::{consent_url, exchange_code};
use super::token_store::RefreshTokenStore;
use super::DirectoryError;
use crate::config::{DirectoryAuth, Secret, Settings};

/// How long an admin has between leaving for Google and coming back.
const STATE_TTL: Duration = Duration::from_secs(600);

/// Name of the cookie that binds the round trip to the browser that started it.
fn state_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-usher_connect"
    } else {
        "usher_connect"
    }
}

/// What the `code`/`state`/`error` query of the return trip says (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum ConsentReturn {
    /// No `code`, `state` or `error`: the admin is starting the round trip.
    Start,
    /// Google sent a code and the state matches the browser's cookie.
    Code(String),
    /// The round trip failed before any token exchange; the text says why and
    /// what to do.
    Refused(String),
}

/// Reads the query of a request to [`CONNECT_PATH`] against the state cookie the
/// browser sent (pure; the comparison is constant-time).
pub fn read_return(query: Option<&str>, cookie_state: Option<&str>) -> ConsentReturn {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            _ => {}
        }
    }
    if code.is_none() && state.is_none() && error.is_none() {
        return ConsentReturn::Start;
    }
    let state_ok = match (state.as_deref(), cookie_state) {
        (Some(s), Some(c)) if !s.is_empty() => {
            crate::auth::constant_time_eq(s.as_bytes(), c.as_bytes())
        }
        _ => false,
    };
    if !state_ok {
        return ConsentReturn::Refused(format!(
            "this consent answer does not belong to a connection started in this browser \
             (missing or different state, or it is older than {} minutes); start again at {CONNECT_PATH}",
            STATE_TTL.as_secs() / 60
        ));
    }
    if let Some(e) = error {
        let why = if e == "access_denied" {
            "the consent was declined on Google's page".to_string()
        } else {
            format!("Google answered `{}`", printable(&e))
        };
        return ConsentReturn::Refused(format!(
            "{why}; usher stays disconnected. Start again at {CONNECT_PATH} and approve read-only access to users and groups"
        ));
    }
    match code {
        Some(c) if !c.is_empty() => ConsentReturn::Code(c),
        _ => ConsentReturn::Refused(format!(
            "Google came back without a code; start again at {CONNECT_PATH}"
        )),
    }
}

/// Keeps only printable ASCII of a value echoed from a query (bounded).
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect()
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The connect flow for one usher: built only in refresh-token mode.
pub struct DirectoryConnect {
    client_id: String,
    client_secret: Secret,
    token_url: url::Url,
    redirect_uri: String,
    store: RefreshTokenStore,
    http: reqwest::Client,
    https: bool,
}

impl std::fmt::Debug for DirectoryConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConnect")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Why the connect flow could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("directory connect: {0}")]
pub struct ConnectSetupError(String);

impl DirectoryConnect {
    /// The flow for `settings`, or `None` when the directory does not use the
    /// refresh-token mode (a service account needs no consent).
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConnectSetupError> {
        let Some(d) = &settings.directory else {
            return Ok(None);
        };
        if !matches!(d.auth, DirectoryAuth::OAuth) {
            return Ok(None);
        }
        let idp = settings
            .idps
            .iter()
            .find(|i| i.name == d.idp)
            .ok_or_else(|| {
                ConnectSetupError(format!("[directory] idp {:?} is not an [[idp]]", d.idp))
            })?;
        let redirect = settings.server.public_url.join(CONNECT_PATH).map_err(|e| {
            ConnectSetupError(format!("cannot build the consent redirect URI: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| ConnectSetupError(format!("HTTP client: {e}")))?;
        Ok(Some(DirectoryConnect {
            client_id: idp.client_id.clone(),
            client_secret: idp.client_secret.clone(),
            token_url: d.token_url.clone(),
            redirect_uri: redirect.to_string(),
            store: RefreshTokenStore::new(
                &settings.state.dir,
                &settings.session.secret,
                &settings.session.previous_secrets,
            ),
            http,
            https: settings.server.public_url.scheme() == "https",
        }))
    }

    /// The redirect URI to register with the OAuth client (next to `/_usher/callback`).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Whether a refresh token is stored (for the status page).
    pub fn is_connected(&self) -> bool {
        matches!(self.store.load(), Ok(Some(_)))
    }

    /// Answers a request to [`CONNECT_PATH`] from an admin (already authorized by
    /// the caller). `authorization_endpoint` is the directory IdP's (from its
    /// discovery document); `admin_email` is offered to Google as the login hint.
    pub async fn handle(
        &self,
        query: Option<&str>,
        cookie_header: &str,
        authorization_endpoint: &url::Url,
        admin_email: &str,
    ) -> Response<Bytes> {
        let name = state_cookie_name(self.https);
        match read_return(query, cookie_value(cookie_header, name)) {
            ConsentReturn::Start => self.start(authorization_endpoint, admin_email),
            ConsentReturn::Refused(why) => {
                tracing::warn!(admin = admin_email, reason = %why, "directory consent refused");
                self.page(StatusCode::BAD_REQUEST, "Not connected", &why)
            }
            ConsentReturn::Code(code) => match self.finish(&code).await {
                Ok(()) => {
                    tracing::info!(admin = admin_email, "Google directory connected");
                    self.page(
                        StatusCode::OK,
                        "Google directory connected",
                        "usher stored the consent (encrypted under [state] dir) and reads users and \
                         groups with it from now on. The next sync or sign-in uses it.",
                    )
                }
                Err(e) => {
                    tracing::warn!(admin = admin_email, error = %e, "directory consent could not be completed");
                    self.page(StatusCode::BAD_GATEWAY, "Not connected", &e.to_string())
                }
            },
        }
    }

    fn start(&self, authorization_endpoint: &url::Url, admin_email: &str) -> Response<Bytes> {
        let mut raw = [0u8; 32];
        if SystemRandom::new().fill(&mut raw).is_err() {
            return self.page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not connected",
                "the system random generator failed; try again",
            );
        }
        let state = URL_SAFE_NO_PAD.encode(raw);
        let mut url = consent_url(
            authorization_endpoint,
            &self.client_id,
            &self.redirect_uri,
            &state,
        );
        if !admin_email.is_empty() {
            url.query_pairs_mut().append_pair("login_hint", admin_email);
        }
        let secure = if self.https { "; Secure" } else { "" };
        let cookie = format!(
            "{}={state}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            state_cookie_name(self.https),
            STATE_TTL.as_secs()
        );
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::FOUND;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(url.as_str()) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    async fn finish(&self, code: &str) -> Result<(), DirectoryError> {
        let refresh = exchange_code(
            &self.http,
            &self.token_url,
            &self.client_id,
            &self.client_secret,
            code,
            &self.redirect_uri,
        )
        .await?;
        self.store.save(&refresh)
    }

    fn page(&self, status: StatusCode, title: &str, text: &str) -> Response<Bytes> {
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body><h1>{t}</h1><p>{x}</p><p><a href=\"/_usher/admin/\">Back to the admin console</a></p></body></html>",
            t = crate::error::html_escape(title),
            x = crate::error::html_escape(text)
        );
        let mut resp = crate::error::html_response(status, body);
        let h = resp.headers_mut();
        // The round trip is over either way: the state is single-use.
        let expire = format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            state_cookie_name(self.https),
            if self.https { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&expire) {
            h.insert(header::SET_COOKIE, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parameters_start_the_round_trip() {
        assert_eq!(read_return(None, None), ConsentReturn::Start);
        assert_eq!(read_return(Some("x=1"), Some("abc")), ConsentReturn::Start);
    }

    #[test]
    fn a_code_with_the_browsers_state_is_accepted() {
        assert_eq!(
            read_return(Some("code=4%2Fabc&state=s1&scope=x"), Some("s1")),
            ConsentReturn::Code("4/abc".into())
        );
    }

    #[test]
    fn state_must_match_the_cookie() {
        for (q, c) in [
            ("code=c&state=s1", Some("s2")),
            ("code=c&state=s1", None),
            ("code=c", Some("s1")),
            ("code=c&state=", Some("")),
            ("code=c&state=s1x", Some("s1")),
        ] {
            match read_return(Some(q), c) {
                ConsentReturn::Refused(why) => {
                    assert!(why.contains("start again"), "{why}")
                }
                other => panic!("{q} {c:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn google_errors_are_reported_without_echoing_markup() {
        match read_return(Some("error=access_denied&state=s"), Some("s")) {
            ConsentReturn::Refused(why) => assert!(why.contains("declined"), "{why}"),
            other => panic!("{other:?}"),
        }
        match read_return(Some("error=%3Cscript%3E&state=s"), Some("s")) {
            ConsentReturn::Refused(why) => {
                assert!(why.contains("`script`"), "{why}");
                assert!(!why.contains('<'), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_code_is_refused() {
        assert!(matches!(
            read_return(Some("code=&state=s"), Some("s")),
            ConsentReturn::Refused(_)
        ));
    }

    #[test]
    fn cookie_values_are_found_by_exact_name() {
        let h = "a=1; usher_connect=s1; __Host-usher_connect=s2";
        assert_eq!(cookie_value(h, "usher_connect"), Some("s1"));
        assert_eq!(cookie_value(h, "__Host-usher_connect"), Some("s2"));
        assert_eq!(cookie_value(h, "connect"), None);
    }
}
