//! The relying party driven end-to-end against the sandbox Google provider over real
//! HTTP on loopback (auth URL -> emulator auto-login -> callback -> exchange ->
//! Identity), plus every refusal path, and unit tables for the pure helpers.

use super::*;
use crate::auth::login_state::LoginStates;
use crate::config::Secret;
use crate::sandbox::google_oidc::{GoogleOidc, GoogleOidcConfig, SeedPerson, TokenTamper};
use crate::sandbox::http::Running;
use serde_json::json;

const PUBLIC: &str = "https://jira.example.com";

struct Env {
    op: Arc<GoogleOidc>,
    running: Running,
    states: LoginStates,
}

fn people() -> Vec<SeedPerson> {
    let mut consumer = SeedPerson::workspace("carl@gmail.com", "1003", "Carl", "Consumer");
    consumer.hd = None;
    let mut unverified = SeedPerson::workspace("uma@example.com", "1004", "Uma", "Unverified");
    unverified.email_verified = false;
    vec![
        SeedPerson::workspace("Ann@Example.COM", "1001", "Ann", "Example"),
        SeedPerson::workspace("bob@other.org", "1002", "Bob", "Other"),
        consumer,
        unverified,
        SeedPerson::workspace("eve@evil@example.com", "1005", "Eve", "TwoAt"),
    ]
}

async fn env() -> Env {
    let config = GoogleOidcConfig {
        client_id: "client-1.apps.googleusercontent.com".into(),
        client_secret: "secret-1".into(),
        redirect_uris: vec![format!("{PUBLIC}/_usher/callback")],
        people: people(),
    };
    let (op, running) = GoogleOidc::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let states = LoginStates::new("_usher", &Secret::new("z".repeat(32)), &[], true).unwrap();
    Env {
        op,
        running,
        states,
    }
}

fn settings(env: &Env, kind: IdpKind) -> IdpSettings {
    IdpSettings {
        name: "google".into(),
        kind,
        issuer: url::Url::parse(env.op.issuer()).unwrap(),
        client_id: "client-1.apps.googleusercontent.com".into(),
        client_secret: Secret::new("secret-1"),
        allowed_domains: vec!["example.com".into()],
        allowed_groups: vec![],
        groups_claim: "groups".into(),
        scim_token: None,
        revoke_on_logout: false,
        scopes: vec![],
        username: None,
        groups: None,
    }
}

fn rp(settings: IdpSettings) -> RelyingParty {
    RelyingParty::new(
        settings,
        &url::Url::parse(PUBLIC).unwrap(),
        http_client().unwrap(),
    )
    .unwrap()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_jar(set: &[String]) -> String {
    set.iter()
        .filter_map(|c| c.split(';').next())
        .filter(|p| p.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the browser brings back to `/_usher/callback`.
struct Callback {
    jar: String,
    params: CallbackParams,
    login: LoginState,
}

async fn to_callback(env: &Env, rp: &RelyingParty, email: &str) -> Callback {
    let now = SystemTime::now();
    let (url, login) = rp.begin(&SafeRedirect::root(), now).await.unwrap();
    let jar = cookie_jar(&env.states.issue(&login, "", now).unwrap());
    let mut auth = url::Url::parse(&url).unwrap();
    auth.query_pairs_mut()
        .append_pair("login_hint", email)
        .append_pair("auto", "1");
    let resp = browser().get(auth).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(loc.path(), "/_usher/callback");
    assert_eq!(loc.host_str(), Some("jira.example.com"));
    Callback {
        jar,
        params: CallbackParams::from_query(loc.query().unwrap_or("")),
        login,
    }
}

async fn finish(env: &Env, rp: &RelyingParty, cb: &Callback) -> Result<Identity, AuthError> {
    let state = cb.params.state.clone().unwrap_or_default();
    let (login, _clear) = env.states.take(&cb.jar, &state, SystemTime::now())?;
    rp.complete(&login, &cb.params, SystemTime::now()).await
}

async fn sign_in(env: &Env, rp: &RelyingParty, email: &str) -> Result<Identity, AuthError> {
    let cb = to_callback(env, rp, email).await;
    finish(env, rp, &cb).await
}

#[tokio::test]
async fn end_to_end_google_sign_in() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    assert!(!rp.is_ready());
    let (url, login) = rp
        .begin(&SafeRedirect::root(), SystemTime::now())
        .await
        .unwrap();
    assert!(rp.is_ready());
    let q: std::collections::HashMap<_, _> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], login.state);
    assert_eq!(q["nonce"], login.nonce);
    assert_eq!(q["hd"], "example.com");
    assert_eq!(
        q["redirect_uri"],
        "https://jira.example.com/_usher/callback"
    );
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(scopes.contains(&"openid") && scopes.contains(&"email") && scopes.contains(&"profile"));
    assert!(!url.contains(&login.pkce_verifier));

    let id = sign_in(&env, &rp, "ann@example.com").await.unwrap();
    assert_eq!(
        id,
        Identity {
            idp: "google".into(),
            sub: "1001".into(),
            email: "Ann@example.com".into(),
            email_verified: true,
            hd: Some("example.com".into()),
            name: Some("Ann Example".into()),
            given_name: Some("Ann".into()),
            family_name: Some("Example".into()),
            groups: vec![],
            access_token: None,
        }
    );
    env.running.stop();
}

#[tokio::test]
async fn refusals_by_policy() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    let cases = [
        ("bob@other.org", DenialReason::DomainNotAllowed),
        ("carl@gmail.com", DenialReason::DomainNotAllowed),
        ("uma@example.com", DenialReason::EmailNotVerified),
        ("eve@evil@example.com", DenialReason::InvalidEmail),
    ];
    for (email, reason) in cases {
        let err = sign_in(&env, &rp, email).await.unwrap_err();
        assert_eq!(err.reason, reason, "{email}: {err}");
        assert!(err.reason.is_forbidden());
    }
    env.running.stop();
}

#[tokio::test]
async fn state_mismatch_replay_and_single_use_code() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    // The callback of one login presented with another browser's cookie.
    let a = to_callback(&env, &rp, "ann@example.com").await;
    let b = to_callback(&env, &rp, "ann@example.com").await;
    let err = env
        .states
        .take(
            &b.jar,
            a.params.state.as_deref().unwrap(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert_eq!(
        err.reason,
        DenialReason::ReplayedCallback,
        "no login cookie for that state in this browser"
    );
    let err = env
        .states
        .take(
            &a.jar,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(matches!(
        err.reason,
        DenialReason::ReplayedCallback | DenialReason::StateMismatch
    ));
    // A normal completion, then the same callback again.
    assert!(finish(&env, &rp, &a).await.is_ok());
    assert_eq!(
        finish(&env, &rp, &a).await.unwrap_err().reason,
        DenialReason::ReplayedCallback
    );
    // Even with the login state in hand, the code cannot be exchanged twice.
    assert_eq!(
        rp.complete(&a.login, &a.params, SystemTime::now())
            .await
            .unwrap_err()
            .reason,
        DenialReason::CodeExchangeFailed
    );
    // A wrong PKCE verifier fails the exchange.
    let mut wrong = b.login.clone();
    wrong.pkce_verifier = random_value();
    assert_eq!(
        rp.complete(&wrong, &b.params, SystemTime::now())
            .await
            .unwrap_err()
            .reason,
        DenialReason::CodeExchangeFailed
    );
    // RFC 9207: an `iss` on the callback must be our issuer (checked before the exchange).
    let mut mixed = b.params.clone();
    mixed.iss = Some("https://other-idp.example.com".into());
    let err = rp
        .complete(&b.login, &mixed, SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::IdpError);
    assert!(err.detail.contains("iss"));
    // A login for another IdP.
    let mut other = b.login.clone();
    other.idp = "okta".into();
    assert_eq!(
        rp.complete(&other, &b.params, SystemTime::now())
            .await
            .unwrap_err()
            .reason,
        DenialReason::StateMismatch
    );
    env.running.stop();
}

async fn tampered(
    env: &Env,
    rp: &RelyingParty,
    tamper: TokenTamper,
) -> Result<Identity, AuthError> {
    env.op.set_tamper(Some(tamper));
    let out = sign_in(env, rp, "ann@example.com").await;
    env.op.set_tamper(None);
    out
}

#[tokio::test]
async fn id_token_verification_failures() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    let nonce = TokenTamper {
        nonce: Some("other-nonce".into()),
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, nonce).await.unwrap_err().reason,
        DenialReason::NonceMismatch
    );
    let aud = TokenTamper {
        aud: Some("someone-else".into()),
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, aud).await.unwrap_err().reason,
        DenialReason::InvalidIdToken
    );
    let expired = TokenTamper {
        time_shift_secs: -7200,
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, expired).await.unwrap_err().reason,
        DenialReason::InvalidIdToken
    );
    let iss = TokenTamper {
        iss: Some("https://accounts.evil.com".into()),
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, iss).await.unwrap_err().reason,
        DenialReason::InvalidIdToken
    );
    let fetched = env.op.jwks_requests();
    let foreign = TokenTamper {
        foreign_key: true,
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, foreign.clone())
            .await
            .unwrap_err()
            .reason,
        DenialReason::InvalidIdToken
    );
    assert_eq!(
        env.op.jwks_requests(),
        fetched + 1,
        "one JWKS refresh for the unknown kid"
    );
    assert_eq!(
        tampered(&env, &rp, foreign).await.unwrap_err().reason,
        DenialReason::InvalidIdToken
    );
    assert_eq!(
        env.op.jwks_requests(),
        fetched + 1,
        "refresh is rate-limited"
    );
    env.running.stop();
}

#[tokio::test]
async fn google_claim_variants_are_accepted() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    let mut claims = serde_json::Map::new();
    claims.insert("email_verified".into(), json!("true"));
    let string_bool = TokenTamper {
        claims: claims.clone(),
        ..Default::default()
    };
    assert!(
        tampered(&env, &rp, string_bool)
            .await
            .unwrap()
            .email_verified
    );
    claims.insert("email_verified".into(), json!("false"));
    let string_false = TokenTamper {
        claims,
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &rp, string_false).await.unwrap_err().reason,
        DenialReason::EmailNotVerified
    );
    // The legacy issuer form (no scheme) is accepted for kind = "google".
    let bare = env.op.issuer().trim_start_matches("http://").to_string();
    let legacy = TokenTamper {
        iss: Some(bare.clone()),
        ..Default::default()
    };
    let r = tampered(&env, &rp, legacy).await;
    assert!(r.is_ok(), "{r:?}");
    // ...but not for a generic OIDC provider.
    let generic = self::rp(settings(&env, IdpKind::Oidc));
    let legacy = TokenTamper {
        iss: Some(bare),
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &generic, legacy).await.unwrap_err().reason,
        DenialReason::InvalidIdToken
    );
    env.running.stop();
}

#[tokio::test]
async fn key_rotation_triggers_one_jwks_refresh() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    assert!(sign_in(&env, &rp, "ann@example.com").await.is_ok());
    let before = env.op.jwks_requests();
    assert!(sign_in(&env, &rp, "ann@example.com").await.is_ok());
    assert_eq!(env.op.jwks_requests(), before, "JWKS is cached");
    assert!(env.op.rotate_keys());
    assert!(env.op.rotate_keys());
    assert!(sign_in(&env, &rp, "ann@example.com").await.is_ok());
    assert_eq!(env.op.jwks_requests(), before + 1);
    env.running.stop();
}

#[tokio::test]
async fn idp_error_on_callback() {
    let env = env().await;
    let rp = rp(settings(&env, IdpKind::Google));
    let now = SystemTime::now();
    let (url, login) = rp.begin(&SafeRedirect::root(), now).await.unwrap();
    let jar = cookie_jar(&env.states.issue(&login, "", now).unwrap());
    let resp = browser().get(format!("{url}&deny=1")).send().await.unwrap();
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let params = CallbackParams::from_query(loc.query().unwrap());
    assert_eq!(params.error.as_deref(), Some("access_denied"));
    let (login, _) = env
        .states
        .take(&jar, params.state.as_deref().unwrap(), now)
        .unwrap();
    let err = rp.complete(&login, &params, now).await.unwrap_err();
    assert_eq!(err.reason, DenialReason::IdpError);
    assert!(err.detail.contains("access_denied"));
    env.running.stop();
}

#[tokio::test]
async fn generic_oidc_groups_from_a_dotted_claim() {
    let env = env().await;
    let mut s = settings(&env, IdpKind::Oidc);
    s.groups_claim = "realm_access.roles".into();
    s.allowed_groups = vec!["eng".into()];
    let rp = rp(s.clone());
    let mut claims = serde_json::Map::new();
    claims.insert("realm_access".into(), json!({"roles": ["eng", "ops"]}));
    let with_roles = TokenTamper {
        claims: claims.clone(),
        ..Default::default()
    };
    let id = tampered(&env, &rp, with_roles).await.unwrap();
    assert_eq!(id.groups, vec!["eng", "ops"]);
    s.allowed_groups = vec!["admins".into()];
    let strict = self::rp(s);
    let with_roles = TokenTamper {
        claims,
        ..Default::default()
    };
    assert_eq!(
        tampered(&env, &strict, with_roles)
            .await
            .unwrap_err()
            .reason,
        DenialReason::NotInAllowedGroups
    );
    // kind = oidc checks the email domain: bob@other.org is refused, without any hd.
    assert_eq!(
        sign_in(&env, &rp, "bob@other.org")
            .await
            .unwrap_err()
            .reason,
        DenialReason::DomainNotAllowed
    );
    env.running.stop();
}

#[tokio::test]
async fn unreachable_provider_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = env().await;
    let mut s = settings(&env, IdpKind::Google);
    s.issuer = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let rp = rp(s);
    let err = rp
        .begin(&SafeRedirect::root(), SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::ProviderUnavailable);
    assert!(!rp.is_ready());
    env.running.stop();
}

#[test]
fn http_issuers_only_on_loopback() {
    let base = IdpSettings {
        name: "g".into(),
        kind: IdpKind::Google,
        issuer: url::Url::parse("http://accounts.example.com").unwrap(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        allowed_domains: vec![],
        allowed_groups: vec![],
        groups_claim: "groups".into(),
        scim_token: None,
        revoke_on_logout: false,
        scopes: vec![],
        username: None,
        groups: None,
    };
    let public = url::Url::parse(PUBLIC).unwrap();
    let err = RelyingParty::new(base.clone(), &public, http_client().unwrap()).unwrap_err();
    assert_eq!(err.reason, DenialReason::Misconfigured);
    for ok in [
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
        "https://accounts.google.com",
    ] {
        let mut s = base.clone();
        s.issuer = url::Url::parse(ok).unwrap();
        let rp = RelyingParty::new(s, &public, http_client().unwrap()).unwrap();
        assert_eq!(
            rp.redirect_uri(),
            "https://jira.example.com/_usher/callback"
        );
    }
}

#[test]
fn email_parsing_is_strict() {
    assert_eq!(
        parse_email("Ann@Example.COM"),
        Some(("Ann".into(), "example.com".into()))
    );
    for bad in [
        "",
        "ann",
        "@example.com",
        "ann@",
        "a@b@example.com",
        "ann @example.com",
        "ann@exa mple.com",
        "ann@example..com",
        "ann@.example.com",
        "ann@example.com.",
        "ann@exam_ple.com",
        "ann\n@example.com",
    ] {
        assert_eq!(parse_email(bad), None, "{bad:?}");
    }
}

#[test]
fn claim_paths_and_callback_params() {
    let claims =
        json!({"groups": ["a", "b", 3], "realm_access": {"roles": ["r1"]}, "one": "x", "num": 5});
    assert_eq!(claim_strings(&claims, "groups"), vec!["a", "b"]);
    assert_eq!(claim_strings(&claims, "realm_access.roles"), vec!["r1"]);
    assert_eq!(claim_strings(&claims, "one"), vec!["x"]);
    assert!(claim_strings(&claims, "num").is_empty());
    assert!(claim_strings(&claims, "missing.path").is_empty());
    let p = CallbackParams::from_query("code=4%2F0Ab&state=s1&state=s2&scope=email");
    assert_eq!(p.code.as_deref(), Some("4/0Ab"));
    assert_eq!(p.state.as_deref(), Some("s1"));
    assert!(!format!("{p:?}").contains("4/0Ab"));
    assert_eq!(
        check_allowed_groups(&["Eng".into()], &["eng".into()]),
        Ok(())
    );
    assert!(check_allowed_groups(&[], &["eng".into()]).is_err());
}
