//! Tests of the company seed: the demo company's shape, consistency of the
//! conversions into every emulator's seed, and clear errors for bad seeds.

use super::*;
use crate::directory::google_auth::SystemClock;
use crate::sandbox::google_directory::{GoogleDirectoryEmulator, MemberKey};
use std::sync::Arc;

fn fake_account(c: &Company) -> SeedServiceAccount {
    SeedServiceAccount {
        client_email: c.service_account.client_email.clone(),
        client_id: c.service_account.client_id.clone(),
        public_key_der: String::new(),
        scopes: Vec::new(),
    }
}

fn demo() -> Company {
    Company::demo().unwrap()
}

/// The demo seed as JSON, changed by `edit`, parsed again.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Company, CompanyError> {
    let mut v: serde_json::Value = serde_json::from_str(DEMO_SEED).unwrap();
    edit(&mut v);
    Company::from_json(&v.to_string(), "seed.json", None)
}

#[test]
fn every_person_is_the_same_in_oidc_directory_and_atlassian() {
    let c = demo();
    let oidc = c.oidc_config(&["http://127.0.0.1:9999/_usher/callback".into()]);
    let dir = c.directory_seed(fake_account(&c));
    let fixture = c.fixture();
    assert_eq!(oidc.people.len(), c.people.len());
    assert_eq!(dir.users.len(), c.people.len());
    for p in &c.people {
        let o = oidc.people.iter().find(|o| o.email == p.email).unwrap();
        let d = dir
            .users
            .iter()
            .find(|d| d.primary_email == p.email)
            .unwrap();
        assert_eq!(o.sub, p.id, "OIDC sub of {}", p.email);
        assert_eq!(d.id, p.id, "directory id of {}", p.email);
        assert_eq!(
            (&o.given_name, &o.family_name),
            (&d.given_name, &d.family_name)
        );
        assert_eq!(o.hd.as_deref(), Some(c.domain.as_str()));
        assert!(o.email_verified);
        assert_eq!(d.suspended, p.suspended);
        assert_eq!(d.aliases, p.aliases);
        if let Some(u) = &p.atlassian_username {
            let (_, email, display) = fixture.users.iter().find(|(n, _, _)| n == u).unwrap();
            assert_eq!(email, &p.email);
            assert_eq!(display, &p.display_name());
        }
    }
    // The directory emulator accepts the seed (every member resolves).
    let emu = GoogleDirectoryEmulator::new(dir, Arc::new(SystemClock)).unwrap();
    assert_eq!(emu.sizes(), (c.people.len(), c.groups.len()));
    assert!(emu.user("erin@example.com").is_some(), "aliases resolve");
    // Seed redirect URIs plus the extra callback and its directory-consent sibling.
    assert_eq!(
        oidc.redirect_uris.len(),
        c.oauth_client.redirect_uris.len() + 2
    );
    assert!(oidc
        .redirect_uris
        .iter()
        .any(|u| u.ends_with("/_usher/admin/connect/google")));
    assert_eq!(oidc.client_id, c.oauth_client.client_id);
}

#[test]
fn only_addresses_in_the_domain_get_hd() {
    let c = edited(|v| {
        v["people"][1]["email"] = "bob@gmail.com".into();
        v["groups"][2]["members"] = serde_json::json!(["bob@gmail.com"]);
    })
    .unwrap();
    let people = c.oidc_people();
    assert_eq!(people[0].hd.as_deref(), Some("example.com"));
    assert_eq!(people[1].email, "bob@gmail.com");
    assert_eq!(people[1].hd, None);
}

#[test]
fn nested_groups_are_preserved() {
    let c = demo();
    let dir = c.directory_seed(fake_account(&c));
    let eng = dir
        .groups
        .iter()
        .find(|g| g.email == "eng@example.com")
        .unwrap();
    let members: Vec<&MemberKey> = eng.members.iter().map(|m| &m.key).collect();
    assert_eq!(
        members,
        [
            &MemberKey::Email("backend@example.com".into()),
            &MemberKey::Email("frontend@example.com".into())
        ]
    );
    let ids: BTreeSet<&str> = dir.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), dir.groups.len(), "group ids are unique");
}

#[test]
fn demo_company_has_the_cases_the_demo_needs() {
    let c = demo();
    assert!(c.people.len() >= 6);
    assert!(c.people.iter().any(|p| p.suspended), "a suspended person");
    // Someone whose existing Atlassian username differs from the email's local part.
    let erin = c
        .people
        .iter()
        .find(|p| p.atlassian_username.is_some())
        .unwrap();
    let local = erin.email.split('@').next().unwrap();
    assert_ne!(erin.atlassian_username.as_deref(), Some(local));
    // Pre-existing Atlassian admin and admin group; the bot can authenticate.
    let jira = c.jira_seed();
    assert!(jira.users.iter().any(|(n, _, _)| n == "admin"));
    assert!(jira.admins.contains(&"admin".to_string()));
    assert!(jira.admins.contains(&c.atlassian.bot.username));
    assert!(jira
        .groups
        .iter()
        .any(|(g, m)| g == "jira-administrators" && m == &["admin".to_string()]));
    assert_eq!(
        jira.basic,
        [(
            c.atlassian.bot.username.clone(),
            c.atlassian.bot.password.clone()
        )]
    );
    assert_eq!(
        jira.bearer,
        [(
            c.atlassian.bot.token.clone(),
            c.atlassian.bot.username.clone()
        )]
    );
    // Every product sees the same pre-existing accounts.
    let fixture_users: Vec<_> = c.fixture().users;
    assert_eq!(c.confluence_seed().users, fixture_users);
    assert_eq!(c.bitbucket_seed().users, fixture_users);
    assert_eq!(c.crowd_seed().users, fixture_users);
    assert_eq!(c.scim_seed().users, fixture_users);
    assert_eq!(c.scim_seed().tokens, vec![c.atlassian.scim.token.clone()]);
    assert_eq!(
        c.crowd_seed().applications,
        [(
            c.atlassian.crowd_application.name.clone(),
            c.atlassian.crowd_application.password.clone()
        )]
    );
    assert!(c.service_account_key().is_none(), "generated at start");
}

fn problem(r: Result<Company, CompanyError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.file, "seed.json");
    e.to_string()
}

#[test]
fn bad_seeds_name_the_file_the_problem_and_the_fix() {
    let msg = problem(Company::from_json(
        "{\n  \"domain\": 3\n}",
        "seed.json",
        None,
    ));
    assert!(
        msg.starts_with("sandbox seed seed.json: is not a valid company seed"),
        "{msg}"
    );
    assert!(msg.contains("line 2"), "{msg}");

    let msg = problem(edited(|v| v["people"][0]["nickname"] = "Al".into()));
    assert!(msg.contains("unknown field `nickname`"), "{msg}");

    let msg = problem(edited(|v| {
        v["groups"][1]["members"][0] = "zed@example.com".into();
    }));
    assert!(
        msg.contains("group backend@example.com: member zed@example.com is neither"),
        "{msg}"
    );

    let msg = problem(edited(|v| {
        v["people"][1]["aliases"] = serde_json::json!(["Alice@example.com"])
    }));
    assert!(
        msg.contains("address Alice@example.com is used twice"),
        "{msg}"
    );

    let msg = problem(edited(|v| {
        v["people"][1]["id"] = v["people"][0]["id"].clone()
    }));
    assert!(msg.contains("is used twice"), "{msg}");

    let msg = problem(edited(|v| {
        v["groups"][2]["members"] = serde_json::json!(["eng@example.com"]);
    }));
    assert!(msg.contains("cycle"), "{msg}");
    assert!(
        msg.contains("eng@example.com -> frontend@example.com -> eng@example.com"),
        "{msg}"
    );

    let msg = problem(edited(|v| {
        v["service_account"]["admin_subject"] = "dave@example.com".into();
    }));
    assert!(
        msg.contains("admin_subject dave@example.com is not an active admin"),
        "{msg}"
    );

    let msg = problem(edited(|v| {
        v["atlassian"]["groups"][0]["members"] = serde_json::json!(["ghost"]);
    }));
    assert!(
        msg.contains("member ghost has no Atlassian account"),
        "{msg}"
    );

    let msg = problem(edited(|v| {
        v["people"][0]["atlassian_username"] = "ADMIN".into();
    }));
    assert!(msg.contains("\"ADMIN\" is empty or used twice"), "{msg}");

    let msg = problem(edited(|v| {
        v["service_account"]["key_file"] = "no-such-key.json".into();
    }));
    assert!(
        msg.contains("key_file no-such-key.json cannot be read"),
        "{msg}"
    );
}

#[test]
fn load_reads_the_key_file_beside_the_seed_and_checks_its_account() {
    let tmp = crate::test_support::temp_dir("company");
    let dir = tmp.path();
    let c = demo();
    let key = crate::sandbox::google_directory::generate_service_account_key(
        &c.service_account.client_email,
        &c.service_account.client_id,
    )
    .unwrap();
    std::fs::write(dir.join("sa.json"), &key).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(DEMO_SEED).unwrap();
    v["service_account"]["key_file"] = "sa.json".into();
    std::fs::write(dir.join("company.json"), v.to_string()).unwrap();
    let loaded = Company::load(&dir.join("company.json")).unwrap();
    let secret = loaded.service_account_key().unwrap();
    let parsed = ServiceAccountKey::from_json(secret.expose()).unwrap();
    assert!(loaded.check_key(&parsed).is_ok());
    assert!(
        !format!("{loaded:?}").contains("PRIVATE KEY"),
        "the key never prints"
    );
    let other = crate::sandbox::google_directory::generate_service_account_key(
        "someone-else@x.iam.gserviceaccount.com",
        "1",
    )
    .unwrap();
    let e = loaded
        .check_key(&ServiceAccountKey::from_json(&other).unwrap())
        .unwrap_err();
    assert!(e
        .to_string()
        .contains("belongs to someone-else@x.iam.gserviceaccount.com"));
    let missing = Company::load(&dir.join("nope.json")).unwrap_err();
    assert!(
        missing.to_string().contains("nope.json: cannot be read"),
        "{missing}"
    );
    tmp.close().unwrap();
}
