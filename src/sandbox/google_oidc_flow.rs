//! The Google OIDC emulator's interactive endpoints: authorization (HTML chooser and
//! `auto=1`), token (authorization_code with PKCE, refresh_token), userinfo, revoke,
//! and RS256 ID token minting. Part of the sandbox; never used in production.

use super::*;

fn form_pairs(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = match url::Url::parse(base) {
        Ok(u) => u,
        Err(_) => return base.to_string(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Scopes a consent-only request may ask for (the Admin SDK's).
const API_SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/admin.directory.";

impl GoogleOidc {
    /// Lets consent requests for the Admin SDK scopes through, with codes from
    /// `issuer` (the sandbox wires the directory emulator in).
    pub fn attach_consent(&self, issuer: Arc<dyn ConsentIssuer>) {
        let _ = self.consent.set(issuer);
    }

    pub(super) fn authorize(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let q: HashMap<String, String> = query_pairs(req).into_iter().collect();
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        if get("client_id") != self.config.client_id {
            return html(
                StatusCode::BAD_REQUEST,
                "<h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p>".into(),
            );
        }
        let redirect_uri = get("redirect_uri");
        if !self.config.redirect_uris.iter().any(|r| r == redirect_uri) {
            return html(
                StatusCode::BAD_REQUEST,
                "<h1>Error 400: redirect_uri_mismatch</h1>".into(),
            );
        }
        let state = get("state");
        let fail = |error: &str| {
            let mut pairs = vec![("error", error)];
            if !state.is_empty() {
                pairs.push(("state", state));
            }
            redirect(&with_query(redirect_uri, &pairs))
        };
        if get("response_type") != "code" {
            return fail("unsupported_response_type");
        }
        let scopes: Vec<&str> = get("scope").split(' ').filter(|s| !s.is_empty()).collect();
        let consent = !scopes.contains(&"openid");
        if consent && (scopes.is_empty() || !scopes.iter().all(|s| s.starts_with(API_SCOPE_PREFIX)))
        {
            return fail("invalid_scope");
        }
        let method = get("code_challenge_method");
        let challenge = get("code_challenge");
        if !challenge.is_empty() && !matches!(method, "S256" | "plain" | "") {
            return fail("invalid_request");
        }
        if get("deny") == "1" {
            return fail("access_denied");
        }
        let hint = get("login_hint");
        if get("auto") != "1" {
            return self.chooser(req, hint);
        }
        let Some(person) = self.person(hint) else {
            return fail("access_denied");
        };
        if self.is_suspended(&person.email) || self.is_suspended(hint) {
            // Google stops on its own page; the client never hears back.
            return html(
                StatusCode::FORBIDDEN,
                format!(
                    "<!doctype html><html><head><title>Account suspended</title></head><body>\
                     <h1>Account suspended</h1><p>{} has been suspended by the administrator \
                     of this Google Workspace account.</p></body></html>",
                    escape(&person.email)
                ),
            );
        }
        if consent {
            // Plain OAuth for the Admin SDK: no ID token, the code is redeemed at
            // the directory emulator's token endpoint.
            let Some(issuer) = self.consent.get() else {
                return fail("invalid_scope");
            };
            let code = issuer.issue_consent_code(
                &self.config.client_id,
                &person.email,
                &scopes,
                redirect_uri,
            );
            let scope = scopes.join(" ");
            let mut pairs = vec![("code", code.as_str()), ("scope", scope.as_str())];
            if !state.is_empty() {
                pairs.push(("state", state));
            }
            return redirect(&with_query(redirect_uri, &pairs));
        }
        let code = format!("4/0A{}", random_token(24));
        let pending = PendingCode {
            person,
            nonce: q.get("nonce").cloned(),
            redirect_uri: redirect_uri.to_string(),
            challenge: (!challenge.is_empty()).then(|| {
                let m = if method.is_empty() { "plain" } else { method };
                (m.to_string(), challenge.to_string())
            }),
            scope: get("scope").to_string(),
            offline: get("access_type") == "offline",
            issued: Instant::now(),
        };
        if let Ok(mut st) = self.state.lock() {
            st.codes.insert(code.clone(), pending);
        }
        let mut pairs = vec![("code", code.as_str()), ("scope", "email profile openid")];
        if !state.is_empty() {
            pairs.push(("state", state));
        }
        redirect(&with_query(redirect_uri, &pairs))
    }

    /// The account chooser: one link per seeded person (the same URL plus
    /// `login_hint=EMAIL&auto=1`), and a deny link.
    fn chooser(&self, req: &Request<Bytes>, hint: &str) -> Response<Bytes> {
        let base = format!("{}{}", self.issuer(), req.uri());
        let mut items = String::new();
        for p in &self.config.people {
            let href = with_query(&base, &[("login_hint", &p.email), ("auto", "1")]);
            let mut mark = if p.email.eq_ignore_ascii_case(hint) {
                " (suggested)"
            } else {
                ""
            };
            if self.is_suspended(&p.email) {
                mark = " (suspended)";
            }
            let kind = match &p.hd {
                Some(hd) => format!("Workspace: {}", escape(hd)),
                None => "personal account".to_string(),
            };
            items.push_str(&format!(
                "<li><a class=\"account\" href=\"{}\">{} {} &lt;{}&gt;</a> <small>{}{}</small></li>\n",
                escape(&href),
                escape(&p.given_name),
                escape(&p.family_name),
                escape(&p.email),
                kind,
                mark
            ));
        }
        let deny = with_query(&base, &[("deny", "1")]);
        html(
            StatusCode::OK,
            format!(
                "<!doctype html><html><head><title>Sign in - Google Accounts (usher sandbox)</title></head>\
                 <body><h1>Choose an account</h1><p>usher sandbox: an emulated Google sign-in.</p>\
                 <ul>\n{items}</ul><p><a id=\"deny\" href=\"{}\">Cancel</a></p></body></html>",
                escape(&deny)
            ),
        )
    }

    /// Client credentials from Basic auth or the form (`client_secret_post`).
    fn client_ok(&self, req: &Request<Bytes>, form: &HashMap<String, String>) -> bool {
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let (id, secret) = match basic {
            Some(pair) => {
                let Some((id, secret)) = pair.split_once(':') else {
                    return false;
                };
                let dec = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (dec(id), dec(secret))
            }
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        id == self.config.client_id && secret == self.config.client_secret
    }

    pub(super) fn token(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let form = form_pairs(req.body());
        if let Ok(mut st) = self.state.lock() {
            st.token_requests += 1;
        }
        if !self.client_ok(req, &form) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.exchange_code(&form),
            Some("refresh_token") => {
                let person = form
                    .get("refresh_token")
                    .and_then(|t| self.state.lock().ok()?.refresh_tokens.get(t).cloned());
                match person {
                    Some(p) => self.token_response(&p, None, "openid email profile", false),
                    None => oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Token has been expired or revoked.",
                    ),
                }
            }
            _ => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Invalid grant_type",
            ),
        }
    }

    fn exchange_code(&self, form: &HashMap<String, String>) -> Response<Bytes> {
        let code = form.get("code").map(String::as_str).unwrap_or("");
        // Single use: the code is gone after the first attempt, whatever its outcome.
        let pending = self
            .state
            .lock()
            .ok()
            .and_then(|mut st| st.codes.remove(code));
        let Some(p) = pending else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Malformed auth code.",
            );
        };
        if p.issued.elapsed() > CODE_TTL {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        }
        if form.get("redirect_uri") != Some(&p.redirect_uri) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "Bad Request",
            );
        }
        if let Some((method, challenge)) = &p.challenge {
            let Some(verifier) = form.get("code_verifier") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Missing code verifier.",
                );
            };
            let computed = if method == "S256" {
                URL_SAFE_NO_PAD.encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    verifier.as_bytes(),
                ))
            } else {
                verifier.clone()
            };
            if &computed != challenge {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid code verifier.",
                );
            }
        }
        self.token_response(&p.person, p.nonce.as_deref(), &p.scope, p.offline)
    }

    fn token_response(
        &self,
        person: &SeedPerson,
        nonce: Option<&str>,
        scope: &str,
        offline: bool,
    ) -> Response<Bytes> {
        let Some(id_token) = self.mint_id_token(person, nonce) else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing failed",
            );
        };
        let access = format!("ya29.a0{}", random_token(32));
        let mut body = json!({
            "access_token": access,
            "expires_in": 3599,
            "scope": scope.replace("email", "https://www.googleapis.com/auth/userinfo.email"),
            "token_type": "Bearer",
            "id_token": id_token,
        });
        if let Ok(mut st) = self.state.lock() {
            st.access_tokens.insert(access, person.clone());
            if offline {
                let refresh = format!("1//0g{}", random_token(32));
                st.refresh_tokens.insert(refresh.clone(), person.clone());
                body["refresh_token"] = json!(refresh);
            }
        }
        let mut resp = json_resp(StatusCode::OK, &body);
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
        );
        resp
    }

    /// Google's ID token claims for `person` (see google.md §1.3).
    fn mint_id_token(&self, person: &SeedPerson, nonce: Option<&str>) -> Option<String> {
        let (key, tamper) = {
            let st = self.state.lock().ok()?;
            (
                st.keys.first()?.clone(),
                st.tamper.clone().unwrap_or_default(),
            )
        };
        let key = if tamper.foreign_key {
            Arc::new(new_rsa_key()?)
        } else {
            key
        };
        let now = i64::try_from(unix_secs(SystemTime::now())).ok()? + tamper.time_shift_secs;
        let mut claims = json!({
            "iss": tamper.iss.clone().unwrap_or_else(|| self.issuer().to_string()),
            "azp": self.config.client_id,
            "aud": tamper.aud.clone().unwrap_or_else(|| self.config.client_id.clone()),
            "sub": person.sub,
            "email": person.email,
            "email_verified": person.email_verified,
            "at_hash": random_token(16),
            "name": format!("{} {}", person.given_name, person.family_name),
            "given_name": person.given_name,
            "family_name": person.family_name,
            "iat": now,
            "exp": now + 3600,
        });
        let obj = claims.as_object_mut()?;
        if let Some(hd) = &person.hd {
            obj.insert("hd".into(), json!(hd));
        }
        if let Some(n) = tamper.nonce.as_deref().or(nonce) {
            obj.insert("nonce".into(), json!(n));
        }
        for (k, v) in tamper.claims {
            obj.insert(k, v);
        }
        let header = json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; key.pair.public().modulus_len()];
        key.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .ok()?;
        Some(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    pub(super) fn userinfo(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let person = self
            .state
            .lock()
            .ok()
            .and_then(|st| st.access_tokens.get(token).cloned());
        let Some(p) = person else {
            return json_resp(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_request", "error_description": "Invalid Credentials"}),
            );
        };
        let mut body = json!({
            "sub": p.sub, "name": format!("{} {}", p.given_name, p.family_name),
            "given_name": p.given_name, "family_name": p.family_name,
            "email": p.email, "email_verified": p.email_verified,
        });
        if let (Some(hd), Some(obj)) = (&p.hd, body.as_object_mut()) {
            obj.insert("hd".into(), json!(hd));
        }
        json_resp(StatusCode::OK, &body)
    }

    pub(super) fn revoke(&self, req: &Request<Bytes>) -> Response<Bytes> {
        let form = form_pairs(req.body());
        let token = form.get("token").cloned().unwrap_or_default();
        let removed = self.state.lock().ok().is_some_and(|mut st| {
            let a = st.access_tokens.remove(&token).is_some();
            let r = st.refresh_tokens.remove(&token).is_some();
            st.revocations += u32::from(a || r);
            a || r
        });
        if removed {
            json_resp(StatusCode::OK, &json!({}))
        } else {
            json_resp(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid_token", "error_description": "Token expired or revoked"}),
            )
        }
    }
}
