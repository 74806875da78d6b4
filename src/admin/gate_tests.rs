//! The admin flag through the sign-in machinery: `SignIn::revalidate` re-decides it
//! from the IdP groups the admission step read, keeps it when the source was not
//! asked, and ends the session when the person is no longer allowed.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::auth::flow::{Admission, AdmitFuture, RevalidateFuture, SignIn, Verdict};
use crate::auth::oidc::Identity;
use crate::config::{self, StaticEnv};
use crate::session::Session;

/// An admission whose revalidation answer the test sets.
struct Scripted(Mutex<Verdict>);

impl Admission for Scripted {
    fn admit<'a>(&'a self, _identity: &'a Identity, _now: SystemTime) -> AdmitFuture<'a> {
        Box::pin(async {
            Err(crate::auth::error::AuthError::new(
                crate::auth::error::DenialReason::Misconfigured,
                "not used",
            ))
        })
    }

    fn revalidate<'a>(&'a self, _session: &'a Session) -> RevalidateFuture<'a> {
        let v = self
            .0
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|_| Verdict::from(false));
        Box::pin(async move { v })
    }
}

async fn sign_in() -> (SignIn, Arc<Scripted>, tempfile::TempDir) {
    let tmp = crate::test_support::temp_dir("admin-gate");
    let dir = tmp.path().join("state");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://jira.test"
[session]
secret = "0123456789abcdef0123456789abcdef-gate-tests"
[[idp]]
name = "google"
kind = "google"
issuer = "http://127.0.0.1:9/"
client_id = "c"
client_secret = "s"
allowed_domains = ["example.com"]
[state]
dir = "{}"
[[upstream]]
name = "jira"
host = "jira.test"
url = "http://127.0.0.1:9"
[admin]
users = ["boss@example.com"]
groups = ["it-admins@example.com"]
"#,
        dir.display()
    );
    let settings = config::parse(&text, "t.toml", &StaticEnv::new()).unwrap();
    let mut s = SignIn::build(&settings).await.unwrap();
    let scripted = Arc::new(Scripted(Mutex::new(Verdict::from(true))));
    s.set_admission(scripted.clone());
    (s, scripted, tmp)
}

#[tokio::test]
async fn revalidation_re_decides_admin_access_from_the_idp_groups() {
    let (s, scripted, _tmp) = sign_in().await;
    let now = SystemTime::now();
    let mut ann = Session::new("google", "1", "ann@example.com", "ann", now);
    let set = |v: Verdict| *scripted.0.lock().unwrap() = v;

    // Added to the admin group in the directory: admin from the next re-check.
    set(Verdict {
        keep: true,
        idp_groups: Some(vec![
            "IT-Admins@example.com".into(),
            "eng@example.com".into(),
        ]),
    });
    assert!(s.revalidate(&mut ann, now).await.is_some());
    assert!(ann.admin);
    // Source not asked (cached verdict): the flag stays as it was.
    set(Verdict::from(true));
    assert!(s.revalidate(&mut ann, now).await.is_some());
    assert!(ann.admin);
    // Removed from the group: no longer an admin.
    set(Verdict {
        keep: true,
        idp_groups: Some(vec!["eng@example.com".into()]),
    });
    assert!(s.revalidate(&mut ann, now).await.is_some());
    assert!(!ann.admin);
    // [admin] users needs no group.
    let mut boss = Session::new("google", "2", "Boss@example.com", "boss", now);
    set(Verdict {
        keep: true,
        idp_groups: Some(vec![]),
    });
    assert!(s.revalidate(&mut boss, now).await.is_some());
    assert!(boss.admin);
    // No longer allowed at all: the session ends.
    set(Verdict::from(false));
    assert!(s.revalidate(&mut boss, now).await.is_none());
}
