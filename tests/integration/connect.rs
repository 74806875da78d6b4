//! The directory consent in refresh-token mode (`[directory] oauth = true`)
//! against the sandbox Google: usher sends the admin to the consent screen,
//! comes back with a code, stores the refresh token encrypted, and the directory
//! then answers with it. A forged or foreign return changes nothing.

use std::sync::Arc;

use usher::directory::connect::DirectoryConnect;
use usher::directory::google::GoogleDirectory;
use usher::directory::token_store::RefreshTokenStore;
use usher::directory::Directory;
use usher::sandbox::run::{self, SandboxHandles, SandboxOptions};

use crate::harness;

const PUBLIC: &str = "http://jira.test";

async fn sandbox() -> SandboxHandles {
    run::start(SandboxOptions {
        port: 0,
        seed: None,
        redirect_uris: vec![format!("{PUBLIC}/_usher/callback")],
    })
    .await
    .expect("sandbox starts")
}

/// Config text with the directory's service account replaced by `oauth = true`.
fn oauth_mode(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("service_account_key") && !l.starts_with("admin_subject"))
        .map(|l| {
            if l == "idp = \"google\"" {
                "idp = \"google\"\noauth = true\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The sandbox's usher fragment with the service account replaced by `oauth = true`.
fn oauth_settings(sb: &SandboxHandles) -> usher::config::Settings {
    let fragment = oauth_mode(&sb.usher_toml());
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{PUBLIC}"

[session]
secret = "${{USHER_SESSION_SECRET}}"

[state]
dir = "{dir}"

{fragment}
[[upstream]]
name = "jira"
host = "jira.test"
url = "{jira}"
"#,
        dir = harness::temp_dir("connect").display(),
        jira = sb.urls.jira,
    );
    harness::settings(&text)
}

async fn authorization_endpoint(issuer: &str) -> url::Url {
    let doc: serde_json::Value = harness::client()
        .get(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    url::Url::parse(doc["authorization_endpoint"].as_str().unwrap()).unwrap()
}

fn header(resp: &http::Response<bytes::Bytes>, name: http::header::HeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Follows the consent URL through the sandbox's Google with `auto=1` (the admin
/// approves) and returns the query of the redirect back to usher.
async fn approve(consent: &str) -> String {
    let resp = harness::client()
        .get(format!("{consent}&auto=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "Google redirects back");
    let back = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        back.starts_with(&format!("{PUBLIC}/_usher/admin/connect/google?")),
        "{back}"
    );
    url::Url::parse(&back).unwrap().query().unwrap().to_string()
}

#[tokio::test]
async fn an_admin_connects_the_directory_and_it_answers_with_the_stored_grant() {
    let sb = sandbox().await;
    let settings = oauth_settings(&sb);
    let connect = DirectoryConnect::from_settings(&settings)
        .unwrap()
        .expect("oauth mode has a connect flow");
    assert_eq!(
        connect.redirect_uri(),
        "http://jira.test/_usher/admin/connect/google"
    );
    assert!(!connect.is_connected());
    let d = settings.directory.clone().unwrap();
    let idp = settings.idps[0].clone();
    let directory =
        GoogleDirectory::from_settings(&d, &idp, &settings.session, &settings.state.dir).unwrap();
    let before = directory.person("alice@example.com").await;
    assert!(
        before.is_err(),
        "not connected yet: the directory cannot be read"
    );

    // Start: a 302 to Google's consent screen with offline access and a state cookie.
    let auth = authorization_endpoint(&sb.urls.issuer).await;
    let start = connect.handle(None, "", &auth, "alice@example.com").await;
    assert_eq!(start.status(), 302);
    let location = header(&start, http::header::LOCATION);
    let consent = url::Url::parse(&location).unwrap();
    let q: std::collections::HashMap<_, _> = consent.query_pairs().into_owned().collect();
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["login_hint"], "alice@example.com");
    assert!(q["scope"].contains("admin.directory.user.readonly"));
    let set_cookie = header(&start, http::header::SET_COOKIE);
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("usher_connect="), "{cookie}");

    let back = approve(&location).await;

    // The same answer in another browser (no state cookie) is refused and stores nothing.
    let foreign = connect
        .handle(Some(&back), "", &auth, "alice@example.com")
        .await;
    assert_eq!(foreign.status(), 400);
    assert!(!connect.is_connected());

    let done = connect
        .handle(Some(&back), &cookie, &auth, "alice@example.com")
        .await;
    let status = done.status();
    let body = String::from_utf8_lossy(done.body()).to_string();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("connected"), "{body}");
    assert!(header(&done, http::header::SET_COOKIE).contains("Max-Age=0"));
    assert!(connect.is_connected());

    // The token is at rest encrypted: the file does not contain it in clear.
    let store = RefreshTokenStore::new(
        &settings.state.dir,
        &settings.session.secret,
        &settings.session.previous_secrets,
    );
    let token = store.load().unwrap().expect("stored");
    let raw = std::fs::read_to_string(store.path()).unwrap();
    assert!(!raw.contains(token.expose()));

    // A fresh directory client (as `usher sync` would build) reads with the grant.
    let directory = Arc::new(
        GoogleDirectory::from_settings(&d, &idp, &settings.session, &settings.state.dir).unwrap(),
    );
    let alice = directory
        .person("alice@example.com")
        .await
        .expect("the directory answers after the consent")
        .expect("alice exists");
    assert_eq!(alice.person.primary_email, "alice@example.com");

    // Replaying the used code fails at Google and keeps the stored grant.
    let replay = connect
        .handle(Some(&back), &cookie, &auth, "alice@example.com")
        .await;
    assert_eq!(replay.status(), 502);
    let body = String::from_utf8_lossy(replay.body()).to_string();
    assert!(body.contains("start again"), "{body}");
    assert!(connect.is_connected());
    sb.stop();
}

#[tokio::test]
async fn a_declined_consent_stores_nothing_and_says_what_to_do() {
    let sb = sandbox().await;
    let settings = oauth_settings(&sb);
    let connect = DirectoryConnect::from_settings(&settings).unwrap().unwrap();
    let auth = authorization_endpoint(&sb.urls.issuer).await;
    let start = connect.handle(None, "", &auth, "").await;
    let cookie = header(&start, http::header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let state = cookie.split_once('=').unwrap().1.to_string();
    let resp = connect
        .handle(
            Some(&format!("error=access_denied&state={state}")),
            &cookie,
            &auth,
            "",
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body = String::from_utf8_lossy(resp.body()).to_string();
    assert!(body.contains("declined") && body.contains("/_usher/admin/connect/google"));
    assert!(!connect.is_connected());
    sb.stop();
}

#[tokio::test]
async fn a_service_account_directory_has_no_connect_flow() {
    let sb = sandbox().await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC}\"\n[session]\nsecret = \"${{USHER_SESSION_SECRET}}\"\n[state]\ndir = \"{}\"\n{}\n[[upstream]]\nname = \"jira\"\nhost = \"jira.test\"\nurl = \"{}\"\n",
        harness::temp_dir("connect-sa").display(),
        sb.usher_toml(),
        sb.urls.jira
    );
    // `file:` secrets need the real environment (the key file is on disk).
    let text = text.replace("${USHER_SESSION_SECRET}", harness::SECRET);
    let settings =
        usher::config::parse(&text, "test.toml", &usher::config::SystemEnv).expect("valid config");
    assert!(DirectoryConnect::from_settings(&settings)
        .unwrap()
        .is_none());
    sb.stop();
}

/// Through the proxy: before the consent only an `[admin] users` member signs in
/// (unprovisioned); after connecting at `/_usher/admin/connect/google`, everyone
/// signs in and is provisioned from the directory.
#[tokio::test]
async fn the_admin_connects_the_directory_through_the_console_then_everyone_signs_in() {
    let d = usher::sandbox::demo::start_with(0, |t| oauth_mode(&t))
        .await
        .expect("demo starts in oauth mode");
    let host = d.addr.to_string();
    let public = format!("http://{host}");

    // Not connected: a non-admin is refused, nothing is created.
    let mut bob = crate::signin::Browser::for_host(d.addr, &host);
    let r = bob.sign_in("/", "bob@example.com").await;
    assert_eq!(
        r.status(),
        503,
        "no directory, no sign-in (provisioning_failed)"
    );
    assert!(d.sandbox.jira.state().user("bob").is_none());

    // The admin (alice, in [admin] users) gets in to connect it.
    let mut alice = crate::signin::Browser::for_host(d.addr, &host);
    assert_eq!(alice.sign_in("/", "alice@example.com").await.status(), 302);
    let status = alice.get("/_usher/admin/").await.text().await.unwrap();
    assert!(status.contains("not connected"), "{status}");
    let start = alice.get("/_usher/admin/connect/google").await;
    assert_eq!(start.status(), 302);
    let consent = crate::signin::location(&start);
    assert!(consent.starts_with(&d.sandbox.urls.issuer), "{consent}");
    assert!(consent.contains("access_type=offline"), "{consent}");
    let back = harness::client()
        .get(format!("{consent}&auto=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let back = crate::signin::location(&back);
    let path = back.strip_prefix(&public).expect("back on usher's host");
    assert!(
        path.starts_with("/_usher/admin/connect/google?code="),
        "{path}"
    );
    // A non-admin cannot replay the return (403 before any exchange).
    let mut mallory = crate::signin::Browser::for_host(d.addr, &host);
    let r = mallory.get(path).await;
    assert_eq!(r.status(), 302, "signed out: sent to sign in first");
    let done = alice.get(path).await;
    let status = done.status();
    let body = done.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Google directory connected"), "{body}");
    let status = alice.get("/_usher/admin/").await.text().await.unwrap();
    assert!(
        status.contains("<span class=\"ok\">connected</span>") && !status.contains("not connected"),
        "{status}"
    );

    // Connected: bob signs in and is provisioned from the directory.
    let mut bob = crate::signin::Browser::for_host(d.addr, &host);
    assert_eq!(bob.sign_in("/", "bob@example.com").await.status(), 302);
    let jira = d.sandbox.jira.state();
    assert!(jira.user("bob").is_some(), "provisioned after the consent");
    assert!(jira.members("jira-software-users").contains("bob"));
    d.shutdown();
}
