//! Sign-in through usher against real peers: panva's `oidc-provider` (a certified
//! OpenID Provider) driven by an HTTP client, and headless Chromium clicking through
//! the provider's login page. Run when `USHER_PEERS=1` (tests/run.sh sets it after
//! installing the peers).

use crate::harness::{self, config_text, settings, CALLBACK, CLIENT_ID, CLIENT_SECRET, NO_ISSUER};
use crate::oidc_peer::{to_callback_url, Answer};
use crate::peers::{browser_login_mapped, require_peers, OidcPeer, PeerAccount};
use crate::signin::{echo_headers, location, Browser};
use crate::upstream;

fn accounts() -> Vec<PeerAccount> {
    vec![
        PeerAccount::workspace(
            "p-100",
            "ann@example.com",
            "Ann",
            "Peer",
            &["eng", "jira-users"],
        ),
        PeerAccount::workspace("p-200", "eve@evil.example", "Eve", "Outsider", &["eng"]),
    ]
}

/// usher with a `kind = "oidc"` IdP pointing at the real provider.
async fn usher_for(peer: &OidcPeer, up: &upstream::Upstream) -> harness::Proxy {
    let cfg = config_text(&up.url(), "", "")
        .replace(NO_ISSUER, &peer.issuer)
        .replace(
            "kind = \"google\"",
            "kind = \"oidc\"\ngroups_claim = \"groups\"",
        );
    harness::start(settings(&cfg)).await
}

#[tokio::test]
async fn oidc_provider_signs_a_person_in_through_usher_with_groups() {
    if !require_peers("oidc_provider_signs_a_person_in_through_usher_with_groups") {
        return;
    }
    let peer = OidcPeer::start(&accounts(), CLIENT_ID, CLIENT_SECRET, CALLBACK).await;
    let up = upstream::start().await;
    let proxy = usher_for(&peer, &up).await;
    let mut b = Browser::new(proxy.addr);

    let r = b.get("/browse/PEER-1").await;
    assert_eq!(r.status(), 302);
    let r = b.get(&location(&r)).await;
    assert_eq!(r.status(), 302);
    let auth_url = location(&r);
    assert!(auth_url.starts_with(&peer.issuer), "{auth_url}");
    let callback =
        to_callback_url(&auth_url, "http://jira.test", Answer::As("ann@example.com")).await;
    let path = format!("{}?{}", callback.path(), callback.query().unwrap());
    let r = b.get(&path).await;
    assert_eq!(r.status(), 302, "callback accepted");
    assert_eq!(location(&r), "/browse/PEER-1");

    let echo: serde_json::Value = b.get("/browse/PEER-1").await.json().await.unwrap();
    assert_eq!(echo_headers(&echo, "x-forwarded-user"), vec!["ann"]);
    assert_eq!(
        echo_headers(&echo, "x-forwarded-email"),
        vec!["ann@example.com"]
    );
    assert_eq!(
        echo_headers(&echo, "x-forwarded-groups"),
        vec!["eng,jira-users"]
    );

    // Someone from a domain that is not allowed is refused with a reason.
    let mut e = Browser::new(proxy.addr);
    let r = e.get("/_usher/login").await;
    let callback = to_callback_url(
        &location(&r),
        "http://jira.test",
        Answer::As("eve@evil.example"),
    )
    .await;
    let r = e
        .get(&format!(
            "{}?{}",
            callback.path(),
            callback.query().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-usher-denial"], "domain_not_allowed");
    assert_eq!(
        echo_headers(&echo, "cookie").len(),
        0,
        "no usher cookie forwarded"
    );
}

#[tokio::test]
async fn a_real_browser_signs_in_through_usher_and_sees_the_upstream() {
    if !require_peers("a_real_browser_signs_in_through_usher_and_sees_the_upstream") {
        return;
    }
    let peer = OidcPeer::start(&accounts(), CLIENT_ID, CLIENT_SECRET, CALLBACK).await;
    let up = upstream::start().await;
    let proxy = usher_for(&peer, &up).await;
    let result = browser_login_mapped(
        "http://jira.test/browse/DEMO-1",
        "ann@example.com",
        "http://jira.test/browse/DEMO-1",
        "signin-through-usher-oidc-provider.png",
        &[("jira.test", proxy.addr)],
    )
    .await
    .unwrap_or_else(|e| panic!("browser sign-in failed: {e}"));
    assert_eq!(result.status, 200);
    assert!(result
        .final_url
        .starts_with("http://jira.test/browse/DEMO-1"));
    // The upstream echoes what it received: the identity usher injected.
    assert!(
        result.text.contains(r#"["x-forwarded-user","ann"]"#),
        "{}",
        result.text
    );
    assert!(
        result
            .text
            .contains(r#"["x-forwarded-groups","eng,jira-users"]"#),
        "{}",
        result.text
    );
    assert!(result.screenshot.exists());
}
