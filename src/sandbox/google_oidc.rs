//! A Google-shaped OpenID Provider for demo and tests (reference/google.md §1):
//! discovery with Google's endpoint paths, an RS256 JWKS (>= 2 keys, rotation on
//! demand), `/o/oauth2/v2/auth` with a small HTML account chooser plus a
//! non-interactive path (`login_hint=EMAIL&auto=1`), the token endpoint (PKCE,
//! client_secret_basic/post, single-use codes), userinfo and revoke, and a suspend
//! switch per person (a suspended Google account cannot sign in). Loopback only;
//! never part of a production `usher serve`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::faults::{Faults, Injected};
use super::http::{empty, json as json_resp, query_pairs, serve, Handler, Running};
use crate::session::unix_secs;

/// One seeded account.
#[derive(Debug, Clone)]
pub struct SeedPerson {
    /// Primary email.
    pub email: String,
    /// Google's numeric subject id.
    pub sub: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Workspace domain (`hd`); `None` for consumer accounts.
    pub hd: Option<String>,
    /// `email_verified` as Google reports it.
    pub email_verified: bool,
}

impl SeedPerson {
    /// A verified Workspace person whose `hd` is the email's domain.
    pub fn workspace(email: &str, sub: &str, given: &str, family: &str) -> Self {
        SeedPerson {
            email: email.to_string(),
            sub: sub.to_string(),
            given_name: given.to_string(),
            family_name: family.to_string(),
            hd: email.rsplit_once('@').map(|(_, d)| d.to_string()),
            email_verified: true,
        }
    }
}

/// Emulator configuration: one OAuth client and the people who can sign in.
#[derive(Debug, Clone)]
pub struct GoogleOidcConfig {
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: String,
    /// Exact redirect URIs accepted.
    pub redirect_uris: Vec<String>,
    /// Seeded accounts.
    pub people: Vec<SeedPerson>,
}

/// Test knob: changes applied to the next ID tokens (negative tests of the RP).
#[derive(Debug, Clone, Default)]
pub struct TokenTamper {
    /// Replace the `nonce` claim.
    pub nonce: Option<String>,
    /// Replace the `aud` claim.
    pub aud: Option<String>,
    /// Replace the `iss` claim (e.g. the legacy `accounts.google.com` form).
    pub iss: Option<String>,
    /// Shift `iat`/`exp` by this many seconds (negative: already expired).
    pub time_shift_secs: i64,
    /// Extra or overriding claims (e.g. `"email_verified": "true"`).
    pub claims: Map<String, Value>,
    /// Sign with a key that is not in the JWKS.
    pub foreign_key: bool,
}

struct RsaKey {
    kid: String,
    pair: ring::signature::RsaKeyPair,
    n: String,
    e: String,
}

struct PendingCode {
    person: SeedPerson,
    nonce: Option<String>,
    redirect_uri: String,
    challenge: Option<(String, String)>,
    scope: String,
    offline: bool,
    issued: Instant,
}

#[derive(Default)]
struct Mutable {
    keys: Vec<Arc<RsaKey>>,
    codes: HashMap<String, PendingCode>,
    access_tokens: HashMap<String, SeedPerson>,
    refresh_tokens: HashMap<String, SeedPerson>,
    tamper: Option<TokenTamper>,
    token_requests: u32,
    jwks_requests: u32,
    /// Lower-case emails of suspended people.
    suspended: HashSet<String>,
    /// Renamed accounts: lower-case seeded email -> current primary email.
    renamed: HashMap<String, String>,
    /// Tokens revoked through `/revoke` (that were live).
    revocations: u32,
}

/// A running Google OIDC emulator.
pub struct GoogleOidc {
    config: GoogleOidcConfig,
    issuer: OnceLock<String>,
    /// Where consent codes for the Admin SDK scopes come from (the directory
    /// emulator, whose token endpoint redeems them).
    consent: OnceLock<Arc<dyn ConsentIssuer>>,
    state: Mutex<Mutable>,
    /// Injected 429/5xx on the token endpoint.
    pub faults: Faults,
}

/// Issues authorization codes for a plain OAuth consent (no `openid` scope): in
/// Google one authorization server serves sign-in and API consent; in the
/// sandbox the directory emulator redeems the API codes, so it issues them.
pub trait ConsentIssuer: Send + Sync {
    /// A single-use code for `subject` approving `scopes` for `client_id`.
    fn issue_consent_code(
        &self,
        client_id: &str,
        subject: &str,
        scopes: &[&str],
        redirect_uri: &str,
    ) -> String;
}

/// How long an authorization code stays valid.
const CODE_TTL: Duration = Duration::from_secs(300);

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn new_rsa_key() -> Option<RsaKey> {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).ok()?;
    let der = private.to_pkcs8_der().ok()?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).ok()?;
    let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, n.as_bytes());
    let kid = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(RsaKey { kid, pair, n, e })
}

/// RSA key generation is slow in debug builds; emulators in one process share a pool.
fn pooled_keys(count: usize) -> Vec<Arc<RsaKey>> {
    static POOL: OnceLock<Mutex<Vec<Arc<RsaKey>>>> = OnceLock::new();
    let pool = POOL.get_or_init(|| Mutex::new(Vec::new()));
    let Ok(mut pool) = pool.lock() else {
        return Vec::new();
    };
    while pool.len() < count {
        match new_rsa_key() {
            Some(k) => pool.push(Arc::new(k)),
            None => break,
        }
    }
    pool.iter().take(count).cloned().collect()
}

fn html(status: StatusCode, body: String) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn redirect(location: &str) -> Response<Bytes> {
    let mut resp = empty(StatusCode::FOUND);
    if let Ok(v) = http::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Bytes> {
    let mut resp = json_resp(
        status,
        &json!({"error": error, "error_description": description}),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl GoogleOidc {
    /// Starts the emulator on `addr` (use `127.0.0.1:0`). The issuer is its own URL.
    pub async fn start(
        config: GoogleOidcConfig,
        addr: SocketAddr,
    ) -> std::io::Result<(Arc<Self>, Running)> {
        let keys = tokio::task::spawn_blocking(|| pooled_keys(2))
            .await
            .map_err(std::io::Error::other)?;
        if keys.len() < 2 {
            return Err(std::io::Error::other(
                "could not generate RSA keys for the OIDC emulator",
            ));
        }
        let me = Arc::new(GoogleOidc {
            config,
            issuer: OnceLock::new(),
            consent: OnceLock::new(),
            state: Mutex::new(Mutable {
                keys,
                ..Mutable::default()
            }),
            faults: Faults::default(),
        });
        let running = serve(addr, me.handler()).await?;
        let _ = me.issuer.set(running.url());
        Ok((me, running))
    }

    /// The issuer URL (`http://127.0.0.1:PORT`).
    pub fn issuer(&self) -> &str {
        self.issuer.get().map(String::as_str).unwrap_or("")
    }

    /// The seeded people.
    pub fn people(&self) -> &[SeedPerson] {
        &self.config.people
    }

    /// Suspends (or reactivates) a seeded person, as a Workspace admin would; false
    /// if nobody has this email. Like Google, a suspended account cannot sign in
    /// (the authorization page shows an error and never returns to the client), and
    /// suspending revokes the person's pending codes, access and refresh tokens.
    pub fn set_suspended(&self, email: &str, suspended: bool) -> bool {
        let key = email.to_ascii_lowercase();
        if !self
            .config
            .people
            .iter()
            .any(|p| p.email.eq_ignore_ascii_case(&key))
        {
            return false;
        }
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        if suspended {
            let other = |p: &SeedPerson| !p.email.eq_ignore_ascii_case(&key);
            st.codes.retain(|_, c| other(&c.person));
            st.access_tokens.retain(|_, p| other(p));
            st.refresh_tokens.retain(|_, p| other(p));
            st.suspended.insert(key);
        } else {
            st.suspended.remove(&key);
        }
        true
    }

    /// Changes a seeded person's primary email, as a Workspace admin renaming the
    /// account would: the `sub` stays, ID tokens carry the new address, and the old
    /// address still signs in (Google keeps it as an alias). False if nobody has
    /// `email` (seeded or current).
    pub fn rename(&self, email: &str, new_email: &str) -> bool {
        let Some(person) = self.person(email) else {
            return false;
        };
        let Some(seeded) = self
            .config
            .people
            .iter()
            .find(|p| p.sub == person.sub)
            .map(|p| p.email.to_ascii_lowercase())
        else {
            return false;
        };
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        st.renamed.insert(seeded, new_email.to_ascii_lowercase());
        true
    }

    /// The account that signs in with `email` (its primary address or a former
    /// one), carrying its current primary address.
    pub fn person(&self, email: &str) -> Option<SeedPerson> {
        let st = self.state.lock().ok()?;
        self.config.people.iter().find_map(|p| {
            let seeded = p.email.to_ascii_lowercase();
            let current = st.renamed.get(&seeded);
            let matches = seeded.eq_ignore_ascii_case(email)
                || current.is_some_and(|c| c.eq_ignore_ascii_case(email));
            matches.then(|| {
                let mut p = p.clone();
                if let Some(c) = current {
                    p.email = c.clone();
                }
                p
            })
        })
    }

    /// How many live tokens were revoked through `/revoke`.
    pub fn revocations(&self) -> u32 {
        self.state.lock().map_or(0, |st| st.revocations)
    }

    /// Whether the person with this email is suspended.
    pub fn is_suspended(&self, email: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|st| st.suspended.contains(&email.to_ascii_lowercase()))
    }

    /// Rotates the signing key: a new key signs from now on, the oldest is dropped,
    /// so the JWKS always publishes two keys.
    pub fn rotate_keys(&self) -> bool {
        let Some(key) = new_rsa_key() else {
            return false;
        };
        if let Ok(mut st) = self.state.lock() {
            st.keys.insert(0, Arc::new(key));
            st.keys.truncate(2);
            return true;
        }
        false
    }

    /// The kid that signs new ID tokens.
    pub fn signing_kid(&self) -> Option<String> {
        self.state.lock().ok()?.keys.first().map(|k| k.kid.clone())
    }

    /// Sets (or clears) the tamper applied to ID tokens issued from now on.
    pub fn set_tamper(&self, tamper: Option<TokenTamper>) {
        if let Ok(mut st) = self.state.lock() {
            st.tamper = tamper;
        }
    }

    /// How many token-endpoint requests were served (tests of caching/replay).
    pub fn token_requests(&self) -> u32 {
        self.state.lock().map(|s| s.token_requests).unwrap_or(0)
    }

    /// How many JWKS requests were served (tests of JWKS caching and refresh).
    pub fn jwks_requests(&self) -> u32 {
        self.state.lock().map(|s| s.jwks_requests).unwrap_or(0)
    }

    /// The emulator as a sandbox HTTP handler.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |req: Request<Bytes>| {
            let me = me.clone();
            Box::pin(async move { me.route(req) })
        })
    }

    fn route(&self, req: Request<Bytes>) -> Response<Bytes> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/.well-known/openid-configuration") => self.discovery(),
            (&Method::GET, "/oauth2/v3/certs") => self.jwks(),
            (&Method::GET, "/o/oauth2/v2/auth") => self.authorize(&req),
            (&Method::POST, "/token") => match self.faults.take() {
                Some(Injected::RateLimited { .. }) => {
                    oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
                }
                Some(Injected::ServerError) => {
                    oauth_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "try again")
                }
                None => self.token(&req),
            },
            (&Method::GET | &Method::POST, "/v1/userinfo") => self.userinfo(&req),
            (&Method::POST, "/revoke") => self.revoke(&req),
            _ => json_resp(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        }
    }

    fn discovery(&self) -> Response<Bytes> {
        let i = self.issuer();
        json_resp(
            StatusCode::OK,
            &json!({
                "issuer": i,
                "authorization_endpoint": format!("{i}/o/oauth2/v2/auth"),
                "token_endpoint": format!("{i}/token"),
                "userinfo_endpoint": format!("{i}/v1/userinfo"),
                "revocation_endpoint": format!("{i}/revoke"),
                "jwks_uri": format!("{i}/oauth2/v3/certs"),
                "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
            }),
        )
    }

    fn jwks(&self) -> Response<Bytes> {
        let keys: Vec<Value> = self
            .state
            .lock()
            .map(|mut st| {
                st.jwks_requests += 1;
                st.keys
                    .iter()
                    .map(|k| json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": k.kid, "n": k.n, "e": k.e}))
                    .collect()
            })
            .unwrap_or_default();
        let mut resp = json_resp(StatusCode::OK, &json!({ "keys": keys }));
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=21600, must-revalidate, no-transform"),
        );
        resp
    }
}

#[path = "google_oidc_flow.rs"]
mod flow;

#[cfg(test)]
#[path = "google_oidc_tests.rs"]
mod tests;
