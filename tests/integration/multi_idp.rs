//! One usher, two identity providers: the sandbox Google provider and a real second
//! OpenID Provider (panva `oidc-provider`, groups in a `groups` claim). A person of
//! the second provider signs in through the picker page and gets their claim groups
//! mapped by that provider's own `[idp.groups]` rules into Jira, while a Google
//! person still signs in as before. Needs the peers (`USHER_PEERS=1`).

use usher::sandbox::google_oidc::SeedPerson;
use usher::sandbox::jira::{JiraEmulator, JiraSeed};

use crate::harness::{self, settings, temp_dir, CALLBACK, CLIENT_ID, CLIENT_SECRET};
use crate::oidc_peer::{to_callback_url, Answer};
use crate::peers::{require_peers, OidcPeer, PeerAccount};
use crate::signin::{echo_headers, location, Browser};
use crate::upstream;

const CORP_CLIENT: &str = "corp-client";
const CORP_SECRET: &str = "corp-secret-0123456789";

fn config(google: &str, corp: &str, upstream: &str, jira: &str, state: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://jira.test"
workers = 1

[session]
secret = "${{USHER_SESSION_SECRET}}"

[[idp]]
name = "google"
kind = "google"
issuer = "{google}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
allowed_domains = ["example.com"]

[[idp]]
name = "corp"
kind = "oidc"
issuer = "{corp}"
client_id = "{CORP_CLIENT}"
client_secret = "{CORP_SECRET}"
allowed_domains = ["corp.example"]
groups_claim = "groups"
username = {{ regex = "^(.*)@corp\\.example$", replacement = "corp-$1" }}

[idp.groups]
mode = "manual"
create_missing = true
[[idp.groups.map]]
idp = "engineering"
target = ["jira-developers"]

[groups]
mode = "manual"
default_new_users = ["jira-software-users"]

[state]
dir = "{state}"

[[upstream]]
name = "jira"
host = "jira.test"
url = "{upstream}"
targets = ["jira"]

[[target]]
name = "jira"
kind = "jira"
url = "{jira}"
auth = {{ username = "usher-bot", password = "bot-password" }}
"#,
        state = state.display()
    )
}

/// The `href` of the picker's "Sign in with NAME" link, HTML entities undone.
fn picker_link(html: &str, name: &str) -> String {
    let needle = format!("?idp={name}&amp;");
    let at = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no link for {name} in {html}"));
    let start = html[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&")
}

#[tokio::test]
async fn a_second_oidc_provider_signs_in_through_the_picker_while_google_keeps_working() {
    if !require_peers(
        "a_second_oidc_provider_signs_in_through_the_picker_while_google_keeps_working",
    ) {
        return;
    }
    let corp = OidcPeer::start(
        &[PeerAccount::workspace(
            "corp-sub-7",
            "pat@corp.example",
            "Pat",
            "Partner",
            &["Engineering", "Unmapped"],
        )],
        CORP_CLIENT,
        CORP_SECRET,
        CALLBACK,
    )
    .await;
    let google = harness::start_google(vec![SeedPerson::workspace(
        "ann@example.com",
        "1001",
        "Ann",
        "Example",
    )])
    .await;
    let (jira, jira_run) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let up = upstream::start().await;
    let state_dir = temp_dir("multi-idp");
    let cfg = config(
        google.0.issuer(),
        &corp.issuer,
        &up.url(),
        &jira_run.url(),
        &state_dir,
    );
    let proxy = harness::start(settings(&cfg)).await;

    // The corp person: protected page -> login -> picker with both providers.
    let mut pat = Browser::new(proxy.addr);
    let r = pat.get("/browse/CORP-1").await;
    assert_eq!(r.status(), 302);
    let login = location(&r);
    let r = pat.get(&login).await;
    assert_eq!(r.status(), 200, "more than one [[idp]]: the picker");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Sign in with google") && html.contains("Sign in with corp"),
        "{html}"
    );
    let r = pat.get(&picker_link(&html, "corp")).await;
    assert_eq!(r.status(), 302);
    let auth_url = location(&r);
    assert!(auth_url.starts_with(&corp.issuer), "{auth_url}");
    let callback = to_callback_url(
        &auth_url,
        "http://jira.test",
        Answer::As("pat@corp.example"),
    )
    .await;
    let r = pat
        .get(&format!(
            "{}?{}",
            callback.path(),
            callback.query().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 302, "corp callback accepted: {}", corp.stderr());
    assert_eq!(location(&r), "/browse/CORP-1");
    let echo: serde_json::Value = pat.get("/browse/CORP-1").await.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "x-forwarded-user"), vec!["corp-pat"]);
    assert_eq!(
        echo_headers(&echo, "x-forwarded-email"),
        vec!["pat@corp.example"]
    );
    // Only the mapped claim group, by corp's own [idp.groups] rules.
    assert_eq!(
        echo_headers(&echo, "x-forwarded-groups"),
        vec!["jira-developers"]
    );
    let state = jira.state();
    let account = state.user("corp-pat").expect("provisioned at login");
    assert_eq!(account.email, "pat@corp.example");
    let devs = &state.groups["jira-developers"];
    assert!(devs.contains(&account.key));
    assert!(
        state.groups["jira-software-users"].contains(&account.key),
        "keys [idp.groups] leaves out (default_new_users) come from [groups]"
    );
    assert!(!state.groups.contains_key("Unmapped") && !state.groups.contains_key("unmapped"));

    // The Google person still signs in (skipping the picker with ?idp=google).
    let mut ann = Browser::new(proxy.addr);
    let r = ann
        .sign_in(
            "/_usher/login?idp=google&rd=%2Fbrowse%2FG-1",
            "ann@example.com",
        )
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/browse/G-1");
    let echo: serde_json::Value = ann.get("/browse/G-1").await.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "x-forwarded-user"), vec!["ann"]);
    let state = jira.state();
    let a = state.user("ann").expect("google person provisioned");
    assert!(
        state.groups["jira-software-users"].contains(&a.key),
        "global [groups] for google people"
    );
    assert!(!state.groups["jira-developers"].contains(&a.key));

    // Each account is linked to its own (IdP, subject).
    let links = std::fs::read_to_string(state_dir.join("links.jsonl")).unwrap();
    assert!(
        links.contains("\"corp\"") && links.contains("corp-sub-7"),
        "{links}"
    );
    assert!(
        links.contains("\"google\"") && links.contains("1001"),
        "{links}"
    );

    proxy.shutdown().await;
    drop(jira_run);
}
