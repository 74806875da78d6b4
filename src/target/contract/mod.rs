//! The one contract every `Target` must meet, run against each client paired with
//! its product emulator: CRUD, groups, memberships, paging, idempotency, retries of
//! 429/5xx, garbage answers and bad credentials. Test-only; holds no product logic.

pub(crate) mod bitbucket;
pub(crate) mod confluence;
pub(crate) mod crowd;
pub(crate) mod jira;
pub(crate) mod scim;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::http::{RecordingClock, RestClient};
use super::{flavor_of, Cursor, NewUser, Outcome, Target, TargetError, UserUpdate};
use crate::config::{Secret, TargetAuth, TargetKind, TargetSettings};
use crate::sandbox::atlassian::Gate;
use crate::sandbox::faults::FaultPlan;

/// A user as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub email: Option<String>,
    pub display_name: String,
    pub active: bool,
}

/// Looks into an emulator behind the client's back.
pub(crate) trait Inspector: Send + Sync {
    fn user(&self, username: &str) -> Option<Seen>;
    fn members(&self, group: &str) -> BTreeSet<String>;
    fn has_group(&self, group: &str) -> bool;
    fn seed_user(&self, username: &str, email: &str, display: &str);
    fn seed_member(&self, group: &str, username: &str);
    fn gate(&self) -> &Gate;
    /// Whether the account can no longer sign in (the product's meaning of deactivated).
    fn signed_out(&self, username: &str) -> bool;
}

pub(crate) struct Harness {
    pub target: Arc<dyn Target>,
    pub bad_auth: Arc<dyn Target>,
    pub inspector: Arc<dyn Inspector>,
    pub clock: Arc<RecordingClock>,
    /// The page size the target was configured with.
    pub page_size: usize,
}

/// Settings for a target pointing at an emulator.
pub(crate) fn settings(kind: TargetKind, url: &str, auth: TargetAuth) -> TargetSettings {
    TargetSettings {
        name: format!("{kind:?}").to_lowercase(),
        kind,
        url: url::Url::parse(url).unwrap(),
        auth,
        default_project_lead: Some("jira-admin".into()),
        default_component_lead: Some("jira-admin".into()),
        directory_id: None,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

/// The REST client a product's contract `client()` wraps: settings pointing at the
/// emulator, the product's error dialect, and the test's recording clock so retry
/// waits are observed instead of slept.
pub(crate) fn rest_client(
    kind: TargetKind,
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
) -> RestClient {
    RestClient::new(&settings(kind, url, auth), flavor_of(kind))
        .unwrap()
        .with_clock(clock)
}

/// How a product's contract module builds its client: base url, credentials, the
/// shared recording clock and the page size.
pub(crate) type ClientFn = fn(&str, TargetAuth, Arc<RecordingClock>, usize) -> Arc<dyn Target>;

/// Runs the contract against the emulator at `url`: one client with `good`
/// credentials, one with `bad`, both from `client` with page size `page` and sharing
/// a fresh recording clock, so every product is set up the same way.
pub(crate) async fn run_with(
    client: ClientFn,
    url: &str,
    (good, bad): (TargetAuth, TargetAuth),
    inspector: Arc<dyn Inspector>,
    page: usize,
) {
    let clock = Arc::new(RecordingClock::default());
    run(Harness {
        target: client(url, good, clock.clone(), page),
        bad_auth: client(url, bad, clock.clone(), page),
        inspector,
        clock,
        page_size: page,
    })
    .await;
}

pub(crate) fn basic(user: &str, password: &str) -> TargetAuth {
    TargetAuth::Basic {
        username: user.into(),
        password: Secret::new(password),
    }
}

pub(crate) fn bearer(token: &str) -> TargetAuth {
    TargetAuth::Bearer {
        token: Secret::new(token),
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        display_name: format!("{} Tester", name.to_uppercase()),
        given_name: None,
        family_name: None,
    }
}

async fn all_users(t: &dyn Target) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = t.list_users_page(cursor.as_ref()).await.unwrap();
        pages += 1;
        out.extend(page.items.into_iter().map(|u| u.username));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return (out, pages),
        }
        assert!(pages < 1000, "endless user listing");
    }
}

async fn all_members(t: &dyn Target, group: &str) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = t.list_members_page(group, cursor.as_ref()).await.unwrap();
        pages += 1;
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return (out, pages),
        }
        assert!(pages < 1000, "endless member listing");
    }
}

async fn all_groups(t: &dyn Target) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..1000 {
        let page = t.list_groups_page(cursor.as_ref()).await.unwrap();
        out.extend(page.items.into_iter().map(|g| g.name));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("endless group listing");
}

/// The shared contract. Every step asserts on the client's answer and on the
/// emulator's state, so a client that only pretends fails.
pub(crate) async fn run(h: Harness) {
    let t = h.target.as_ref();
    let caps = t.capabilities();
    let i = h.inspector.as_ref();

    // Create and read back.
    let alice = new_user("alice");
    let created = t.create_user(&alice).await.unwrap();
    assert_eq!(created.username, "alice");
    assert_eq!(created.email.as_deref(), Some("alice@example.com"));
    assert!(created.active);
    let seen = i.user("alice").expect("emulator has alice");
    assert_eq!(seen.email.as_deref(), Some("alice@example.com"));
    assert_eq!(seen.display_name, "ALICE Tester");

    // Futures are Send: the planner fans calls out on spawned tasks.
    let shared = h.target.clone();
    let spawned = tokio::spawn(async move { shared.get_user("alice").await });
    assert!(spawned.await.unwrap().unwrap().is_some());
    let got = t.get_user("alice").await.unwrap().expect("get alice");
    assert_eq!(got.username, "alice");
    assert_eq!(got.display_name, "ALICE Tester");
    assert!(t.get_user("nobody-here").await.unwrap().is_none());
    let by_mail = t.find_user_by_email("ALICE@example.com").await.unwrap();
    assert_eq!(by_mail.map(|u| u.username).as_deref(), Some("alice"));
    assert!(t
        .find_user_by_email("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    // Re-creating a user is a conflict (adopting an account is a policy decision).
    let again = t.create_user(&alice).await.unwrap_err();
    assert!(matches!(again, TargetError::Conflict { .. }), "{again:?}");

    // Update.
    let update = UserUpdate {
        email: caps
            .can_update_email
            .then(|| "alice.new@example.com".to_string()),
        display_name: caps
            .can_update_display_name
            .then(|| "Alice Renamed".to_string()),
        new_username: None,
    };
    if !update.is_empty() {
        let updated = t.update_user("alice", &update).await.unwrap();
        let seen = i.user("alice").unwrap();
        if caps.can_update_email {
            assert_eq!(seen.email.as_deref(), Some("alice.new@example.com"));
            assert_eq!(updated.email.as_deref(), Some("alice.new@example.com"));
        }
        if caps.can_update_display_name {
            assert_eq!(seen.display_name, "Alice Renamed");
        }
    }

    // Groups: create (idempotent), list.
    assert_eq!(t.create_group("team-a").await.unwrap(), Outcome::Changed);
    assert_eq!(t.create_group("team-a").await.unwrap(), Outcome::Unchanged);
    assert!(i.has_group("team-a"));
    assert!(all_groups(t).await.contains("team-a"));

    // Memberships: add (idempotent), list, remove (idempotent).
    assert_eq!(
        t.add_member("team-a", "alice").await.unwrap(),
        Outcome::Changed
    );
    assert_eq!(
        t.add_member("team-a", "alice").await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(i.members("team-a"), BTreeSet::from(["alice".to_string()]));
    assert_eq!(all_members(t, "team-a").await.0, vec!["alice".to_string()]);
    assert!(t
        .user_groups("alice")
        .await
        .unwrap()
        .contains(&"team-a".to_string()));
    let err = t.user_groups("nobody-here").await.unwrap_err();
    assert!(matches!(err, TargetError::NotFound { .. }), "{err:?}");
    assert_eq!(
        t.remove_member("team-a", "alice").await.unwrap(),
        Outcome::Changed
    );
    assert_eq!(
        t.remove_member("team-a", "alice").await.unwrap(),
        Outcome::Unchanged
    );
    assert!(i.members("team-a").is_empty());
    assert!(all_members(t, "team-a").await.0.is_empty());
    assert!(!t
        .user_groups("alice")
        .await
        .unwrap()
        .contains(&"team-a".to_string()));

    // Deactivate / reactivate (Bitbucket: the documented licence + groups equivalent).
    t.add_member("team-a", "alice").await.unwrap();
    assert_eq!(t.deactivate_user("alice").await.unwrap(), Outcome::Changed);
    assert!(i.signed_out("alice"));
    assert_eq!(
        t.deactivate_user("alice").await.unwrap(),
        Outcome::Unchanged
    );
    if caps.can_deactivate {
        assert!(!t.get_user("alice").await.unwrap().unwrap().active);
        assert!(!i.user("alice").unwrap().active);
    } else {
        assert!(
            i.members("team-a").is_empty(),
            "groups stripped on deactivation"
        );
    }
    assert_eq!(t.reactivate_user("alice").await.unwrap(), Outcome::Changed);
    assert!(!i.signed_out("alice"));
    assert!(t.get_user("alice").await.unwrap().unwrap().active);
    assert_eq!(
        t.reactivate_user("alice").await.unwrap(),
        Outcome::Unchanged
    );

    // Paging over more than one page, users and members.
    let n = h.page_size * 2 + 1;
    t.create_group("paged").await.unwrap();
    for k in 0..n {
        let name = format!("pager{k:03}");
        i.seed_user(&name, &format!("{name}@example.com"), &format!("Pager {k}"));
        i.seed_member("paged", &name);
    }
    let (users, pages) = all_users(t).await;
    let unique: BTreeSet<&String> = users.iter().collect();
    assert_eq!(unique.len(), users.len(), "no user listed twice");
    for k in 0..n {
        assert!(
            unique.contains(&format!("pager{k:03}")),
            "pager{k:03} listed"
        );
    }
    assert!(pages >= 3, "{pages} pages for {} users", users.len());
    let (members, pages) = all_members(t, "paged").await;
    assert_eq!(members.iter().collect::<BTreeSet<_>>().len(), n);
    assert_eq!(members.len(), n);
    assert!(pages >= 2, "{pages} member pages");

    // A 429 storm with Retry-After: waited out, each wait at least what was asked.
    h.clock.reset();
    i.gate().faults.set(FaultPlan {
        rate_limited: 3,
        retry_after_secs: 2,
        ..FaultPlan::default()
    });
    assert!(t.get_user("alice").await.unwrap().is_some());
    let sleeps = h.clock.sleeps();
    assert_eq!(sleeps.len(), 3, "{sleeps:?}");
    assert!(
        sleeps.iter().all(|s| *s >= Duration::from_secs(2)),
        "{sleeps:?}"
    );

    // An endless storm ends in RateLimited, bounded.
    h.clock.reset();
    i.gate().faults.set(FaultPlan {
        rate_limited: 100,
        retry_after_secs: 1,
        ..FaultPlan::default()
    });
    let err = t.get_user("alice").await.unwrap_err();
    assert!(
        matches!(
            err,
            TargetError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(h.clock.sleeps().len() < 10);
    i.gate().faults.clear();

    // 5xx are retried with backoff.
    h.clock.reset();
    i.gate().faults.set(FaultPlan {
        server_errors: 2,
        ..FaultPlan::default()
    });
    assert!(t.get_user("alice").await.unwrap().is_some());
    assert_eq!(h.clock.sleeps().len(), 2);
    // Endless 5xx: Unavailable, carrying the product's own words from its error body.
    i.gate().faults.set(FaultPlan {
        server_errors: 100,
        ..FaultPlan::default()
    });
    let err = t.get_user("alice").await.unwrap_err();
    assert!(matches!(err, TargetError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("injected fault"), "{err}");
    i.gate().faults.clear();

    // Garbage answers are a Protocol error, never a panic or a wrong "not found".
    i.gate().garble_next(1);
    let err = t.get_user("alice").await.unwrap_err();
    assert!(matches!(err, TargetError::Protocol { .. }), "{err:?}");
    i.gate().garble_next(1);
    let err = t.list_users_page(None).await.unwrap_err();
    assert!(matches!(err, TargetError::Protocol { .. }), "{err:?}");
    assert!(
        t.get_user("alice").await.unwrap().is_some(),
        "recovers after garbage"
    );

    // Bad credentials: Unauthorized, naming the fix, never the secret.
    let err = h.bad_auth.get_user("alice").await.unwrap_err();
    assert!(matches!(err, TargetError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("check the bot account"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}
