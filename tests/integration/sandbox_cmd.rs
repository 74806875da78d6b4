//! `usher sandbox`: the in-process start-up (`sandbox::run::start`) answers on
//! every emulator with the seed's credentials, and the real binary starts,
//! prints its ready line, serves discovery, stops on SIGTERM and rejects bad seeds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use usher::directory::google_auth::{Credentials, ServiceAccountKey, SystemClock, TokenProvider};
use usher::sandbox::run::{start, SandboxOptions, PORTS};

const CALLBACK: &str = "http://127.0.0.1:18081/_usher/callback";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_emulator_answers_with_the_seed_credentials() {
    let h = start(SandboxOptions {
        port: 0,
        seed: None,
        redirect_uris: vec![CALLBACK.into()],
    })
    .await
    .unwrap();
    let http = client();
    let bot = &h.company.atlassian.bot;

    // Google OIDC: discovery names the issuer it runs at.
    let disc: Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            h.urls.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disc["issuer"], h.urls.issuer.as_str());

    // Sign-in: an active person is sent back with a code, the suspended one is stopped.
    let auth = |email: &str| {
        let mut u = url::Url::parse(&format!("{}/o/oauth2/v2/auth", h.urls.issuer)).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &h.company.oauth_client.client_id)
            .append_pair("redirect_uri", CALLBACK)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile")
            .append_pair("login_hint", email)
            .append_pair("auto", "1");
        u.to_string()
    };
    let ok = http.get(auth("alice@example.com")).send().await.unwrap();
    assert_eq!(ok.status(), 302);
    assert!(ok.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&format!("{CALLBACK}?code=")));
    let refused = http.get(auth("dave@example.com")).send().await.unwrap();
    assert_eq!(refused.status(), 403);

    // Directory: a token minted with the service-account key, then users.list.
    let key = ServiceAccountKey::from_json(h.service_account_key.expose()).unwrap();
    let tokens = TokenProvider::new(
        http.clone(),
        url::Url::parse(&h.urls.token_url()).unwrap(),
        Credentials::ServiceAccount {
            key,
            subject: h.company.service_account.admin_subject.clone(),
        },
        Arc::new(SystemClock),
    );
    let token = tokens.token().await.unwrap();
    let list: Value = http
        .get(format!(
            "{}/admin/directory/v1/users?customer=my_customer",
            h.urls.directory
        ))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), h.company.people.len());
    let dave = users
        .iter()
        .find(|u| u["primaryEmail"] == "dave@example.com")
        .unwrap();
    assert_eq!(dave["suspended"], true);
    assert_eq!(dave["id"], "108100000000000000004");

    // Jira: the pre-existing admin, with the bot's password and with its PAT.
    for req in [
        http.get(format!("{}/rest/api/2/user?username=admin", h.urls.jira))
            .basic_auth(&bot.username, Some(&bot.password)),
        http.get(format!("{}/rest/api/2/user?username=admin", h.urls.jira))
            .bearer_auth(&bot.token),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let admin: Value = resp.json().await.unwrap();
        assert_eq!(admin["name"], "admin");
        assert_eq!(admin["emailAddress"], "admin@example.com");
    }
    let wrong = http
        .get(format!("{}/rest/api/2/user?username=admin", h.urls.jira))
        .basic_auth(&bot.username, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The other products know the same pre-existing account elopez (Erin's email).
    let confluence: Value = http
        .get(format!(
            "{}/rest/api/user?username=elopez",
            h.urls.confluence
        ))
        .bearer_auth(&bot.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confluence["username"], "elopez");
    let bitbucket: Value = http
        .get(format!(
            "{}/rest/api/1.0/admin/users?filter=elopez",
            h.urls.bitbucket
        ))
        .bearer_auth(&bot.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bitbucket["values"][0]["emailAddress"],
        "erin.lopez@example.com"
    );
    let app = &h.company.atlassian.crowd_application;
    let crowd: Value = http
        .get(format!(
            "{}/rest/usermanagement/1/user?username=elopez",
            h.urls.crowd
        ))
        .basic_auth(&app.name, Some(&app.password))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(crowd["email"], "erin.lopez@example.com");
    let scim: Value = http
        .get(format!(
            "{}/Users?filter=userName%20eq%20%22elopez%22",
            h.urls.scim
        ))
        .bearer_auth(&h.company.atlassian.scim.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(scim["totalResults"], 1);

    // Suspending through the handles reaches both Google emulators.
    assert!(h.suspend("alice@example.com", true));
    assert_eq!(
        http.get(auth("alice@example.com"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert!(h.directory.user("alice@example.com").unwrap().suspended);
}

/// A first port with `PORTS` consecutive free ports after it.
fn free_port_range() -> u16 {
    for _ in 0..50 {
        let base = 20_000 + (rand::random::<u16>() % 40_000);
        let all: Vec<_> = (0..PORTS)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port range");
}

#[test]
fn the_binary_serves_until_sigterm() {
    let port = free_port_range();
    let mut child = Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["sandbox", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("usher sandbox ready") {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let printed = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(p) => p,
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "no ready line; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let issuer = format!("http://127.0.0.1:{port}");
    assert!(
        printed.contains(&format!("issuer = \"{issuer}\"")),
        "{printed}"
    );
    assert!(printed.contains(&format!("url = \"http://127.0.0.1:{}\"", port + 2)));
    let key_file = printed
        .lines()
        .find_map(|l| l.strip_prefix("service_account_key = \"file:"))
        .map(|s| s.trim_end_matches('"').to_string())
        .unwrap();
    assert!(std::path::Path::new(&key_file).exists());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let disc: Value = rt.block_on(async {
        client()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(disc["issuer"], issuer.as_str());
    #[cfg(unix)]
    {
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "exit after SIGTERM: {status:?}");
        assert!(
            !std::path::Path::new(&key_file).exists(),
            "key file removed"
        );
    }
    #[cfg(not(unix))]
    {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_bad_seed_exits_64_naming_the_file() {
    let dir = crate::harness::temp_dir("sandbox-cmd");
    let seed = dir.join("company.json");
    std::fs::write(&seed, "{\"domain\": \"example.com\", \"people\": [}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["sandbox", "--port", "0", "--seed"])
        .arg(&seed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&seed.display().to_string()), "{err}");
    assert!(err.contains("is not a valid company seed"), "{err}");
}
