//! Sign-in through the proxy, end to end, against the sandbox Google provider:
//! a signed-out browser is sent to Google once, comes back signed in, and the
//! upstream receives the identity headers and a verifiable assertion; nothing a
//! client sends can forge or delete them; every broken or hostile flow is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine;
use usher::sandbox::google_oidc::SeedPerson;

use crate::harness::{self, config_text, settings, NO_ISSUER};
use crate::upstream;

/// A minimal browser: one host, a cookie jar, no automatic redirects.
pub(crate) struct Browser {
    addr: SocketAddr,
    host: String,
    jar: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl Browser {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self::for_host(addr, "jira.test")
    }

    /// A browser that addresses usher as `host` (e.g. `127.0.0.1:8080`).
    pub(crate) fn for_host(addr: SocketAddr, host: &str) -> Self {
        Browser {
            addr,
            host: host.to_string(),
            jar: BTreeMap::new(),
            http: harness::client(),
        }
    }

    /// The same browser (same cookies, same Host) talking to another usher address:
    /// a load balancer sending the next request to another replica.
    pub(crate) fn at(&self, addr: SocketAddr) -> Self {
        Browser {
            addr,
            host: self.host.clone(),
            jar: self.jar.clone(),
            http: harness::client(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, resp: &reqwest::Response) {
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || v.is_empty() {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
    }

    /// GET a path on usher (as `http://jira.test{path}`), with extra headers.
    pub(crate) async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let req = self.http.get(format!("http://{}{}", self.addr, path));
        self.send(req, headers, ("accept", "text/html")).await
    }

    /// Sends with the Host, the cookie jar, `default` unless `headers` set that
    /// header, and `headers`; keeps the cookies the answer sets.
    async fn send(
        &mut self,
        mut req: reqwest::RequestBuilder,
        headers: &[(&str, &str)],
        default: (&str, &str),
    ) -> reqwest::Response {
        req = req.header("host", self.host.as_str());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(default.0))
        {
            req = req.header(default.0, default.1);
        }
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        self.absorb(&resp);
        resp
    }

    pub(crate) async fn get(&mut self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// POST `body` (sent as a url-encoded form unless `headers` set a content type)
    /// to a path on usher, with the cookie jar and extra headers.
    pub(crate) async fn post_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> reqwest::Response {
        let req = self
            .http
            .post(format!("http://{}{}", self.addr, path))
            .body(body.to_string());
        let form = ("content-type", "application/x-www-form-urlencoded");
        self.send(req, headers, form).await
    }

    /// Follows the whole sign-in from a protected URL; returns the final response
    /// of the callback (a 302 to `rd` on success, a denial page otherwise).
    pub(crate) async fn sign_in(&mut self, start: &str, email: &str) -> reqwest::Response {
        let login = if start.starts_with("/_usher/login") {
            start.to_string()
        } else {
            let r = self.get(start).await;
            assert_eq!(r.status(), 302, "signed-out browser is redirected");
            location(&r)
        };
        assert!(login.starts_with("/_usher/login"), "{login}");
        let r = self.get(&login).await;
        assert_eq!(r.status(), 302, "login redirects to the provider");
        let auth_url = location(&r);
        let q: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
        let r = self
            .http
            .get(format!("{auth_url}&login_hint={q}&auto=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "provider redirects back");
        let callback = location(&r);
        let public = format!("http://{}", self.host);
        let path = callback
            .strip_prefix(public.as_str())
            .expect("callback on the public host");
        self.get(path).await
    }
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

pub(crate) fn echo_headers(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

fn people() -> Vec<SeedPerson> {
    let mut consumer = SeedPerson::workspace("carol@gmail.com", "3003", "Carol", "Consumer");
    consumer.hd = None;
    let mut unverified = SeedPerson::workspace("uma@example.com", "4004", "Uma", "Unverified");
    unverified.email_verified = false;
    vec![
        SeedPerson::workspace("ann@example.com", "1001", "Ann", "Example"),
        SeedPerson::workspace("bob@other.org", "2002", "Bob", "Other"),
        consumer,
        unverified,
    ]
}

struct Env {
    up: upstream::Upstream,
    proxy: harness::Proxy,
    _op: (
        std::sync::Arc<usher::sandbox::google_oidc::GoogleOidc>,
        usher::sandbox::http::Running,
    ),
}

async fn env(session_extra: &str) -> Env {
    env_with(session_extra, SECRET_REF).await
}

const SECRET_REF: &str = "${USHER_SESSION_SECRET}";

async fn env_with(session_extra: &str, secret: &str) -> Env {
    let up = upstream::start().await;
    let op = harness::start_google(people()).await;
    let extra = "passthrough = [\"^/rest/\"]\npublic = [\"^/s/\"]\n";
    let cfg = config_text(&up.url(), "", extra)
        .replace(NO_ISSUER, op.0.issuer())
        .replace("[session]\n", &format!("[session]\n{session_extra}\n"))
        .replace(SECRET_REF, secret);
    let proxy = harness::start(settings(&cfg)).await;
    Env { up, proxy, _op: op }
}

/// Verifies an ES256 JWT against the JWKS usher serves; returns its claims.
fn verify_assertion(token: &str, jwks: &serde_json::Value) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published in the JWKS");
    let mut point = vec![4u8];
    point.extend(b64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(key["y"].as_str().unwrap()).unwrap());
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    public
        .verify(format!("{h}.{p}").as_bytes(), &b64.decode(s).unwrap())
        .expect("assertion signature verifies with the published key");
    serde_json::from_slice(&b64.decode(p).unwrap()).unwrap()
}

#[tokio::test]
async fn browser_signs_in_once_and_the_upstream_gets_a_verifiable_identity() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    b.jar.insert("JSESSIONID".into(), "tomcat-session".into());
    let r = b.sign_in("/browse/ABC-1?focus=1", "ann@example.com").await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        location(&r),
        "/browse/ABC-1?focus=1",
        "back to the original URL"
    );
    assert!(
        b.jar.keys().any(|k| k == "_usher"),
        "session cookie set: {:?}",
        b.jar.keys()
    );
    assert!(
        !b.jar.keys().any(|k| k.starts_with("_usher_login_")),
        "login-state cookie cleared after the callback"
    );

    let r = b.get("/browse/ABC-1?focus=1").await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "x-forwarded-user"), vec!["ann"]);
    assert_eq!(
        echo_headers(&echo, "x-forwarded-email"),
        vec!["ann@example.com"]
    );
    // usher's own cookies are stripped; the application's are kept byte-exact.
    assert_eq!(
        echo_headers(&echo, "cookie"),
        vec!["JSESSIONID=tomcat-session"]
    );
    let token = echo_headers(&echo, "x-usher-assertion").pop().unwrap();

    let jwks: serde_json::Value = b.get("/_usher/jwks.json").await.json().await.unwrap();
    let claims = verify_assertion(&token, &jwks);
    assert_eq!(claims["iss"], "http://jira.test");
    assert_eq!(claims["aud"], "jira");
    assert_eq!(claims["sub"], "1001");
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(claims["username"], "ann");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(
        exp > iat && exp - iat <= 60,
        "short-lived assertion: {claims}"
    );

    // The next request reuses the cached assertion (re-signed only near expiry).
    let echo: serde_json::Value = b.get("/dashboard").await.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "x-usher-assertion"), vec![token]);
}

#[tokio::test]
async fn nothing_a_signed_in_client_sends_can_change_its_identity() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    let tricks: &[&[(&str, &str)]] = &[
        &[("x-forwarded-user", "admin")],
        &[("X_Forwarded_User", "admin"), ("x.forwarded.user", "root")],
        &[("x-forwarded-groups", "jira-administrators")],
        &[("x-usher-assertion", "forged.jwt.value")],
        &[(
            "connection",
            "X-Forwarded-User, X-Usher-Assertion, X-Forwarded-Email",
        )],
        &[
            ("connection", "x-forwarded-user"),
            ("x-forwarded-user", "admin"),
        ],
    ];
    for headers in tricks {
        let r = b.get_with("/echo", headers).await;
        assert_eq!(r.status(), 200);
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            echo_headers(&echo, "x-forwarded-user"),
            vec!["ann"],
            "{headers:?}"
        );
        assert_eq!(
            echo_headers(&echo, "x-forwarded-email"),
            vec!["ann@example.com"]
        );
        assert_eq!(echo_headers(&echo, "x-usher-assertion").len(), 1);
        assert!(echo_headers(&echo, "x-forwarded-groups")
            .iter()
            .all(|g| g != "jira-administrators"));
        assert!(echo_headers(&echo, "x_forwarded_user").is_empty());
    }
}

#[tokio::test]
async fn signed_out_requests_get_a_redirect_or_401_and_forge_nothing() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    // Forged identity without a session: a redirect, never a forward.
    let r = b
        .get_with("/secure/admin", &[("x-forwarded-user", "admin")])
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/_usher/login?rd=%2Fsecure%2Fadmin");
    // API clients and XHR get 401 JSON.
    for headers in [
        &[("accept", "application/json")][..],
        &[("x-requested-with", "XMLHttpRequest")][..],
        &[("upgrade", "websocket"), ("connection", "upgrade")][..],
    ] {
        let r = b.get_with("/rest/api/2/myself", headers).await;
        assert_eq!(r.status(), 401, "{headers:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], 401);
    }
    // The query never makes a path public or passthrough (GHSA-7rh7).
    let r = b.get("/secure/admin?x=/s/").await;
    assert_eq!(r.status(), 302);
    // Nor does a client-sent X-Forwarded-Uri (GHSA-7x63).
    let r = b
        .get_with("/secure/admin", &[("x-forwarded-uri", "/s/app.js")])
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(e.up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn public_and_passthrough_paths_never_carry_an_identity() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    // Public: no login needed, no identity, forged headers stripped.
    let r = b
        .get_with("/s/app.js", &[("x-forwarded-user", "admin")])
        .await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert!(echo_headers(&echo, "x-forwarded-user").is_empty());
    // Passthrough only with the client's own Authorization.
    let r = b
        .get_with(
            "/rest/api/2/myself",
            &[
                ("authorization", "Bearer pat-123"),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "authorization"), vec!["Bearer pat-123"]);
    assert!(echo_headers(&echo, "x-forwarded-user").is_empty());
    assert!(echo_headers(&echo, "x-usher-assertion").is_empty());
    // Signed in, a public or passthrough request still carries no identity.
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    for (path, headers) in [
        ("/s/app.js", vec![]),
        (
            "/rest/api/2/myself",
            vec![("authorization", "Basic Ym90OnB3")],
        ),
    ] {
        let echo: serde_json::Value = b.get_with(path, &headers).await.json().await.unwrap();
        assert!(echo_headers(&echo, "x-forwarded-user").is_empty(), "{path}");
        assert!(
            echo_headers(&echo, "x-usher-assertion").is_empty(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn refused_people_get_a_403_that_says_why_and_no_session() {
    let e = env("").await;
    for (email, code) in [
        ("carol@gmail.com", "domain_not_allowed"),
        ("bob@other.org", "domain_not_allowed"),
        ("uma@example.com", "email_not_verified"),
    ] {
        let mut b = Browser::new(e.proxy.addr);
        let r = b.sign_in("/", email).await;
        assert_eq!(r.status(), 403, "{email}");
        assert_eq!(r.headers()["x-usher-denial"], code);
        assert!(!b.jar.contains_key("_usher"), "{email} got a session");
        let page = r.text().await.unwrap();
        assert!(!page.contains("hd"), "no internals on the page: {page}");
        assert_eq!(
            b.get("/").await.status(),
            302,
            "{email} is still signed out"
        );
    }
}

#[tokio::test]
async fn callbacks_cannot_be_replayed_forged_or_crossed() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    let r = b.get("/_usher/login?rd=/x").await;
    let auth_url = location(&r);
    let r = b
        .http
        .get(format!("{auth_url}&login_hint=ann%40example.com&auto=1"))
        .send()
        .await
        .unwrap();
    let callback = location(&r);
    let path = callback
        .strip_prefix("http://jira.test")
        .unwrap()
        .to_string();

    // A different browser (no login cookie) cannot use this callback.
    let mut other = Browser::new(e.proxy.addr);
    let r = other.get(&path).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-usher-denial"], "replayed_callback");

    // A tampered state is refused.
    let tampered = path.replace("state=", "state=x");
    let r = b.get(&tampered).await;
    assert_eq!(r.status(), 400);

    // The real one works once ...
    let r = b.get(&path).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/x");
    // ... and never again.
    let r = b.get(&path).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-usher-denial"], "replayed_callback");

    // A callback carrying the provider's error is a denial.
    let mut c = Browser::new(e.proxy.addr);
    let _ = c.get("/_usher/login").await;
    let state = c
        .jar
        .keys()
        .find(|k| k.starts_with("_usher_login_"))
        .cloned()
        .unwrap();
    assert!(!state.is_empty());
    let r = c
        .get("/_usher/callback?error=access_denied&state=abc")
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn hostile_redirect_targets_end_on_this_site() {
    let e = env("").await;
    for rd in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/%09/evil.example",
        "javascript:alert(1)",
        "https://jira.test.evil.example/",
    ] {
        let mut b = Browser::new(e.proxy.addr);
        let q: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let r = b
            .sign_in(&format!("/_usher/login?rd={q}"), "ann@example.com")
            .await;
        assert_eq!(r.status(), 302, "{rd}");
        assert_eq!(location(&r), "/", "{rd} must be neutralised");
    }
    // A configured host is allowed as an absolute target.
    let mut b = Browser::new(e.proxy.addr);
    let r = b
        .sign_in(
            "/_usher/login?rd=http%3A%2F%2Fjira.test%2Fbrowse%2FX-1",
            "ann@example.com",
        )
        .await;
    assert_eq!(location(&r), "http://jira.test/browse/X-1");
}

#[tokio::test]
async fn tampered_or_foreign_session_cookies_are_just_signed_out() {
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    let good = b.jar["_usher"].clone();
    let mut flipped = good.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() / 2].to_string(),
        "garbage".to_string(),
        String::new(),
        "%00%ff".to_string(),
        "a".repeat(5000),
    ] {
        let mut c = Browser::new(e.proxy.addr);
        c.jar.insert("_usher".into(), bad.clone());
        let r = c.get("/secure").await;
        assert_eq!(r.status(), 302, "cookie {bad:.40} must mean signed out");
    }
    // The genuine cookie works here ...
    let mut d = Browser::new(e.proxy.addr);
    d.jar.insert("_usher".into(), good.clone());
    assert_eq!(d.get("/secure").await.status(), 200);
    // ... and is worthless at a deployment with another secret (foreign key).
    let other = env_with("", "another-deployment-secret-0123456789abcdef").await;
    let mut f = Browser::new(other.proxy.addr);
    f.jar.insert("_usher".into(), good);
    assert_eq!(f.get("/secure").await.status(), 302);
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_every_cookie_of_ours() {
    // A server-side store, so logout revokes the session itself, not just the cookie.
    let e = env("store = \"memory\"").await;
    let mut b = Browser::new(e.proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    let stolen = b.jar["_usher"].clone();
    // A pending second login leaves a login-state cookie too.
    let _ = b.get("/_usher/login?rd=/y").await;
    assert!(b.jar.keys().any(|k| k.starts_with("_usher_login_")));
    let r = b.get("/_usher/logout?rd=https://evil.example/").await;
    assert_eq!(r.status(), 200, "hostile rd on logout is not followed");
    assert!(
        b.jar.keys().all(|k| !k.starts_with("_usher")),
        "every usher cookie cleared: {:?}",
        b.jar.keys()
    );
    assert_eq!(b.get("/").await.status(), 302);
    let r = b.get("/_usher/logout?rd=/bye").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/bye");
    // POST works too.
    let r = b
        .http
        .post(format!("http://{}/_usher/logout", e.proxy.addr))
        .header("host", "jira.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A copy of the session cookie taken before logout is dead too.
    let mut thief = Browser::new(e.proxy.addr);
    thief.jar.insert("_usher".into(), stolen);
    assert_eq!(thief.get("/").await.status(), 302);
}

#[tokio::test]
async fn logout_revokes_the_access_token_at_the_idp_when_configured() {
    // Off (the default): logout asks the IdP nothing.
    let e = env("").await;
    let mut b = Browser::new(e.proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    assert_eq!(b.get("/_usher/logout").await.status(), 200);
    assert_eq!(e._op.0.revocations(), 0);

    // On: the session holds the access token (encrypted in the cookie) and logout
    // revokes it at the discovery document's revocation_endpoint.
    let up = upstream::start().await;
    let op = harness::start_google(people()).await;
    let cfg = config_text(&up.url(), "", "")
        .replace(NO_ISSUER, op.0.issuer())
        .replace(
            "allowed_domains = [\"example.com\"]\n",
            "allowed_domains = [\"example.com\"]\nrevoke_on_logout = true\n",
        );
    let proxy = harness::start(settings(&cfg)).await;
    let mut b = Browser::new(proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    assert_eq!(b.get("/").await.status(), 200, "signed in");
    let r = b.get("/_usher/logout?rd=/bye").await;
    assert_eq!(r.status(), 302);
    assert_eq!(op.0.revocations(), 1, "the live access token was revoked");
    assert_eq!(b.get("/").await.status(), 302, "and the session is gone");
    // A second logout (no session left) revokes nothing more.
    assert_eq!(b.get("/_usher/logout").await.status(), 200);
    assert_eq!(op.0.revocations(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_that_keeps_an_old_cookie_has_it_resealed_once_per_connection() {
    // A 4 s idle timeout: the cookie's activity time is refreshed after 1 s.
    let e = env("idle_timeout = \"4s\"").await;
    let mut b = Browser::new(e.proxy.addr);
    assert_eq!(b.sign_in("/", "ann@example.com").await.status(), 302);
    let old = format!("_usher={}", b.jar["_usher"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let url = e.proxy.url("/secure");
    let get = |client: &reqwest::Client| {
        client
            .get(&url)
            .header("host", "jira.test")
            .header("accept", "text/html")
            .header("cookie", &old)
            .send()
    };
    let resealed = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("_usher="))
    };
    // A client that never stores cookies, on one keep-alive connection: the
    // first request is refreshed, the next reads as the refreshed session.
    let conn = harness::client();
    let first = get(&conn).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(resealed(&first), "the due refresh is sent");
    first.bytes().await.unwrap();
    let second = get(&conn).await.unwrap();
    assert_eq!(second.status(), 200);
    assert!(
        !resealed(&second),
        "not sealed again on the same connection"
    );
    // Another connection reads the old cookie as it is, so it is refreshed there.
    let other = get(&harness::client()).await.unwrap();
    assert_eq!(other.status(), 200);
    assert!(resealed(&other));
}
