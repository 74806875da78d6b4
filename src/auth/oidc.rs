//! The OpenID Connect relying party for one `[[idp]]`: discovery (cached), the
//! authorization URL (PKCE S256, state, nonce, `hd` hint), the code exchange and ID
//! token verification (signature with JWKS refresh on an unknown `kid`, iss, aud,
//! nonce, exp), then the sign-in policy (verified email, `hd`/domain, groups). It
//! returns a verified [`Identity`] or an [`AuthError`]; it never provisions, sets
//! cookies or logs tokens.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    JsonWebKeySetUrl, Nonce, PkceCodeChallenge, RedirectUrl, Scope,
};
use serde_json::Value;

pub use super::error::{AuthError, DenialReason};
use super::id_token::{self, Expected, TokenError};
use super::login_state::{random_value, LoginState};
pub use super::policy::{check_allowed_groups, claim_strings, parse_email};
use super::redirect::SafeRedirect;
use crate::config::{IdpKind, IdpSettings};
use crate::session::unix_secs;

/// The path of the OIDC redirect URI under the public URL.
pub const CALLBACK_PATH: &str = "/_usher/callback";
/// Discovery documents are re-fetched after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// At most one JWKS refresh (for an unknown `kid`) per this interval.
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// A person verified by an IdP and allowed by its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `[[idp]] name`.
    pub idp: String,
    /// Stable subject: the key for identity links.
    pub sub: String,
    /// Email, domain lower-cased, exactly one `@`.
    pub email: String,
    /// Always true for an `Identity` returned by [`RelyingParty::complete`].
    pub email_verified: bool,
    /// Google Workspace domain (`hd`), absent for consumer accounts.
    pub hd: Option<String>,
    /// Full name.
    pub name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Groups from the `groups_claim` (kind = "oidc"); empty for Google.
    pub groups: Vec<String>,
    /// The sign-in's access token, kept only with `revoke_on_logout` (to revoke it
    /// at logout); redacted in `Debug`.
    pub access_token: Option<crate::config::Secret>,
}

/// The query of a callback request.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    /// Authorization code.
    pub code: Option<String>,
    /// OAuth state.
    pub state: Option<String>,
    /// IdP error code (`access_denied`, ...).
    pub error: Option<String>,
    /// IdP error text.
    pub error_description: Option<String>,
    /// RFC 9207 `iss` (sent by some providers, not by Google); must equal the issuer.
    pub iss: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("has_code", &self.code.is_some())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CallbackParams {
    /// Parses a callback query string (`code=..&state=..` or `error=..`).
    pub fn from_query(query: &str) -> Self {
        let mut p = CallbackParams::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                "iss" => &mut p.iss,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        p
    }
}

/// The HTTP client for IdP calls: no redirects (SSRF), bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("usher/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            AuthError::new(
                DenialReason::Misconfigured,
                format!("cannot build the IdP HTTP client: {e}"),
            )
        })
}

type ProviderClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Provider {
    client: ProviderClient,
    issuer: IssuerUrl,
    token_url: Option<url::Url>,
    jwks_url: JsonWebKeySetUrl,
    jwks: CoreJsonWebKeySet,
    algs: Vec<CoreJwsSigningAlgorithm>,
    fetched: Instant,
}

/// The relying party for one `[[idp]]`.
pub struct RelyingParty {
    settings: IdpSettings,
    redirect_uri: RedirectUrl,
    http: reqwest::Client,
    provider: RwLock<Option<Arc<Provider>>>,
    last_jwks_refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("idp", &self.settings.name)
            .field("issuer", &self.settings.issuer.as_str())
            .finish()
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn misconfigured(detail: impl Into<String>) -> AuthError {
    AuthError::new(DenialReason::Misconfigured, detail)
}

impl RelyingParty {
    /// A relying party for `settings`; the redirect URI is `public_url` + `/_usher/callback`.
    /// Refuses an `http://` issuer unless it is a loopback address.
    pub fn new(
        settings: IdpSettings,
        public_url: &url::Url,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        match settings.issuer.scheme() {
            "https" => {}
            "http" if is_loopback_host(&settings.issuer) => {}
            other => {
                return Err(misconfigured(format!(
                    "[[idp]] {}: issuer scheme `{other}` is not allowed; use https (http only for loopback)",
                    settings.name
                )))
            }
        }
        let redirect = public_url.join(CALLBACK_PATH).map_err(|e| {
            misconfigured(format!(
                "cannot build the redirect URI from server.public_url: {e}"
            ))
        })?;
        Ok(RelyingParty {
            settings,
            redirect_uri: RedirectUrl::from_url(redirect),
            http,
            provider: RwLock::new(None),
            last_jwks_refresh: Mutex::new(None),
        })
    }

    /// The `[[idp]] name`.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The redirect URI registered with the IdP.
    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }

    /// True once discovery has succeeded (for `/_usher/readyz`).
    pub fn is_ready(&self) -> bool {
        self.provider.read().map(|p| p.is_some()).unwrap_or(false)
    }

    fn cached(&self) -> Option<Arc<Provider>> {
        self.provider.read().ok().and_then(|p| p.clone())
    }

    /// Fetches (or re-fetches when stale) the discovery document and JWKS.
    pub async fn discover(&self) -> Result<(), AuthError> {
        self.provider_fresh().await.map(|_| ())
    }

    async fn provider_fresh(&self) -> Result<Arc<Provider>, AuthError> {
        let cached = self.cached();
        if let Some(p) = &cached {
            if p.fetched.elapsed() < DISCOVERY_TTL {
                return Ok(p.clone());
            }
        }
        match self.fetch_provider().await {
            Ok(p) => {
                let p = Arc::new(p);
                if let Ok(mut slot) = self.provider.write() {
                    *slot = Some(p.clone());
                }
                Ok(p)
            }
            Err(e) => match cached {
                Some(old) => {
                    tracing::warn!(idp = %self.settings.name, error = %e, "discovery refresh failed; keeping the cached document");
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_provider(&self) -> Result<Provider, AuthError> {
        let issuer_str = self.settings.issuer.as_str().trim_end_matches('/');
        let issuer = IssuerUrl::new(issuer_str.to_string()).map_err(|e| {
            misconfigured(format!("[[idp]] {}: bad issuer: {e}", self.settings.name))
        })?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                AuthError::new(
                    DenialReason::ProviderUnavailable,
                    format!(
                        "[[idp]] {}: discovery from {issuer_str} failed: {e}",
                        self.settings.name
                    ),
                )
            })?;
        let jwks_url = metadata.jwks_uri().clone();
        let token_url = metadata.token_endpoint().map(|u| u.url().clone());
        let jwks = metadata.jwks().clone();
        let algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| !matches!(a, CoreJwsSigningAlgorithm::None))
            .cloned()
            .collect();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        Ok(Provider {
            client,
            issuer,
            token_url,
            jwks_url,
            jwks,
            algs,
            fetched: Instant::now(),
        })
    }

    /// The provider's authorization endpoint (from discovery): where the admin is
    /// sent for the directory consent, which is plain OAuth on the same client.
    pub async fn authorization_endpoint(&self) -> Result<url::Url, AuthError> {
        let provider = self.provider_fresh().await?;
        Ok(provider.client.auth_uri().url().clone())
    }

    /// Starts a sign-in: the authorization URL to redirect the browser to, and the
    /// login state to keep in the login cookie (see `LoginStates::issue`).
    pub async fn begin(
        &self,
        rd: &SafeRedirect,
        now: SystemTime,
    ) -> Result<(String, LoginState), AuthError> {
        let provider = self.provider_fresh().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_value();
        let nonce = random_value();
        let (s, n) = (state.clone(), nonce.clone());
        let mut req = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(s),
                move || Nonce::new(n),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if self.settings.kind == IdpKind::Google {
            if let [only] = self.settings.allowed_domains.as_slice() {
                // A hint for Google's account chooser only; enforced on the ID token.
                req = req.add_extra_param("hd", only.clone());
            }
        }
        let (url, _, _) = req.url();
        let login = LoginState {
            idp: self.settings.name.clone(),
            state,
            nonce,
            pkce_verifier: verifier.secret().clone(),
            rd: rd.as_str().to_string(),
            created_at: unix_secs(now),
        };
        Ok((url.to_string(), login))
    }

    /// Completes a sign-in from the callback: IdP error, code exchange with the PKCE
    /// verifier, ID token verification at `now` and the sign-in policy.
    pub async fn complete(
        &self,
        login: &LoginState,
        callback: &CallbackParams,
        now: SystemTime,
    ) -> Result<Identity, AuthError> {
        if login.idp != self.settings.name {
            return Err(AuthError::new(
                DenialReason::StateMismatch,
                "login was started for another IdP",
            ));
        }
        if let Some(err) = &callback.error {
            let code: String = err
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(AuthError::new(
                DenialReason::IdpError,
                format!("IdP answered error={code}"),
            ));
        }
        let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(AuthError::new(
                DenialReason::IdpError,
                "callback carries neither code nor error",
            ));
        };
        let provider = self.provider_fresh().await?;
        if let Some(iss) = &callback.iss {
            // RFC 9207 mix-up defence: the response must come from the provider we sent the person to.
            if iss.trim_end_matches('/') != provider.issuer.as_str().trim_end_matches('/') {
                return Err(AuthError::new(
                    DenialReason::IdpError,
                    "callback iss does not match the configured issuer",
                ));
            }
        }
        let (id_token, access_token) = self
            .exchange_code(&provider, code, &login.pkce_verifier)
            .await?;
        let claims = match self.verify_token(&provider, &id_token, &login.nonce, now) {
            Err(TokenError::UnknownKey) => {
                let refreshed = self.refresh_jwks(&provider).await?;
                self.verify_token(&refreshed, &id_token, &login.nonce, now)
            }
            other => other,
        }
        .map_err(|e| match e {
            TokenError::Nonce => AuthError::new(DenialReason::NonceMismatch, e.to_string()),
            other => AuthError::new(DenialReason::InvalidIdToken, other.to_string()),
        })?;
        let mut identity = self.apply_policy(self.identity_from(&claims))?;
        if self.settings.revoke_on_logout {
            identity.access_token = access_token.map(crate::config::Secret::new);
        }
        Ok(identity)
    }

    /// Revokes `token` at the IdP's `revocation_endpoint` (RFC 7009, as Google's
    /// `https://oauth2.googleapis.com/revoke`), authenticating as the client.
    /// Logout calls this with `revoke_on_logout`; a failure is logged, never shown.
    pub async fn revoke(&self, token: &crate::config::Secret) -> Result<(), AuthError> {
        let unavailable =
            |detail: String| AuthError::new(DenialReason::ProviderUnavailable, detail);
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.as_str().trim_end_matches('/')
        );
        let doc: Value = self
            .http
            .get(&discovery)
            .send()
            .await
            .map_err(|e| unavailable(format!("discovery unreachable: {}", e.without_url())))?
            .json()
            .await
            .map_err(|_| unavailable("discovery answered without JSON".into()))?;
        let Some(endpoint) = doc.get("revocation_endpoint").and_then(Value::as_str) else {
            return Err(misconfigured(format!(
                "[[idp]] {}: revoke_on_logout is set but the discovery document has no revocation_endpoint",
                self.settings.name
            )));
        };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(endpoint)
            .basic_auth(
                enc(&self.settings.client_id),
                Some(enc(self.settings.client_secret.expose())),
            )
            .form(&[("token", token.expose())])
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "revocation endpoint unreachable: {}",
                    e.without_url()
                ))
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(unavailable(format!(
                "revocation endpoint answered {}",
                resp.status()
            )))
        }
    }

    /// POSTs the code to the token endpoint (client_secret_basic); returns the ID
    /// token and the access token (if any).
    async fn exchange_code(
        &self,
        provider: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<(String, Option<String>), AuthError> {
        let Some(token_url) = provider.token_url.clone() else {
            return Err(misconfigured(
                "the IdP's discovery document has no token_endpoint",
            ));
        };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let resp = self
            .http
            .post(token_url)
            .basic_auth(
                enc(&self.settings.client_id),
                Some(enc(self.settings.client_secret.expose())),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| {
                AuthError::new(
                    DenialReason::ProviderUnavailable,
                    format!("token endpoint unreachable: {e}"),
                )
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|_| {
            AuthError::new(
                DenialReason::CodeExchangeFailed,
                format!("token endpoint answered {status} without JSON"),
            )
        })?;
        if !status.is_success() {
            let error: String = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let reason = if status.is_server_error() || status.as_u16() == 429 {
                DenialReason::ProviderUnavailable
            } else {
                DenialReason::CodeExchangeFailed
            };
            return Err(AuthError::new(
                reason,
                format!("token endpoint answered {status}: {error}"),
            ));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                AuthError::new(
                    DenialReason::InvalidIdToken,
                    "token response has no id_token",
                )
            })?;
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((id_token, access_token))
    }

    fn verify_token(
        &self,
        provider: &Provider,
        token: &str,
        nonce: &str,
        now: SystemTime,
    ) -> Result<Value, TokenError> {
        let expected = Expected {
            issuer: provider.issuer.as_str(),
            accept_bare_issuer: self.settings.kind == IdpKind::Google,
            client_id: &self.settings.client_id,
            nonce,
            algs: &provider.algs,
        };
        id_token::verify(token, &provider.jwks, &expected, now)
    }

    fn identity_from(&self, claims: &Value) -> Identity {
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let google = self.settings.kind == IdpKind::Google;
        Identity {
            idp: self.settings.name.clone(),
            sub: text("sub").unwrap_or_default(),
            email: text("email").unwrap_or_default(),
            email_verified: id_token::email_verified(claims),
            hd: text("hd").map(|h| h.to_ascii_lowercase()),
            name: text("name"),
            given_name: text("given_name"),
            family_name: text("family_name"),
            groups: if google {
                Vec::new()
            } else {
                claim_strings(claims, &self.settings.groups_claim)
            },
            access_token: None,
        }
    }

    async fn refresh_jwks(&self, provider: &Provider) -> Result<Arc<Provider>, AuthError> {
        let allowed = match self.last_jwks_refresh.lock() {
            Ok(mut last) => {
                let ok = last.is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN_INTERVAL);
                if ok {
                    *last = Some(Instant::now());
                }
                ok
            }
            Err(_) => false,
        };
        if !allowed {
            return Err(AuthError::new(
                DenialReason::InvalidIdToken,
                "ID token signed with an unknown key (JWKS refresh rate-limited)",
            ));
        }
        let jwks = CoreJsonWebKeySet::fetch_async(&provider.jwks_url, &self.http)
            .await
            .map_err(|e| {
                AuthError::new(
                    DenialReason::ProviderUnavailable,
                    format!("JWKS refresh failed: {e}"),
                )
            })?;
        tracing::info!(idp = %self.settings.name, keys = jwks.keys().len(), "refreshed JWKS after an unknown kid");
        let fresh = Arc::new(Provider {
            client: provider.client.clone(),
            issuer: provider.issuer.clone(),
            token_url: provider.token_url.clone(),
            jwks_url: provider.jwks_url.clone(),
            jwks,
            algs: provider.algs.clone(),
            fetched: provider.fetched,
        });
        if let Ok(mut slot) = self.provider.write() {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }

    /// The sign-in policy on verified claims: a strict email, verified, in an
    /// allowed domain (`hd` for Google, email domain otherwise), in an allowed group
    /// (kind = "oidc"; Google groups come from the directory, see [`check_allowed_groups`]).
    pub fn apply_policy(&self, mut id: Identity) -> Result<Identity, AuthError> {
        let (local, domain) = parse_email(&id.email).ok_or_else(|| {
            AuthError::new(
                DenialReason::InvalidEmail,
                "email is missing or not exactly local@domain",
            )
        })?;
        id.email = format!("{local}@{domain}");
        if !id.email_verified {
            return Err(AuthError::new(
                DenialReason::EmailNotVerified,
                "email_verified is not true",
            ));
        }
        let allowed = &self.settings.allowed_domains;
        if !allowed.is_empty() {
            let checked = match self.settings.kind {
                IdpKind::Google => id.hd.clone(),
                IdpKind::Oidc => Some(domain.clone()),
            };
            let ok = checked
                .as_deref()
                .is_some_and(|d| allowed.iter().any(|a| a.eq_ignore_ascii_case(d)));
            if !ok {
                let shown = checked.unwrap_or_else(|| "<no hd claim>".into());
                return Err(AuthError::new(
                    DenialReason::DomainNotAllowed,
                    format!("domain {shown} is not in allowed_domains"),
                ));
            }
        }
        if self.settings.kind == IdpKind::Oidc {
            check_allowed_groups(&id.groups, &self.settings.allowed_groups)?;
        }
        Ok(id)
    }
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
