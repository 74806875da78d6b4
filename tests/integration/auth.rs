//! Sign-in pieces composed the way the proxy wires them (login -> IdP -> callback ->
//! session -> per-request resolve + assertion -> logout), against the sandbox Google
//! provider on loopback. Self-contained: uses only the public API.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use usher::auth::assertion::{identity_values, AssertionCache, AssertionSigner};
use usher::auth::login_state::LoginStates;
use usher::auth::oidc::{http_client, CallbackParams, RelyingParty};
use usher::auth::redirect::{validate_redirect, SafeRedirect};
use usher::config::{IdpKind, IdpSettings, Secret, SessionSettings, SessionStoreKind};
use usher::sandbox::google_oidc::{GoogleOidc, GoogleOidcConfig, SeedPerson};
use usher::session::{strip_usher_cookies, Session, Sessions};

/// Applies Set-Cookie values to a browser cookie string.
fn apply(jar: &str, set: &[String]) -> String {
    let mut cookies: Vec<(String, String)> = jar
        .split("; ")
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for sc in set {
        let Some((k, v)) = sc.split(';').next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        cookies.retain(|(name, _)| name != k);
        if !sc.contains("Max-Age=0") {
            cookies.push((k.to_string(), v.to_string()));
        }
    }
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn login_callback_session_assertion_logout() {
    let public = url::Url::parse("https://jira.example.com").unwrap();
    let (op, running) = GoogleOidc::start(
        GoogleOidcConfig {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            redirect_uris: vec!["https://jira.example.com/_usher/callback".into()],
            people: vec![SeedPerson::workspace(
                "ann@example.com",
                "1001",
                "Ann",
                "Example",
            )],
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let idp = IdpSettings {
        name: "google".into(),
        kind: IdpKind::Google,
        issuer: url::Url::parse(op.issuer()).unwrap(),
        client_id: "cid".into(),
        client_secret: Secret::new("csecret"),
        allowed_domains: vec!["example.com".into()],
        allowed_groups: vec![],
        groups_claim: "groups".into(),
        scim_token: None,
        revoke_on_logout: false,
        scopes: vec![],
        username: None,
        groups: None,
    };
    let session_settings = SessionSettings {
        secret: Secret::new("0123456789abcdef0123456789abcdef"),
        previous_secrets: vec![],
        cookie_name: "_usher".into(),
        ttl: Duration::from_secs(12 * 3600),
        idle_timeout: Duration::from_secs(2 * 3600),
        revalidate_after: Duration::from_secs(300),
        store: SessionStoreKind::Memory,
        redis_url: None,
    };
    let rp = RelyingParty::new(idp, &public, http_client().unwrap()).unwrap();
    let states = LoginStates::new("_usher", &session_settings.secret, &[], true).unwrap();
    let sessions = Sessions::from_settings(&session_settings, true)
        .await
        .unwrap();
    let signer = Arc::new(AssertionSigner::generate(public.as_str()).unwrap());
    let assertions = AssertionCache::new(signer.clone(), "jira");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let now = SystemTime::now();

    // GET /_usher/login?rd=/browse/X-1
    let rd = validate_redirect("/browse/X-1", &["jira.example.com".to_string()])
        .unwrap_or_else(|_| SafeRedirect::root());
    let (auth_url, login) = rp.begin(&rd, now).await.unwrap();
    let mut jar = apply(
        "JSESSIONID=abc",
        &states.issue(&login, "JSESSIONID=abc", now).unwrap(),
    );

    // The browser at the IdP (non-interactive sandbox login).
    let resp = browser
        .get(format!("{auth_url}&login_hint=ann%40example.com&auto=1"))
        .send()
        .await
        .unwrap();
    let callback = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();

    // GET /_usher/callback?code=..&state=..
    let params = CallbackParams::from_query(callback.query().unwrap());
    let (login, clear) = states
        .take(&jar, params.state.as_deref().unwrap(), now)
        .unwrap();
    jar = apply(&jar, &clear);
    let identity = rp.complete(&login, &params, now).await.unwrap();
    assert_eq!(login.redirect().as_str(), "/browse/X-1");
    let mut session = Session::new(&identity.idp, &identity.sub, &identity.email, "ann", now);
    session.groups = vec!["jira-software-users".into()];
    jar = apply(&jar, &sessions.issue(&session, now).await.unwrap());

    // Every later request: resolve, assertion, identity values, strip our cookies.
    let resolved = sessions
        .resolve(&jar, now + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resolved, session);
    let header = assertions.header_for(&resolved, now).unwrap();
    assert_eq!(header.to_str().unwrap().split('.').count(), 3);
    let values = identity_values(&resolved).unwrap();
    assert_eq!(values.user, "ann");
    assert_eq!(values.email, "ann@example.com");
    let names = sessions.cookie_names(&states.prefix());
    assert_eq!(
        strip_usher_cookies(jar.as_bytes(), &names).as_deref(),
        Some(&b"JSESSIONID=abc"[..])
    );
    let jwks: serde_json::Value = serde_json::from_str(signer.jwks_json()).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    // GET /_usher/logout
    jar = apply(&jar, &sessions.end(&jar).await);
    assertions.forget(&session.id);
    assert_eq!(sessions.resolve(&jar, now).await, None);
    assert_eq!(jar, "JSESSIONID=abc");
    running.stop();
}
