//! The emulator's `POST /token`: the JWT-bearer grant (RS256 signature checked
//! against the seeded service-account public key; `aud`, `iat`/`exp`, `sub` and
//! the delegated scopes checked), the refresh_token grant and the
//! authorization_code grant for the directory consent. Answers in Google's
//! OAuth error shape (`{"error","error_description"}`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Deserialize;

use super::{GoogleDirectoryEmulator, Grant};
use crate::directory::google_auth::{GOOGLE_TOKEN_AUDIENCE, JWT_BEARER};

/// Access tokens live this long (what Google answers).
pub const ACCESS_TOKEN_SECS: u64 = 3599;

/// A refresh token or a consent code and what it grants.
#[derive(Debug, Clone)]
pub(super) struct OAuthGrant {
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    /// Codes only: the redirect URI the code was issued for.
    pub redirect_uri: String,
}

/// A grant plus an optional new refresh token, or the error answer.
type Issued = Result<(Grant, Option<String>), Box<Response<Bytes>>>;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Box<Response<Bytes>> {
    let mut resp = crate::sandbox::http::json(
        status,
        &serde_json::json!({"error": error, "error_description": description}),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    Box::new(resp)
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

impl GoogleDirectoryEmulator {
    pub(super) fn token_endpoint(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(req.body())
                .into_owned()
                .collect();
        let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
        let result: Issued = match grant {
            JWT_BEARER => {
                self.counts.token_jwt.inc();
                self.jwt_bearer(form.get("assertion").map(String::as_str).unwrap_or(""))
            }
            "refresh_token" => {
                self.counts.token_refresh.inc();
                self.refresh_grant(&form)
            }
            "authorization_code" => {
                self.counts.token_code.inc();
                self.code_grant(&form)
            }
            _ => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Invalid grant_type: ",
            )),
        };
        match result {
            Ok((grant, refresh)) => {
                let token = format!("ya29.sandbox-{:032x}", rand::random::<u128>());
                let scope = grant.scopes.join(" ");
                if let Ok(mut access) = self.access.lock() {
                    access.insert(token.clone(), grant);
                }
                let mut body = serde_json::json!({
                    "access_token": token,
                    "expires_in": ACCESS_TOKEN_SECS,
                    "scope": scope,
                    "token_type": "Bearer",
                });
                if let Some(r) = refresh {
                    body["refresh_token"] = serde_json::Value::String(r);
                }
                let mut resp = crate::sandbox::http::json(StatusCode::OK, &body);
                resp.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static(
                        "no-cache, no-store, max-age=0, must-revalidate",
                    ),
                );
                resp
            }
            Err(resp) => *resp,
        }
    }

    fn jwt_bearer(&self, assertion: &str) -> Issued {
        let bad = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
        let parts: Vec<&str> = assertion.split('.').collect();
        let [h, c, s] = parts.as_slice() else {
            return Err(bad("Invalid JWT: not three dot-separated parts."));
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("Invalid JWT header."))?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
            return Err(bad("Invalid JWT: alg must be RS256."));
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("Invalid JWT claim set."))?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad("Invalid JWT Signature."))?;
        let data = self.read();
        let Some(sa) = data
            .service_accounts
            .iter()
            .find(|sa| sa.client_email == claims.iss)
        else {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid grant: account not found",
            ));
        };
        let der = STANDARD.decode(&sa.public_key_der).unwrap_or_default();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            der,
        );
        let signed = &assertion[..h.len() + 1 + c.len()];
        if key.verify(signed.as_bytes(), &sig).is_err() {
            return Err(bad("Invalid JWT Signature."));
        }
        let own = format!("{}/token", self.base_url());
        if claims.aud != GOOGLE_TOKEN_AUDIENCE && claims.aud != own {
            return Err(bad("Invalid JWT: Failed audience check."));
        }
        let now = self.clock.now_unix();
        if claims.exp <= claims.iat
            || claims.exp - claims.iat > 3600
            || claims.iat > now + 300
            || claims.exp + 300 < now
        {
            return Err(bad(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let scopes: Vec<String> = claims.scope.split_whitespace().map(String::from).collect();
        if scopes.is_empty() || scopes.iter().any(|s| !sa.scopes.contains(s)) {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            ));
        }
        if let Some(sub) = &claims.sub {
            if data.user(sub).is_none() {
                return Err(bad("Invalid email or User ID"));
            }
        }
        Ok((
            Grant {
                subject: claims.sub,
                scopes,
                expires_at: now + ACCESS_TOKEN_SECS,
            },
            None,
        ))
    }

    fn client_ok(
        &self,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<String, Box<Response<Bytes>>> {
        let id = form.get("client_id").cloned().unwrap_or_default();
        let secret = form.get("client_secret").cloned().unwrap_or_default();
        let data = self.read();
        match data.oauth_clients.get(&id) {
            Some(s) if *s == secret => Ok(id),
            _ => Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            )),
        }
    }

    fn refresh_grant(&self, form: &std::collections::HashMap<String, String>) -> Issued {
        let client = self.client_ok(form)?;
        let token = form.get("refresh_token").cloned().unwrap_or_default();
        let grant = self
            .refresh
            .lock()
            .ok()
            .and_then(|r| r.get(&token).cloned())
            .filter(|g| g.client_id == client)
            .ok_or_else(|| {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                )
            })?;
        Ok((
            Grant {
                subject: Some(grant.subject),
                scopes: grant.scopes,
                expires_at: self.clock.now_unix() + ACCESS_TOKEN_SECS,
            },
            None,
        ))
    }

    fn code_grant(&self, form: &std::collections::HashMap<String, String>) -> Issued {
        let client = self.client_ok(form)?;
        let code = form.get("code").cloned().unwrap_or_default();
        let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
        // Codes are single use: removed whether or not the rest checks out.
        let grant = self
            .codes
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&code))
            .filter(|g| g.client_id == client && g.redirect_uri == redirect)
            .ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request"))?;
        let refresh = format!("1//sandbox-{:032x}", rand::random::<u128>());
        if let Ok(mut r) = self.refresh.lock() {
            r.insert(refresh.clone(), grant.clone());
        }
        Ok((
            Grant {
                subject: Some(grant.subject),
                scopes: grant.scopes,
                expires_at: self.clock.now_unix() + ACCESS_TOKEN_SECS,
            },
            Some(refresh),
        ))
    }
}
