//! Tests of the Google directory client against the sandbox emulator over real
//! HTTP on 127.0.0.1: every operation, both auth modes, token caching, nested
//! groups with a cycle, retries on each retryable answer, 403/401 messages that
//! name the fix, and garbage answers. Test-only.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt;

use super::google::{GoogleDirectory, GoogleDirectoryOptions};
use super::google_auth::{
    consent_url, exchange_code, Credentials, ManualClock, ServiceAccountKey, SCOPES,
    SCOPE_GROUP_READONLY, SCOPE_USER_READONLY,
};
use super::retry::{RecordingSleeper, RetryPolicy};
use super::token_store::RefreshTokenStore;
use super::{snapshot, Directory, DirectoryError};
use crate::config::{DirectoryAuth, DirectorySettings, Secret};
use crate::identity::{GroupRef, MemberKind, Person};
use crate::sandbox::google_directory::{
    generate_service_account_key, start_with, DirectorySeed, GoogleDirectoryEmulator, GoogleFault,
    SeedServiceAccount,
};
use crate::sandbox::http::Running;

const FIXTURE: &str = include_str!("../../tests/fixtures/google_directory_seed.json");
const SA_EMAIL: &str = "usher-sync@sandbox-project.iam.gserviceaccount.com";
const SA_CLIENT_ID: &str = "104857600000000000001";
const OAUTH_CLIENT: &str = "sandbox-client.apps.googleusercontent.com";
const OAUTH_SECRET: &str = "sandbox-client-secret";

/// One RSA key per test binary (keygen is slow in debug builds).
fn sa_key_json() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| generate_service_account_key(SA_EMAIL, SA_CLIENT_ID).unwrap())
}

fn other_key_json() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| generate_service_account_key(SA_EMAIL, SA_CLIENT_ID).unwrap())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Env {
    emu: Arc<GoogleDirectoryEmulator>,
    running: Running,
    clock: Arc<ManualClock>,
    sleeper: Arc<RecordingSleeper>,
    settings: DirectorySettings,
    tmp: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.running.stop();
    }
}

fn settings(base: &str) -> DirectorySettings {
    DirectorySettings {
        idp: "google".into(),
        customer: "my_customer".into(),
        domain: None,
        api_url: base.parse().unwrap(),
        token_url: format!("{base}/token").parse().unwrap(),
        nested_groups: true,
        auth: DirectoryAuth::OAuth,
        users_query: String::new(),
        include_suspended: false,
        rate_limit_per_minute: 0,
    }
}

async fn env(mutate: impl FnOnce(&mut DirectorySeed)) -> Env {
    let mut seed = DirectorySeed::from_json(FIXTURE).unwrap();
    let key = ServiceAccountKey::from_json(sa_key_json()).unwrap();
    seed.service_accounts
        .push(SeedServiceAccount::for_key(&key));
    mutate(&mut seed);
    let clock = Arc::new(ManualClock::new(now()));
    let (emu, running) = start_with(([127, 0, 0, 1], 0).into(), seed, clock.clone())
        .await
        .unwrap();
    let settings = settings(&running.url());
    Env {
        emu,
        running,
        clock,
        sleeper: Arc::new(RecordingSleeper::default()),
        settings,
        tmp: crate::test_support::temp_dir("dir-test"),
    }
}

impl Env {
    fn options(&self, page: u32) -> GoogleDirectoryOptions {
        GoogleDirectoryOptions {
            users_page_size: page,
            groups_page_size: page,
            retry: RetryPolicy::default(),
            clock: self.clock.clone(),
            sleeper: self.sleeper.clone(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
        }
    }

    fn sa_client(&self, subject: &str, key_json: &str, page: u32) -> GoogleDirectory {
        let creds = Credentials::ServiceAccount {
            key: ServiceAccountKey::from_json(key_json).unwrap(),
            subject: subject.into(),
        };
        GoogleDirectory::new("google", &self.settings, creds, self.options(page)).unwrap()
    }

    fn sa(&self) -> GoogleDirectory {
        self.sa_client("alice@example.com", sa_key_json(), 3)
    }

    /// A token store in a fresh directory under this test's temporary directory.
    fn store_with(&self, token: Option<&str>) -> RefreshTokenStore {
        let dir: PathBuf = self.tmp.path().join(format!("{:x}", rand::random::<u64>()));
        let store = RefreshTokenStore::new(&dir, &Secret::new("x".repeat(40)), &[]);
        if let Some(t) = token {
            store.save(&Secret::new(t)).unwrap();
        }
        store
    }

    fn oauth_client(&self, store: RefreshTokenStore) -> GoogleDirectory {
        let creds = Credentials::OAuth {
            client_id: OAUTH_CLIENT.into(),
            client_secret: Secret::new(OAUTH_SECRET),
            store,
        };
        GoogleDirectory::new("google", &self.settings, creds, self.options(3)).unwrap()
    }
}

async fn all_people(dir: &dyn Directory) -> Result<Vec<Person>, DirectoryError> {
    let mut out = Vec::new();
    let mut pages = dir.people();
    while let Some(p) = pages.try_next().await? {
        out.extend(p);
    }
    Ok(out)
}

async fn all_groups(dir: &dyn Directory) -> Vec<GroupRef> {
    dir.groups().try_concat().await.unwrap()
}

fn emails(people: &[Person]) -> Vec<&str> {
    people.iter().map(|p| p.primary_email.as_str()).collect()
}

#[tokio::test]
async fn service_account_lists_people_page_by_page_with_flags() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    let mut pages = dir.people();
    let mut sizes = Vec::new();
    let mut people = Vec::new();
    while let Some(p) = pages.try_next().await.unwrap() {
        sizes.push(p.len());
        people.extend(p);
    }
    assert_eq!(sizes, vec![3, 3, 2]);
    assert_eq!(people.len(), 8);
    let carol = people
        .iter()
        .find(|p| p.primary_email == "carol@example.com")
        .unwrap();
    assert!(carol.suspended && !carol.archived);
    let dave = people
        .iter()
        .find(|p| p.primary_email == "dave@example.com")
        .unwrap();
    assert!(dave.archived && !dave.suspended);
    let alice = &people[0];
    assert_eq!(alice.id, "100000000000000000001");
    assert_eq!(alice.aliases, vec!["alice.admin@example.com"]);
    assert_eq!(
        (alice.given_name.as_str(), alice.family_name.as_str()),
        ("Alice", "Admin")
    );
    assert_eq!(alice.full_name, "Alice Admin");
    assert!(alice.is_admin);
    assert_eq!(alice.org_unit_path, "/IT");

    let c = env.emu.counts();
    assert_eq!(c.users_list, 3, "one call per page");
    assert_eq!(c.users_get, 0, "no per-person calls");
    assert_eq!(c.token_jwt, 1, "one token for all pages");
    let log = env.emu.requests();
    let first = log.iter().find(|l| l.contains("/users?")).unwrap();
    assert!(first.contains("customer=my_customer"), "{first}");
    assert!(first.contains("maxResults=3"), "{first}");
    assert!(
        first.contains("fields=nextPageToken%2Cusers%28id"),
        "{first}"
    );
    assert!(log.iter().filter(|l| l.contains("pageToken=")).count() == 2);
}

#[tokio::test]
async fn users_query_and_domain_scope_the_listing() {
    let mut env = env(|_| {}).await;
    env.settings.users_query = "orgUnitPath='/Eng' isSuspended=false".into();
    env.settings.domain = Some("example.com".into());
    let dir = env.sa();
    let people = all_people(&dir).await.unwrap();
    assert_eq!(
        emails(&people),
        vec!["erin@example.com", "frank@example.com", "grace@example.com"]
    );
    let log = env.emu.requests();
    assert!(log
        .iter()
        .any(|l| l.contains("domain=example.com") && l.contains("query=orgUnitPath")));

    env.settings.domain = Some("other.example".into());
    let err = all_people(&env.sa()).await.unwrap_err();
    assert!(matches!(err, DirectoryError::BadRequest { .. }), "{err}");
    assert!(err.to_string().contains("[directory]"), "{err}");
}

#[tokio::test]
async fn groups_and_members_are_listed_with_types() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    let groups = all_groups(&dir).await;
    assert_eq!(groups.len(), 6);
    assert_eq!(env.emu.counts().groups_list, 2, "6 groups at 3 per page");
    assert_eq!(groups[1].email, "eng@example.com");
    assert_eq!(groups[1].name, "Engineering");

    let eng: Vec<_> = dir.members("eng@example.com").try_concat().await.unwrap();
    let rows: Vec<_> = eng
        .iter()
        .map(|m| (m.email.as_deref().unwrap(), m.kind, m.role.as_str()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("alice@example.com", MemberKind::User, "OWNER"),
            ("backend@example.com", MemberKind::Group, "MEMBER"),
            ("grace@example.com", MemberKind::User, "MEMBER"),
        ]
    );
    let everyone: Vec<_> = dir.members(&groups[0].id).try_concat().await.unwrap();
    assert_eq!(everyone.len(), 1);
    assert_eq!(everyone[0].kind, MemberKind::Customer);
    assert_eq!(everyone[0].email, None);
    assert_eq!(everyone[0].id, "C03example");
    let sales: Vec<_> = dir
        .members("sellers@example.com")
        .try_concat()
        .await
        .unwrap();
    let statuses: Vec<_> = sales.iter().map(|m| m.status.as_str()).collect();
    assert_eq!(statuses, vec!["ACTIVE", "SUSPENDED", "ARCHIVED"]);

    let err = dir
        .members("nope@example.com")
        .try_concat()
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn person_lookup_flattens_nested_groups_through_a_cycle() {
    let mut env = env(|_| {}).await;
    let dir = env.sa();
    let erin = dir.person("erin@example.com").await.unwrap().unwrap();
    assert_eq!(erin.person.id, "100000000000000000005");
    let groups: Vec<_> = erin.groups.iter().map(|g| g.email.as_str()).collect();
    assert_eq!(
        groups,
        vec![
            "backend@example.com",
            "eng@example.com",
            "everyone@example.com",
            "platform@example.com"
        ]
    );
    // users.get + groups.list for erin, then one per group walked: backend,
    // everyone, eng, platform (platform's parent backend is already known).
    let c = env.emu.counts();
    assert_eq!((c.users_get, c.groups_list), (1, 5));
    // groups.list?userKey must not carry customer= (Google answers 400).
    let log = env.emu.requests();
    let by_user: Vec<_> = log.iter().filter(|l| l.contains("userKey=")).collect();
    assert!(!by_user.is_empty());
    assert!(
        by_user.iter().all(|l| !l.contains("customer=")),
        "{by_user:?}"
    );

    // By alias and by id.
    let grace = dir.person("g.hopper@example.com").await.unwrap().unwrap();
    assert_eq!(grace.person.primary_email, "grace@example.com");
    let by_id = dir.person("100000000000000000002").await.unwrap().unwrap();
    assert_eq!(by_id.person.primary_email, "bob@example.com");
    assert!(dir.person("ghost@example.com").await.unwrap().is_none());

    env.settings.nested_groups = false;
    let flat = env.sa().person("erin@example.com").await.unwrap().unwrap();
    let groups: Vec<_> = flat.groups.iter().map(|g| g.email.as_str()).collect();
    assert_eq!(groups, vec!["backend@example.com", "everyone@example.com"]);
}

#[tokio::test]
async fn snapshot_flattens_every_group_and_reports_the_cycle() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    let snap = snapshot(&dir, 4).await.unwrap();
    assert_eq!(snap.people.len(), 8);
    assert_eq!(snap.groups.len(), 6);
    let members = |email: &str| -> Vec<String> {
        let g = snap.groups.iter().position(|g| g.email == email).unwrap();
        let mut v: Vec<_> = snap
            .members_of(g)
            .map(|p| p.primary_email.clone())
            .collect();
        v.sort();
        v
    };
    let eng_cycle = vec![
        "alice@example.com",
        "erin@example.com",
        "frank@example.com",
        "grace@example.com",
    ];
    assert_eq!(members("eng@example.com"), eng_cycle);
    assert_eq!(members("backend@example.com"), eng_cycle);
    assert_eq!(members("everyone@example.com").len(), 8);
    assert_eq!(members("it-admins@example.com"), vec!["alice@example.com"]);
    let cyclic: Vec<_> = snap.cyclic_groups.iter().map(String::as_str).collect();
    assert_eq!(
        cyclic,
        vec![
            "backend@example.com",
            "eng@example.com",
            "platform@example.com"
        ]
    );
    let c = env.emu.counts();
    assert_eq!(c.members_list, 6, "one members page per group");
    assert_eq!(c.users_get, 0);
}

#[tokio::test]
async fn service_account_token_is_cached_until_shortly_before_expiry() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    all_people(&dir).await.unwrap();
    all_groups(&dir).await;
    assert_eq!(env.emu.counts().token_jwt, 1);
    assert_eq!(dir.token_requests(), 1);
    env.clock.advance(3000);
    all_groups(&dir).await;
    assert_eq!(env.emu.counts().token_jwt, 1, "still valid at +3000 s");
    env.clock.advance(3599 - 3000 - 30);
    all_groups(&dir).await;
    assert_eq!(env.emu.counts().token_jwt, 2, "refreshed within the margin");
}

#[tokio::test]
async fn api_401_mints_a_new_token_once_then_succeeds() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    all_groups(&dir).await;
    env.emu.revoke_access_tokens();
    let groups = all_groups(&dir).await;
    assert_eq!(groups.len(), 6);
    assert_eq!(env.emu.counts().token_jwt, 2);
}

#[tokio::test]
async fn token_endpoint_checks_signature_subject_and_delegated_scopes() {
    // A key the emulator does not know (same account name, other key pair).
    let env1 = env(|_| {}).await;
    let err = all_groups_err(&env1.sa_client("alice@example.com", other_key_json(), 3)).await;
    match &err {
        DirectoryError::TokenRefused {
            error, description, ..
        } => {
            assert_eq!(error, "invalid_grant");
            assert!(description.contains("Signature"), "{description}");
        }
        e => panic!("{e}"),
    }

    let err = all_groups_err(&env1.sa_client("ghost@example.com", sa_key_json(), 3)).await;
    let msg = err.to_string();
    assert!(
        msg.contains("invalid_grant") && msg.contains("admin_subject ghost@example.com"),
        "{msg}"
    );

    // Delegation for the user scope only: unauthorized_client, fix names the DWD step.
    let env2 = env(|seed| seed.service_accounts[0].scopes = vec![SCOPE_USER_READONLY.into()]).await;
    let err = all_groups_err(&env2.sa()).await;
    let msg = err.to_string();
    assert!(msg.contains("unauthorized_client"), "{msg}");
    assert!(msg.contains("Domain-wide delegation"), "{msg}");
    assert!(msg.contains(SA_CLIENT_ID), "{msg}");
    assert!(
        msg.contains(SCOPE_USER_READONLY) && msg.contains(SCOPE_GROUP_READONLY),
        "{msg}"
    );
}

async fn all_groups_err(dir: &dyn Directory) -> DirectoryError {
    dir.groups().try_concat().await.unwrap_err()
}

#[tokio::test]
async fn non_admin_subject_gets_403_naming_the_fix() {
    let env = env(|_| {}).await;
    let dir = env.sa_client("bob@example.com", sa_key_json(), 3);
    let err = all_people(&dir).await.unwrap_err();
    match &err {
        DirectoryError::Forbidden { method, reason, .. } => {
            assert_eq!(*method, "users.list");
            assert_eq!(reason, "forbidden");
        }
        e => panic!("{e}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(SCOPE_USER_READONLY), "{msg}");
    assert!(msg.contains("Domain-wide delegation"), "{msg}");
    assert!(msg.contains("admin_subject bob@example.com"), "{msg}");
    assert_eq!(
        env.emu.counts().users_list,
        1,
        "403 forbidden is not retried"
    );
}

#[tokio::test]
async fn oauth_mode_uses_the_stored_refresh_token_and_caches_access() {
    let env = env(|_| {}).await;
    let dir = env.oauth_client(env.store_with(Some("1//sandbox-alice-refresh")));
    assert_eq!(all_people(&dir).await.unwrap().len(), 8);
    assert_eq!(all_groups(&dir).await.len(), 6);
    let c = env.emu.counts();
    assert_eq!((c.token_refresh, c.token_jwt), (1, 0));
    env.clock.advance(3599);
    all_groups(&dir).await;
    assert_eq!(env.emu.counts().token_refresh, 2, "expired token refreshed");
}

#[tokio::test]
async fn oauth_mode_errors_say_reconnect() {
    let env = env(|_| {}).await;
    let err = all_people(&env.oauth_client(env.store_with(None)))
        .await
        .unwrap_err();
    assert!(matches!(err, DirectoryError::NotConnected));
    assert!(err.to_string().contains("/_usher/admin/connect/google"));

    env.emu.revoke_refresh_tokens();
    let err = all_people(&env.oauth_client(env.store_with(Some("1//sandbox-alice-refresh"))))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("invalid_grant") && msg.contains("/_usher/admin/connect/google"),
        "{msg}"
    );

    // A non-admin consented: 403 forbidden, reconnect as an admin.
    let env = self::env(|_| {}).await;
    let err = all_people(&env.oauth_client(env.store_with(Some("1//sandbox-bob-refresh"))))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DirectoryError::Forbidden { .. }), "{msg}");
    assert!(
        msg.contains("/_usher/admin/connect/google") && msg.contains(SCOPE_USER_READONLY),
        "{msg}"
    );

    // Consent granted only the user scope: groups fail naming the group scope.
    let dir = env.oauth_client(env.store_with(Some("1//sandbox-alice-users-only")));
    assert_eq!(all_people(&dir).await.unwrap().len(), 8);
    let msg = all_groups_err(&dir).await.to_string();
    assert!(
        msg.contains("insufficientPermissions") && msg.contains(SCOPE_GROUP_READONLY),
        "{msg}"
    );
}

#[tokio::test]
async fn consent_url_and_code_exchange_yield_a_working_refresh_token() {
    let env = env(|_| {}).await;
    let auth: url::Url = "https://accounts.google.com/o/oauth2/v2/auth"
        .parse()
        .unwrap();
    let redirect = "https://jira.example.com/_usher/admin/connect/google";
    let url = consent_url(&auth, OAUTH_CLIENT, redirect, "st4te");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["scope"], SCOPES.join(" "));
    assert_eq!(q["redirect_uri"], redirect);
    assert_eq!(q["state"], "st4te");

    use crate::sandbox::google_oidc::ConsentIssuer as _;
    let code = env
        .emu
        .issue_consent_code(OAUTH_CLIENT, "alice@example.com", &SCOPES, redirect);
    let http = reqwest::Client::new();
    let secret = Secret::new(OAUTH_SECRET);
    let refresh = exchange_code(
        &http,
        &env.settings.token_url,
        OAUTH_CLIENT,
        &secret,
        &code,
        redirect,
    )
    .await
    .unwrap();
    let store = env.store_with(None);
    store.save(&refresh).unwrap();
    let dir = env.oauth_client(store);
    assert_eq!(all_groups(&dir).await.len(), 6);
    // Codes are single-use.
    let again = exchange_code(
        &http,
        &env.settings.token_url,
        OAUTH_CLIENT,
        &secret,
        &code,
        redirect,
    )
    .await;
    assert!(matches!(again, Err(DirectoryError::TokenRefused { .. })));
}

#[tokio::test]
async fn every_retryable_answer_is_retried_with_backoff() {
    for fault in [
        GoogleFault::TooManyRequests,
        GoogleFault::BackendError,
        GoogleFault::RateLimitExceeded,
        GoogleFault::UserRateLimitExceeded,
    ] {
        let env = env(|_| {}).await;
        let dir = env.sa();
        env.emu.inject(fault, 2);
        let groups = all_groups(&dir).await;
        assert_eq!(groups.len(), 6, "{fault:?}");
        assert_eq!(
            env.emu.counts().groups_list,
            4,
            "{fault:?}: 2 failures + 2 pages"
        );
        let slept = env.sleeper.slept();
        assert_eq!(slept.len(), 2, "{fault:?}");
        assert!(
            slept[0] <= Duration::from_secs(1) && slept[1] <= Duration::from_secs(2),
            "{slept:?}"
        );
    }
}

#[tokio::test]
async fn retries_are_bounded_and_honour_retry_after() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    env.emu.inject(GoogleFault::RateLimitExceeded, 20);
    let err = all_groups_err(&dir).await;
    assert!(
        matches!(err, DirectoryError::RateLimited { attempts: 6, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rate_limit_per_minute"));
    assert_eq!(env.emu.counts().groups_list, 6);

    let env = self::env(|_| {}).await;
    let dir = env.sa();
    env.emu.inject(GoogleFault::BackendError, 20);
    let err = all_groups_err(&dir).await;
    assert!(
        matches!(err, DirectoryError::Unavailable { attempts: 6, .. }),
        "{err}"
    );
    assert!(err.is_transient());

    let env = self::env(|_| {}).await;
    let dir = env.sa();
    env.emu.faults.set(crate::sandbox::faults::FaultPlan {
        rate_limited: 1,
        retry_after_secs: 7,
        ..Default::default()
    });
    assert_eq!(all_groups(&dir).await.len(), 6);
    assert_eq!(env.sleeper.slept(), vec![Duration::from_secs(7)]);
}

#[tokio::test]
async fn garbage_answers_are_protocol_errors_not_panics() {
    for fault in [GoogleFault::Garbage, GoogleFault::WrongShape] {
        let env = env(|_| {}).await;
        let dir = env.sa();
        env.emu.inject(fault, 1);
        let err = all_people(&dir).await.unwrap_err();
        assert!(
            matches!(
                err,
                DirectoryError::Protocol {
                    method: "users.list",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(env.emu.counts().users_list, 1, "not retried");
    }
    let env = env(|_| {}).await;
    env.emu.inject(GoogleFault::Garbage, 1);
    let err = env.sa().person("alice@example.com").await.unwrap_err();
    assert!(matches!(err, DirectoryError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_api_is_unavailable_after_retries() {
    let mut env = env(|_| {}).await;
    // The token endpoint works; the API base points at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.settings.api_url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let err = all_people(&env.sa()).await.unwrap_err();
    assert!(
        matches!(err, DirectoryError::Unavailable { attempts: 6, .. }),
        "{err}"
    );
    assert_eq!(env.sleeper.slept().len(), 5);
}

#[tokio::test]
async fn client_side_rate_limit_spaces_requests() {
    let mut env = env(|_| {}).await;
    env.settings.rate_limit_per_minute = 60; // one a second, burst of one
    let dir = env.sa();
    all_groups(&dir).await; // two pages
    let slept = env.sleeper.slept();
    assert_eq!(slept.len(), 1, "{slept:?}");
    assert!(
        slept[0] > Duration::from_millis(900) && slept[0] <= Duration::from_secs(1),
        "{slept:?}"
    );
}

#[tokio::test]
async fn suspension_shows_up_in_the_next_lookup() {
    let env = env(|_| {}).await;
    let dir = env.sa();
    let bob = dir.person("bob@example.com").await.unwrap().unwrap();
    assert!(bob.person.is_active());
    assert!(env.emu.set_suspended("bob@example.com", true));
    assert!(env.emu.user("bob@example.com").unwrap().suspended);
    let bob = dir.person("bob@example.com").await.unwrap().unwrap();
    assert!(bob.person.suspended && !bob.person.is_active());
    assert_eq!(env.emu.sizes(), (8, 6));
}

#[tokio::test]
async fn token_endpoint_outage_is_retried_then_reported() {
    let mut env = env(|_| {}).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.settings.token_url = format!("http://127.0.0.1:{port}/token").parse().unwrap();
    let err = all_people(&env.sa()).await.unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::Unavailable {
                method: "token",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(env.sleeper.slept().len(), 5, "bounded retries");
    assert_eq!(env.emu.counts().users_list, 0);
}

#[test]
fn service_account_key_errors_name_the_fix_and_debug_hides_the_key() {
    for bad in [
        "not json",
        r#"{"type":"authorized_user","client_email":"a","private_key":"x"}"#,
        r#"{"type":"service_account","client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
    ] {
        let err = ServiceAccountKey::from_json(bad).unwrap_err();
        assert!(matches!(err, DirectoryError::Key { .. }), "{err}");
        assert!(err.to_string().contains("service_account_key"), "{err}");
    }
    let key = ServiceAccountKey::from_json(sa_key_json()).unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains(SA_EMAIL));
    assert!(!shown.contains("PRIVATE"), "{shown}");
}

#[tokio::test]
async fn from_settings_builds_both_auth_modes() {
    use crate::config::{IdpKind, IdpSettings, SessionSettings, SessionStoreKind};
    let env = env(|_| {}).await;
    let idp = IdpSettings {
        name: "google".into(),
        kind: IdpKind::Google,
        issuer: "https://accounts.google.com".parse().unwrap(),
        client_id: OAUTH_CLIENT.into(),
        client_secret: Secret::new(OAUTH_SECRET),
        allowed_domains: vec!["example.com".into()],
        allowed_groups: vec![],
        groups_claim: "groups".into(),
        scim_token: None,
        revoke_on_logout: false,
        scopes: vec![],
        username: None,
        groups: None,
    };
    let session = SessionSettings {
        secret: Secret::new("s".repeat(40)),
        previous_secrets: vec![],
        cookie_name: "_usher".into(),
        ttl: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
        revalidate_after: Duration::from_secs(300),
        store: SessionStoreKind::Cookie,
        redis_url: None,
    };
    let state = env.tmp.path().join("state");
    let mut settings = env.settings.clone();
    settings.auth = DirectoryAuth::ServiceAccount {
        key: Secret::new(sa_key_json()),
        admin_subject: "alice@example.com".into(),
    };
    let dir = GoogleDirectory::from_settings(&settings, &idp, &session, &state).unwrap();
    assert_eq!(dir.source(), "google");
    assert_eq!(all_groups(&dir).await.len(), 6);

    settings.auth = DirectoryAuth::OAuth;
    let dir = GoogleDirectory::from_settings(&settings, &idp, &session, &state).unwrap();
    assert!(matches!(
        all_groups_err(&dir).await,
        DirectoryError::NotConnected
    ));
    // The consent endpoint saves into the same place from_settings reads.
    RefreshTokenStore::new(&state, &session.secret, &[])
        .save(&Secret::new("1//sandbox-alice-refresh"))
        .unwrap();
    assert_eq!(all_groups(&dir).await.len(), 6);

    settings.auth = DirectoryAuth::ServiceAccount {
        key: Secret::new("{}"),
        admin_subject: "alice@example.com".into(),
    };
    assert!(matches!(
        GoogleDirectory::from_settings(&settings, &idp, &session, &state),
        Err(DirectoryError::Key { .. })
    ));
}

#[tokio::test]
async fn errors_never_carry_tokens_or_secrets() {
    let env = env(|_| {}).await;
    env.emu.revoke_refresh_tokens();
    let dir = env.oauth_client(env.store_with(Some("1//sandbox-alice-refresh")));
    let err = all_people(&dir).await.unwrap_err();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("sandbox-alice-refresh"), "{shown}");
        assert!(!shown.contains(OAUTH_SECRET), "{shown}");
    }
    // A 403 after a successful token: the access token is not in the message.
    let env = self::env(|_| {}).await;
    let dir = env.sa_client("bob@example.com", sa_key_json(), 3);
    let err = all_people(&dir).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("ya29."), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[tokio::test]
async fn persistent_401_names_the_fix_for_each_mode() {
    let env = env(|_| {}).await;
    let dir = env.oauth_client(env.store_with(Some("1//sandbox-alice-refresh")));
    env.emu.inject(GoogleFault::InvalidCredentials, 2);
    let err = all_people(&dir).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("reconnect at /_usher/admin/connect/google"),
        "{err}"
    );
    assert_eq!(
        env.emu.counts().token_refresh,
        2,
        "one fresh token was tried"
    );

    let dir = env.sa();
    env.emu.inject(GoogleFault::InvalidCredentials, 2);
    let err = all_people(&dir).await.unwrap_err();
    assert!(matches!(err, DirectoryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains(SA_EMAIL), "{err}");
    // One 401 alone is absorbed by the fresh token.
    env.emu.inject(GoogleFault::InvalidCredentials, 1);
    assert_eq!(all_people(&dir).await.unwrap().len(), 8);
}
