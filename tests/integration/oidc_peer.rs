//! usher's OIDC relying party (`usher::auth::oidc::RelyingParty`) against a real,
//! independent OpenID Provider (panva `oidc-provider`, see peers.rs): the full code
//! flow driven by an HTTP client with a cookie jar, the refusals (wrong PKCE verifier,
//! replayed code, nonce mismatch, access_denied, wrong client secret, policy), JWKS
//! key rotation, and one sign-in through a real headless Chromium. Runs only with
//! `USHER_PEERS=1`; it must not depend on the proxy's wiring of sign-in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use usher::auth::login_state::LoginState;
use usher::auth::oidc::{http_client, CallbackParams, DenialReason, Identity, RelyingParty};
use usher::auth::redirect::SafeRedirect;
use usher::config::{self, IdpSettings, StaticEnv};

use crate::peers::{browser_login_mapped, require_peers, OidcPeer, PeerAccount};

const PUBLIC: &str = "http://jira.test";
const CLIENT_ID: &str = "usher-test-client";
const CLIENT_SECRET: &str = "peer-client-secret-1";

fn accounts() -> Vec<PeerAccount> {
    let mut uma = PeerAccount::workspace("1003", "uma@example.com", "Uma", "Unverified", &[]);
    uma.email_verified = false;
    let mut carl = PeerAccount::workspace("1004", "carl@gmail.com", "Carl", "Consumer", &[]);
    carl.hd = None;
    vec![
        PeerAccount::workspace(
            "1001",
            "ann@example.com",
            "Ann",
            "Example",
            &["jira-users", "staff"],
        ),
        PeerAccount::workspace("1002", "bob@example.com", "Bob", "Admin", &["admins"]),
        uma,
        carl,
    ]
}

async fn start_peer(public: &str) -> OidcPeer {
    let redirect = format!("{public}/_usher/callback");
    OidcPeer::start(&accounts(), CLIENT_ID, CLIENT_SECRET, &redirect).await
}

/// `[[idp]]` settings parsed from a small usher config, as `usher serve` would.
fn idp_settings(
    issuer: &str,
    public: &str,
    secret: &str,
    kind: &str,
    idp_extra: &str,
) -> IdpSettings {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public}"

[session]
secret = "${{USHER_SESSION_SECRET}}"

[[idp]]
name = "corp"
kind = "{kind}"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "${{PEER_CLIENT_SECRET}}"
groups_claim = "groups"
{idp_extra}

[[upstream]]
name = "jira"
host = "jira.test"
url = "http://127.0.0.1:9"
"#
    );
    let env = StaticEnv::new()
        .var(
            "USHER_SESSION_SECRET",
            "0123456789abcdef0123456789abcdef-peer-test",
        )
        .var("PEER_CLIENT_SECRET", secret);
    match config::parse(&text, "test.toml", &env) {
        Ok(mut s) => s.idps.remove(0),
        Err(e) => panic!("test config invalid:\n{e}"),
    }
}

fn relying_party(peer: &OidcPeer, public: &str, secret: &str, idp_extra: &str) -> RelyingParty {
    let settings = idp_settings(&peer.issuer, public, secret, "oidc", idp_extra);
    RelyingParty::new(
        settings,
        &url::Url::parse(public).unwrap(),
        http_client().unwrap(),
    )
    .unwrap()
}

/// A minimal cookie jar: name and path scoped, one host (the OP on loopback).
#[derive(Default)]
struct Jar {
    cookies: BTreeMap<(String, String), String>,
}

impl Jar {
    fn store(&mut self, request_path: &str, headers: &http::HeaderMap) {
        for set in headers.get_all(http::header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let mut parts = set.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = request_path
                .rsplit_once('/')
                .map(|(dir, _)| if dir.is_empty() { "/" } else { dir })
                .unwrap_or("/")
                .to_string();
            let mut expired = value.is_empty();
            for attr in parts {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                if k.eq_ignore_ascii_case("path") {
                    path = v.to_string();
                } else if (k.eq_ignore_ascii_case("max-age") && v.trim() == "0")
                    || (k.eq_ignore_ascii_case("expires") && v.contains("1970"))
                {
                    expired = true;
                }
            }
            let key = (name.to_string(), path);
            if expired {
                self.cookies.remove(&key);
            } else {
                self.cookies.insert(key, value.to_string());
            }
        }
    }

    fn header_for(&self, path: &str) -> String {
        self.cookies
            .iter()
            .filter(|((_, p), _)| {
                path == p || path.starts_with(&format!("{}/", p.trim_end_matches('/')))
            })
            .map(|((n, _), v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// How the person answers the OP's login page.
pub(crate) enum Answer<'a> {
    /// Signs in as this email (`login_hint` on the authorization request).
    As(&'a str),
    /// Presses Cancel (`?deny=1` on the interaction page).
    Cancel,
}

/// Follows the OP's redirects from `auth_url` like a browser with a cookie jar until
/// the OP redirects to usher's callback; returns the callback's query.
async fn to_callback(auth_url: &str, public: &str, answer: Answer<'_>) -> CallbackParams {
    let url = to_callback_url(auth_url, public, answer).await;
    CallbackParams::from_query(url.query().unwrap_or(""))
}

/// Like [`to_callback`] but returns the whole callback URL (for driving usher itself).
pub(crate) async fn to_callback_url(auth_url: &str, public: &str, answer: Answer<'_>) -> url::Url {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let callback = format!("{public}/_usher/callback");
    let mut jar = Jar::default();
    let mut url = url::Url::parse(auth_url).unwrap();
    if let Answer::As(email) = answer {
        url.query_pairs_mut().append_pair("login_hint", email);
    }
    let mut hops = Vec::new();
    for _ in 0..10 {
        if url.as_str().starts_with(&callback) {
            return url;
        }
        if matches!(answer, Answer::Cancel) && url.path().starts_with("/interaction/") {
            url.query_pairs_mut().append_pair("deny", "1");
        }
        hops.push(url.to_string());
        let resp = http
            .get(url.clone())
            .header(http::header::COOKIE, jar.header_for(url.path()))
            .send()
            .await
            .unwrap();
        jar.store(url.path(), resp.headers());
        let status = resp.status();
        let Some(location) = resp.headers().get(http::header::LOCATION) else {
            let body = resp.text().await.unwrap_or_default();
            panic!("OP answered {status} without a redirect at {url}; hops {hops:?}; body: {body}");
        };
        assert!(status.is_redirection(), "{status} with Location at {url}");
        // The OP's Location is relative (`/interaction/<uid>`); resolve it like a browser.
        url = url.join(location.to_str().unwrap()).unwrap();
    }
    panic!("no callback after 10 redirects: {hops:?}");
}

/// Begins a sign-in at the RP and returns the pending login plus the callback query.
async fn begin_to_callback(
    rp: &RelyingParty,
    public: &str,
    answer: Answer<'_>,
) -> (LoginState, CallbackParams) {
    let (auth_url, login) = rp
        .begin(&SafeRedirect::root(), SystemTime::now())
        .await
        .unwrap();
    let params = to_callback(&auth_url, public, answer).await;
    (login, params)
}

async fn sign_in(rp: &RelyingParty, email: &str) -> Result<Identity, usher::auth::oidc::AuthError> {
    let (login, params) = begin_to_callback(rp, PUBLIC, Answer::As(email)).await;
    rp.complete(&login, &params, SystemTime::now()).await
}

#[tokio::test]
async fn code_flow_against_real_op_yields_identity_with_groups() {
    if !require_peers("code_flow_against_real_op_yields_identity_with_groups") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let (auth_url, login) = rp
        .begin(&SafeRedirect::root(), SystemTime::now())
        .await
        .unwrap();
    assert!(
        auth_url.starts_with(&format!("{}/auth?", peer.issuer)),
        "{auth_url}"
    );
    assert!(
        auth_url.contains("code_challenge_method=S256"),
        "{auth_url}"
    );
    let params = to_callback(&auth_url, PUBLIC, Answer::As("ann@example.com")).await;
    assert_eq!(
        params.state.as_deref(),
        Some(login.state.as_str()),
        "OP echoes state"
    );
    assert!(params.error.is_none(), "{params:?}");
    let id = rp
        .complete(&login, &params, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(id.idp, "corp");
    assert_eq!(id.sub, "1001");
    assert_eq!(id.email, "ann@example.com");
    assert!(id.email_verified);
    assert_eq!(id.hd.as_deref(), Some("example.com"));
    assert_eq!(id.given_name.as_deref(), Some("Ann"));
    assert_eq!(id.family_name.as_deref(), Some("Example"));
    assert_eq!(id.name.as_deref(), Some("Ann Example"));
    assert_eq!(
        id.groups,
        vec!["jira-users".to_string(), "staff".to_string()]
    );
}

#[tokio::test]
async fn wrong_pkce_verifier_is_rejected_by_the_op() {
    if !require_peers("wrong_pkce_verifier_is_rejected_by_the_op") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let (login, params) = begin_to_callback(&rp, PUBLIC, Answer::As("ann@example.com")).await;
    let mut forged = login.clone();
    forged.pkce_verifier = "x".repeat(43);
    let err = rp
        .complete(&forged, &params, SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::CodeExchangeFailed, "{err}");
    assert!(err.detail.contains("invalid_grant"), "{err}");
    // The refusal was the verifier's: the same code still works with the right one.
    let id = rp
        .complete(&login, &params, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(id.sub, "1001");
}

#[tokio::test]
async fn replayed_code_is_rejected_by_the_op() {
    if !require_peers("replayed_code_is_rejected_by_the_op") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let (login, params) = begin_to_callback(&rp, PUBLIC, Answer::As("ann@example.com")).await;
    rp.complete(&login, &params, SystemTime::now())
        .await
        .unwrap();
    let err = rp
        .complete(&login, &params, SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::CodeExchangeFailed, "{err}");
    assert!(err.detail.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn nonce_mismatch_is_rejected() {
    if !require_peers("nonce_mismatch_is_rejected") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let (mut login, params) = begin_to_callback(&rp, PUBLIC, Answer::As("ann@example.com")).await;
    login.nonce = "a-nonce-this-login-never-sent".into();
    let err = rp
        .complete(&login, &params, SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::NonceMismatch, "{err}");
}

#[tokio::test]
async fn cancelled_login_maps_access_denied_to_idp_error() {
    if !require_peers("cancelled_login_maps_access_denied_to_idp_error") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let (login, params) = begin_to_callback(&rp, PUBLIC, Answer::Cancel).await;
    assert_eq!(params.error.as_deref(), Some("access_denied"), "{params:?}");
    assert!(params.code.is_none());
    assert_eq!(params.state.as_deref(), Some(login.state.as_str()));
    let err = rp
        .complete(&login, &params, SystemTime::now())
        .await
        .unwrap_err();
    assert_eq!(err.reason, DenialReason::IdpError, "{err}");
    assert!(err.detail.contains("error=access_denied"), "{err}");
    assert!(err.reason.is_forbidden());
}

#[tokio::test]
async fn wrong_client_secret_fails_the_code_exchange() {
    if !require_peers("wrong_client_secret_fails_the_code_exchange") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, "not-the-secret", "");
    let err = sign_in(&rp, "ann@example.com").await.unwrap_err();
    assert_eq!(err.reason, DenialReason::CodeExchangeFailed, "{err}");
    assert!(err.detail.contains("invalid_client"), "{err}");
    assert!(
        !err.detail.contains("not-the-secret"),
        "secret leaked: {err}"
    );
}

#[tokio::test]
async fn sign_in_policy_applies_to_real_id_tokens() {
    if !require_peers("sign_in_policy_applies_to_real_id_tokens") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let open = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let err = sign_in(&open, "uma@example.com").await.unwrap_err();
    assert_eq!(err.reason, DenialReason::EmailNotVerified, "{err}");

    let admins_only = relying_party(
        &peer,
        PUBLIC,
        CLIENT_SECRET,
        r#"allowed_groups = ["admins"]"#,
    );
    let err = sign_in(&admins_only, "ann@example.com").await.unwrap_err();
    assert_eq!(err.reason, DenialReason::NotInAllowedGroups, "{err}");
    let bob = sign_in(&admins_only, "bob@example.com").await.unwrap();
    assert_eq!(bob.groups, vec!["admins".to_string()]);

    let other_domain = relying_party(
        &peer,
        PUBLIC,
        CLIENT_SECRET,
        r#"allowed_domains = ["example.org"]"#,
    );
    let err = sign_in(&other_domain, "ann@example.com").await.unwrap_err();
    assert_eq!(err.reason, DenialReason::DomainNotAllowed, "{err}");
}

#[tokio::test]
async fn google_kind_checks_hd_and_ignores_groups_claim() {
    if !require_peers("google_kind_checks_hd_and_ignores_groups_claim") {
        return;
    }
    let peer = start_peer(PUBLIC).await;
    let settings = idp_settings(
        &peer.issuer,
        PUBLIC,
        CLIENT_SECRET,
        "google",
        r#"allowed_domains = ["example.com"]"#,
    );
    let rp = RelyingParty::new(
        settings,
        &url::Url::parse(PUBLIC).unwrap(),
        http_client().unwrap(),
    )
    .unwrap();
    let ann = sign_in(&rp, "ann@example.com").await.unwrap();
    assert_eq!(ann.hd.as_deref(), Some("example.com"));
    assert!(
        ann.groups.is_empty(),
        "google groups come from the directory: {ann:?}"
    );
    // A consumer account has no hd claim: refused although its email is verified.
    let err = sign_in(&rp, "carl@gmail.com").await.unwrap_err();
    assert_eq!(err.reason, DenialReason::DomainNotAllowed, "{err}");
}

async fn published_kids(issuer: &str) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{issuer}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn key_rotation_is_handled_by_jwks_refresh() {
    if !require_peers("key_rotation_is_handled_by_jwks_refresh") {
        return;
    }
    let mut peer = start_peer(PUBLIC).await;
    let rp = relying_party(&peer, PUBLIC, CLIENT_SECRET, "");
    let first_kid = peer.kid.clone();
    assert_eq!(published_kids(&peer.issuer).await, vec![first_kid.clone()]);
    assert_eq!(sign_in(&rp, "ann@example.com").await.unwrap().sub, "1001");

    // A restart with the key file keeps the key: same kid, the cached JWKS still works.
    peer.restart().await;
    assert_eq!(peer.kid, first_kid);
    assert_eq!(sign_in(&rp, "ann@example.com").await.unwrap().sub, "1001");

    // A new key: the RP's cached JWKS lacks its kid and must refetch to verify.
    peer.rotate_keys().await;
    assert_ne!(peer.kid, first_kid);
    assert_eq!(published_kids(&peer.issuer).await, vec![peer.kid.clone()]);
    let id = sign_in(&rp, "bob@example.com").await;
    assert_eq!(
        id.map(|i| i.sub),
        Ok("1002".to_string()),
        "op stderr: {}",
        peer.stderr()
    );
}

#[tokio::test]
async fn browser_sign_in_through_real_op_reaches_the_callback() {
    if !require_peers("browser_sign_in_through_real_op_reaches_the_callback") {
        return;
    }
    // Something must really listen on the redirect URI for Chromium to land there.
    let handler: usher::sandbox::http::Handler = Arc::new(|req| {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        Box::pin(async move {
            let mut resp = Response::new(Bytes::from(format!(
                "<!doctype html><html><body><h1>callback reached at {host}</h1></body></html>"
            )));
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        })
    });
    let site = usher::sandbox::http::serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    // Chromium resolves the public host name to the listener (as usher's would be).
    let public = format!("http://callback.test:{}", site.addr.port());
    let peer = start_peer(&public).await;
    let rp = relying_party(&peer, &public, CLIENT_SECRET, "");
    let (auth_url, login) = rp
        .begin(&SafeRedirect::root(), SystemTime::now())
        .await
        .unwrap();
    let callback = format!("{public}/_usher/callback");
    let result = browser_login_mapped(
        &auth_url,
        "bob@example.com",
        &callback,
        "oidc_peer_browser.png",
        &[("callback.test", site.addr)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nop stderr: {}", peer.stderr()));
    assert!(result.final_url.starts_with(&callback), "{result:?}");
    assert_eq!(result.status, 200, "{result:?}");
    assert_eq!(
        result.text,
        format!("callback reached at callback.test:{}", site.addr.port())
    );
    let png = std::fs::read(&result.screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "screenshot is not a PNG"
    );

    let query = url::Url::parse(&result.final_url)
        .unwrap()
        .query()
        .unwrap_or("")
        .to_string();
    let id = rp
        .complete(
            &login,
            &CallbackParams::from_query(&query),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (id.sub.as_str(), id.email.as_str()),
        ("1002", "bob@example.com")
    );
    site.stop();
}
