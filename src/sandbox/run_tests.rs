//! Tests of the sandbox start-up: the usher.toml snippet is a valid config that
//! points at the running emulators, suspension is consistent, the summary names
//! everything, and start-up failures are typed.

use super::*;
use crate::config::{self, DirectoryAuth, IdpKind, SystemEnv, TargetAuth, TargetKind};

async fn sandbox() -> SandboxHandles {
    start(SandboxOptions {
        port: 0,
        seed: None,
        redirect_uris: vec!["http://127.0.0.1:18080/_usher/callback".into()],
    })
    .await
    .unwrap()
}

fn trimmed(u: &url::Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

#[tokio::test]
async fn the_toml_snippet_is_a_valid_config_pointing_at_the_sandbox() {
    let h = sandbox().await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:18080\"\npublic_url = \"http://127.0.0.1:18080\"\n\n\
         [session]\nsecret = \"sandbox-test-secret-sandbox-test-secret-0000\"\n\n\
         [[upstream]]\nname = \"jira\"\nhost = \"127.0.0.1\"\nurl = \"{}\"\ntargets = [\"jira\"]\n\n{}",
        h.urls.jira,
        h.usher_toml()
    );
    let settings =
        config::parse(&text, "<snippet>", &SystemEnv).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let idp = &settings.idps[0];
    assert_eq!(idp.kind, IdpKind::Google);
    assert_eq!(trimmed(&idp.issuer), h.urls.issuer);
    assert_eq!(idp.client_id, h.company.oauth_client.client_id);
    assert_eq!(
        idp.client_secret.expose(),
        h.company.oauth_client.client_secret
    );
    assert_eq!(idp.allowed_domains, ["example.com"]);
    let dir = settings.directory.as_ref().unwrap();
    assert_eq!(trimmed(&dir.api_url), h.urls.directory);
    assert_eq!(dir.token_url.as_str(), h.urls.token_url());
    match &dir.auth {
        DirectoryAuth::ServiceAccount { key, admin_subject } => {
            assert_eq!(key.expose(), h.service_account_key.expose().trim_end());
            assert_eq!(admin_subject, "alice@example.com");
        }
        DirectoryAuth::OAuth => panic!("service account expected"),
    }
    let kinds: Vec<(TargetKind, String)> = settings
        .targets
        .iter()
        .map(|t| (t.kind, trimmed(&t.url)))
        .collect();
    assert_eq!(
        kinds,
        [
            (TargetKind::Jira, h.urls.jira.clone()),
            (TargetKind::Confluence, h.urls.confluence.clone()),
            (TargetKind::Bitbucket, h.urls.bitbucket.clone()),
            (TargetKind::Crowd, h.urls.crowd.clone()),
            (TargetKind::Scim, h.urls.scim.clone()),
        ]
    );
    assert!(
        matches!(&settings.targets[0].auth, TargetAuth::Bearer { token } if token.expose() == "bot-pat")
    );
    assert!(matches!(&settings.targets[3].auth,
        TargetAuth::Basic { username, password } if username == "usher" && password.expose() == "app-password"));
    assert_eq!(
        settings.targets[0].default_project_lead.as_deref(),
        Some("admin")
    );
}

#[tokio::test]
async fn suspend_affects_sign_in_and_directory_together() {
    let h = sandbox().await;
    // Seeded suspension is applied to both.
    assert!(h.oidc.is_suspended("dave@example.com"));
    assert!(h.directory.user("dave@example.com").unwrap().suspended);
    assert!(!h.oidc.is_suspended("alice@example.com"));
    assert!(h.suspend("bob@example.com", true));
    assert!(h.oidc.is_suspended("bob@example.com"));
    assert!(h.directory.user("bob@example.com").unwrap().suspended);
    assert!(h.suspend("bob@example.com", false));
    assert!(!h.oidc.is_suspended("bob@example.com"));
    assert!(!h.directory.user("bob@example.com").unwrap().suspended);
    assert!(!h.suspend("nobody@example.com", true));
}

#[tokio::test]
async fn describe_names_every_emulator_account_and_credential() {
    let h = sandbox().await;
    let text = describe(&h);
    for url in [
        &h.urls.issuer,
        &h.urls.directory,
        &h.urls.jira,
        &h.urls.confluence,
        &h.urls.bitbucket,
        &h.urls.crowd,
        &h.urls.scim,
    ] {
        assert!(text.contains(url.as_str()), "{url} missing");
    }
    for p in &h.company.people {
        assert!(text.contains(&p.email), "{} missing", p.email);
    }
    assert!(text.contains("dave@example.com") && text.contains("suspended: cannot sign in"));
    assert!(text.contains("already has Atlassian account elopez"));
    assert!(
        text.contains("http://127.0.0.1:18080/_usher/callback"),
        "extra redirect URI listed"
    );
    assert!(text.contains(&h.company.oauth_client.client_secret));
    assert!(text.contains("usher-bot / password bot-password / token bot-pat"));
    assert!(text.contains("existing group release-managers: elopez"));
    assert!(text.contains(h.usher_toml().trim_end()));
    assert!(text.contains("# protected_users = [\"usher-bot\", \"admin\"]"));
    assert!(
        !text.contains("PRIVATE KEY"),
        "the private key stays in its file"
    );
}

#[tokio::test]
async fn the_key_file_is_private_and_removed_with_the_handles() {
    let h = sandbox().await;
    let path = h.key_file.clone();
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(on_disk, h.service_account_key.expose());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
    let issuer = h.urls.issuer.clone();
    drop(h);
    assert!(!path.exists());
    // The servers stopped too.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = reqwest::get(format!("{issuer}/.well-known/openid-configuration")).await;
    assert!(r.is_err(), "OIDC still answers after drop");
}

#[tokio::test]
async fn bad_seeds_and_ports_fail_with_typed_errors() {
    let missing = start(SandboxOptions {
        port: 0,
        seed: Some("/nonexistent/company.json".into()),
        redirect_uris: Vec::new(),
    })
    .await;
    let Err(SandboxError::Seed(e)) = missing else {
        panic!("seed error expected");
    };
    assert!(e.to_string().contains("/nonexistent/company.json"));
    let high = start(SandboxOptions {
        port: 65_533,
        ..SandboxOptions::default()
    })
    .await;
    assert!(matches!(high, Err(SandboxError::Bind { .. })));
    // A taken port names the emulator and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = match start(SandboxOptions {
        port,
        ..SandboxOptions::default()
    })
    .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("port {port} is taken"),
    };
    assert!(
        err.contains(&format!("Google OIDC emulator on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn next_free_ports_skips_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // A range starting at or just below the taken port must start after it.
    let from = port.saturating_sub(2).max(1);
    let base = next_free_ports(from).unwrap();
    assert!(
        base > port || base + PORTS - 1 < port,
        "range {base}.. overlaps {port}"
    );
    assert!(base >= from);
    assert_eq!(next_free_ports(u16::MAX), None);
}
