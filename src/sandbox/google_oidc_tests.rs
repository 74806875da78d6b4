//! Tests of the Google OIDC emulator over real HTTP on loopback.

use super::*;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;

pub(crate) fn demo_config(redirect: &str) -> GoogleOidcConfig {
    let mut consumer =
        SeedPerson::workspace("carl@gmail.com", "1090000000000000003", "Carl", "Consumer");
    consumer.hd = None;
    let mut unverified = SeedPerson::workspace(
        "uma@example.com",
        "1090000000000000004",
        "Uma",
        "Unverified",
    );
    unverified.email_verified = false;
    GoogleOidcConfig {
        client_id: "client-1.apps.googleusercontent.com".into(),
        client_secret: "secret-1".into(),
        redirect_uris: vec![redirect.to_string()],
        people: vec![
            SeedPerson::workspace("ann@example.com", "1090000000000000001", "Ann", "Example"),
            SeedPerson::workspace("bob@other.org", "1090000000000000002", "Bob", "Other"),
            consumer,
            unverified,
            SeedPerson::workspace(
                "eve@evil@example.com",
                "1090000000000000005",
                "Eve",
                "TwoAt",
            ),
        ],
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const REDIRECT: &str = "http://127.0.0.1:1/_usher/callback";

async fn start() -> (Arc<GoogleOidc>, Running) {
    GoogleOidc::start(demo_config(REDIRECT), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn auth_url(issuer: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("client_id", "client-1.apps.googleusercontent.com"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email profile"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        // S256 of "verifier-0123456789-0123456789-0123456789-abc"
        ("code_challenge", "PLACEHOLDER"),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        VERIFIER.as_bytes(),
    ));
    let mut url = url::Url::parse(&format!("{issuer}/o/oauth2/v2/auth")).unwrap();
    for (k, v) in pairs {
        let v = if v == "PLACEHOLDER" {
            challenge.as_str()
        } else {
            v
        };
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abc";

/// GETs `url` and decodes its JSON body (discovery, JWKS).
async fn get_json<T: serde::de::DeserializeOwned>(url: String) -> T {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The account chooser `/authorize` shows without hints.
async fn chooser_page(op: &GoogleOidc) -> String {
    client()
        .get(auth_url(op.issuer(), &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn login_code(op: &GoogleOidc, email: &str) -> String {
    let url = auth_url(op.issuer(), &[("login_hint", email), ("auto", "1")]);
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(loc.as_str().starts_with(REDIRECT));
    let q: HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    q["code"].clone()
}

async fn exchange(op: &GoogleOidc, code: &str, verifier: &str, basic: bool) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let req = client().post(format!("{}/token", op.issuer()));
    let req = if basic {
        req.basic_auth("client-1.apps.googleusercontent.com", Some("secret-1"))
    } else {
        form.push(("client_id", "client-1.apps.googleusercontent.com"));
        form.push(("client_secret", "secret-1"));
        req
    };
    req.form(&form).send().await.unwrap()
}

async fn verified_claims(op: &GoogleOidc, id_token: &str) -> Value {
    let jwks: CoreJsonWebKeySet = get_json(format!("{}/oauth2/v3/certs", op.issuer())).await;
    let (input, sig) = id_token.rsplit_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|x| x.as_str()) == header["kid"].as_str())
        .unwrap();
    key.verify_signature(
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(sig).unwrap(),
    )
    .unwrap();
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn discovery_and_jwks_have_googles_shape() {
    let (op, running) = start().await;
    let d: Value = get_json(format!("{}/.well-known/openid-configuration", op.issuer())).await;
    assert_eq!(d["issuer"], op.issuer());
    assert_eq!(
        d["authorization_endpoint"],
        format!("{}/o/oauth2/v2/auth", op.issuer())
    );
    assert_eq!(d["jwks_uri"], format!("{}/oauth2/v3/certs", op.issuer()));
    assert!(d.get("end_session_endpoint").is_none());
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
    let resp = client()
        .get(format!("{}/oauth2/v3/certs", op.issuer()))
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .all(|k| k["kty"] == "RSA" && k["alg"] == "RS256" && k["e"] == "AQAB"));
    let before = op.signing_kid().unwrap();
    assert!(op.rotate_keys());
    let after = op.signing_kid().unwrap();
    assert_ne!(before, after);
    let jwks: Value = get_json(format!("{}/oauth2/v3/certs", op.issuer())).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&after.as_str()) && kids.contains(&before.as_str()));
    running.stop();
}

#[tokio::test]
async fn chooser_page_lists_people_and_links_log_in() {
    let (op, running) = start().await;
    let page = chooser_page(&op).await;
    assert!(page.contains("ann@example.com") && page.contains("carl@gmail.com"));
    assert!(page.contains("personal account"));
    let href = page
        .split("class=\"account\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let resp = client().get(href).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .contains("code="));
    running.stop();
}

#[tokio::test]
async fn code_flow_with_pkce_basic_and_post_and_single_use_codes() {
    let (op, running) = start().await;
    for basic in [true, false] {
        let code = login_code(&op, "ann@example.com").await;
        let resp = exchange(&op, &code, VERIFIER, basic).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        let claims = verified_claims(&op, body["id_token"].as_str().unwrap()).await;
        assert_eq!(claims["iss"], op.issuer());
        assert_eq!(claims["aud"], "client-1.apps.googleusercontent.com");
        assert_eq!(claims["sub"], "1090000000000000001");
        assert_eq!(claims["email_verified"], json!(true));
        assert_eq!(claims["hd"], "example.com");
        assert_eq!(claims["nonce"], "n-1");
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() == 3600);
        // userinfo with the access token, then revoke it
        let token = body["access_token"].as_str().unwrap();
        let ui: Value = client()
            .get(format!("{}/v1/userinfo", op.issuer()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ui["email"], "ann@example.com");
        let r = client()
            .post(format!("{}/revoke", op.issuer()))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client()
            .get(format!("{}/v1/userinfo", op.issuer()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // the code is single-use
        let again = exchange(&op, &code, VERIFIER, basic).await;
        assert_eq!(again.status(), 400);
        assert_eq!(
            again.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
    }
    running.stop();
}

#[tokio::test]
async fn token_endpoint_errors() {
    let (op, running) = start().await;
    let code = login_code(&op, "ann@example.com").await;
    let r = exchange(
        &op,
        &code,
        "wrong-verifier-0123456789-0123456789-0123",
        true,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let code = login_code(&op, "ann@example.com").await;
    let r = client()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("client-1.apps.googleusercontent.com", Some("wrong"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // unknown redirect URI: 400 page, never a redirect
    let bad = auth_url(op.issuer(), &[]).replace("127.0.0.1%3A1", "evil.example");
    let r = client().get(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // unknown person and deny: error on the redirect
    for extra in [
        vec![("login_hint", "nobody@example.com"), ("auto", "1")],
        vec![("deny", "1")],
    ] {
        let r = client()
            .get(auth_url(op.issuer(), &extra))
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            loc.contains("error=access_denied") && loc.contains("state=st-1"),
            "{loc}"
        );
    }
    running.stop();
}

#[tokio::test]
async fn consumer_accounts_have_no_hd_and_refresh_tokens_need_offline() {
    let (op, running) = start().await;
    let url = auth_url(
        op.issuer(),
        &[
            ("login_hint", "carl@gmail.com"),
            ("auto", "1"),
            ("access_type", "offline"),
        ],
    );
    let loc = client().get(url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let code = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body: Value = exchange(&op, &code, VERIFIER, true)
        .await
        .json()
        .await
        .unwrap();
    let claims = verified_claims(&op, body["id_token"].as_str().unwrap()).await;
    assert!(claims.get("hd").is_none());
    let refresh = body["refresh_token"].as_str().unwrap();
    let r: Value = client()
        .post(format!("{}/token", op.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "client-1.apps.googleusercontent.com"),
            ("client_secret", "secret-1"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id_token"].is_string() && r.get("refresh_token").is_none());
    // without access_type=offline there is no refresh token
    let code = login_code(&op, "ann@example.com").await;
    let body: Value = exchange(&op, &code, VERIFIER, true)
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("refresh_token").is_none());
    running.stop();
}

#[tokio::test]
async fn suspended_people_cannot_sign_in_and_lose_their_tokens() {
    let (op, running) = start().await;
    // A token issued before the suspension stops working at userinfo.
    let code = login_code(&op, "ann@example.com").await;
    let body: Value = exchange(&op, &code, VERIFIER, true)
        .await
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    // A code issued before the suspension cannot be redeemed after it.
    let pending = login_code(&op, "ann@example.com").await;
    assert!(op.set_suspended("ANN@example.com", true));
    assert!(op.is_suspended("ann@example.com"));
    assert!(!op.set_suspended("nobody@example.com", true));
    let url = auth_url(
        op.issuer(),
        &[("login_hint", "ann@example.com"), ("auto", "1")],
    );
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.unwrap().contains("suspended"));
    let r = exchange(&op, &pending, VERIFIER, true).await;
    assert_eq!(r.status(), 400);
    let info = client()
        .get(format!("{}/v1/userinfo", op.issuer()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
    // The chooser still lists the account, marked.
    let page = chooser_page(&op).await;
    assert!(page.contains("ann@example.com&gt;</a> <small>Workspace: example.com (suspended)"));
    // Reactivated, the person signs in again; others were never affected.
    assert!(op.set_suspended("ann@example.com", false));
    login_code(&op, "ann@example.com").await;
    login_code(&op, "bob@other.org").await;
    running.stop();
}
