//! config/usher.example.toml: it parses with its variables supplied, documents every key
//! the schema knows (with a comment), and reports every unset variable with its line.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::super::raw::SHAPES;
use super::super::*;
use super::{errs_with, ok_with, SECRET};

pub(super) const EXAMPLE: &str = include_str!("../../../config/usher.example.toml");

const SA_KEY: &str = r#"{"type":"service_account","client_email":"usher@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"}"#;

pub(super) fn example_env() -> StaticEnv {
    StaticEnv::new()
        .var("USHER_SESSION_SECRET", SECRET)
        .var(
            "USHER_PREVIOUS_SESSION_SECRET",
            "ffffffffffffffffffffffffffffffff-old",
        )
        .var("USHER_REDIS_URL", "redis://127.0.0.1:6379")
        .var("GOOGLE_CLIENT_ID", "123.apps.googleusercontent.com")
        .var("GOOGLE_CLIENT_SECRET", "google-client-secret")
        .var("SCIM_TOKEN", "scim-token-0123456789")
        .var("PARTNER_CLIENT_ID", "usher")
        .var("GOOGLE_SA_KEY", SA_KEY)
        .var("JIRA_TOKEN", "jira-pat")
        .var("CONFLUENCE_PASSWORD", "conf-pass")
        .var("ATLASSIAN_SCIM_TOKEN", "cloud-token")
        .var("PARTNER_CLIENT_SECRET", "partner-secret")
}

#[test]
fn example_parses_with_its_variables_supplied() {
    let s = ok_with(EXAMPLE, &example_env());
    assert_eq!(s.server.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(s.server.public_url.as_str(), "https://jira.example.com/");
    let tls = s.server.tls.as_ref().unwrap();
    assert_eq!(tls.cert.to_str(), Some("certs/tls.crt"));
    assert_eq!(s.server.admin_listen.unwrap().to_string(), "127.0.0.1:9090");
    assert_eq!(s.server.trusted_proxies.len(), 2);
    assert_eq!(s.server.trusted_proxies[1].to_string(), "127.0.0.1/32");
    assert!(s.server.workers >= 1, "0 resolves to the core count");
    assert_eq!(s.server.max_header_bytes, 16_384);

    assert_eq!(s.session.secret.expose(), SECRET);
    assert_eq!(s.session.previous_secrets.len(), 1);
    assert_eq!(s.session.ttl, Duration::from_secs(12 * 3600));
    assert_eq!(s.session.revalidate_after, Duration::from_secs(300));
    assert_eq!(s.session.store, SessionStoreKind::Cookie);
    assert_eq!(
        s.session.redis_url.as_ref().unwrap().expose(),
        "redis://127.0.0.1:6379"
    );

    assert_eq!(s.idps.len(), 2);
    let google = &s.idps[0];
    assert_eq!(google.kind, IdpKind::Google);
    assert_eq!(google.client_id, "123.apps.googleusercontent.com");
    assert_eq!(google.client_secret.expose(), "google-client-secret");
    assert_eq!(google.allowed_domains, vec!["example.com"]);
    assert_eq!(
        google.scim_token.as_ref().unwrap().expose(),
        "scim-token-0123456789"
    );
    let over = google.groups.as_ref().unwrap();
    assert_eq!(
        over.mode,
        GroupsMode::Manual,
        "override replaces the global on-the-fly"
    );
    assert_eq!(over.map[0].idp, "staff@example.com");
    assert!(over.filter.is_none(), "\"\" means no filter");
    let username = google.username.as_ref().unwrap();
    assert_eq!(
        username
            .rule
            .regex
            .replace("ann@example.com", username.rule.replacement.as_str()),
        "ann"
    );
    let partners = &s.idps[1];
    assert_eq!(partners.kind, IdpKind::Oidc);
    assert_eq!(partners.client_secret.expose(), "partner-secret");
    assert_eq!(partners.groups_claim, "realm_access.roles");
    assert_eq!(partners.scopes, vec!["roles"]);
    assert!(partners.groups.is_none() && partners.username.is_none());

    let dir = s.directory.as_ref().unwrap();
    assert_eq!(dir.idp, "google");
    assert_eq!(dir.domain.as_deref(), Some("example.com"));
    assert_eq!(dir.rate_limit_per_minute, 2400);
    match &dir.auth {
        DirectoryAuth::ServiceAccount { key, admin_subject } => {
            assert_eq!(key.expose(), SA_KEY);
            assert_eq!(admin_subject, "admin@example.com");
        }
        other => panic!("expected a service account, got {other:?}"),
    }

    assert_eq!(s.upstreams.len(), 2);
    let jira = &s.upstreams[0];
    assert_eq!(jira.host, "jira.example.com");
    assert_eq!(jira.targets, vec!["jira"]);
    assert_eq!(
        jira.identity_headers.user.as_ref().unwrap().as_str(),
        "x-forwarded-user"
    );
    assert_eq!(
        jira.assertion_header.as_ref().unwrap().as_str(),
        "x-usher-assertion"
    );
    assert!(jira.passthrough.is_match("/rest/api/2/myself"));
    assert!(jira.public.is_match("/favicon.ico"));
    assert!(!jira.public.is_match("/secure/Dashboard.jspa"));
    assert_eq!(
        jira.ca_file.as_ref().unwrap().to_str(),
        Some("certs/upstream-ca.pem")
    );

    assert_eq!(s.targets.len(), 3);
    match &s.targets[0].auth {
        TargetAuth::Basic { username, password } => {
            assert_eq!(username, "usher-bot");
            assert_eq!(password.expose(), "jira-pat");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.targets[0].directory_id, Some(1));
    assert_eq!(
        s.targets[0].default_project_lead.as_deref(),
        Some("jira-admin")
    );
    assert!(
        matches!(&s.targets[1].auth, TargetAuth::Basic { password, .. } if password.expose() == "conf-pass")
    );
    assert!(
        matches!(&s.targets[2].auth, TargetAuth::Bearer { token } if token.expose() == "cloud-token")
    );
    assert_eq!(s.targets[2].kind, TargetKind::Scim);

    assert_eq!(s.provisioning.protected_users.len(), 3);
    assert!(
        matches!(&s.provisioning.protected_users[2], UserPattern::Regex(r) if r.is_match("svc-ci"))
    );
    assert_eq!(s.provisioning.login.refresh_after, Duration::from_secs(900));
    assert_eq!(s.provisioning.login.on_failure, OnFailure::Deny);

    assert_eq!(s.groups.mode, GroupsMode::OnTheFly);
    assert!(s.groups.filter.as_ref().unwrap().is_match("eng-backend"));
    assert_eq!(
        s.groups.map[0].target,
        vec!["jira-developers", "confluence-users"]
    );

    assert_eq!(s.sync.interval, Some(Duration::from_secs(3600)));
    assert_eq!(s.sync.jitter, Duration::from_secs(300));
    assert_eq!(s.sync.max_deprovision, Limit::Percent(5.0));
    assert_eq!(s.sync.max_group_removals, Limit::Percent(10.0));
    assert!(s.sync.notify_webhook.is_none());
    assert_eq!(s.state.dir.to_str(), Some("./data"));
    assert_eq!(s.admin.users, vec!["it-admin@example.com"]);
}

/// Visits every key of `t` depth-first, into sub-tables and arrays of tables, as
/// `visit(parent schema path, key, child schema path, key span start)`; descends below a
/// key only where `visit` returns true.
fn visit_keys(t: &DeTable, shape: &str, visit: &mut impl FnMut(&str, &str, &str, usize) -> bool) {
    for (k, v) in t.iter() {
        let key = k.get_ref().to_string();
        let child = if shape.is_empty() {
            key.clone()
        } else {
            format!("{shape}.{key}")
        };
        if !visit(shape, &key, &child, k.span().start) {
            continue;
        }
        match v.get_ref() {
            DeValue::Table(sub) => visit_keys(sub, &child, visit),
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let DeValue::Table(sub) = item.get_ref() {
                        visit_keys(sub, &child, visit);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Collects `(schema path, key)` of every key present in `t`.
fn present(t: &DeTable, out: &mut BTreeSet<(String, String)>) {
    visit_keys(t, "", &mut |shape, key, child, _| {
        out.insert((shape.to_string(), key.to_string()));
        SHAPES.iter().any(|s| s.path == child)
    });
}

#[test]
fn example_contains_every_key_of_the_schema() {
    let doc = DeTable::parse(EXAMPLE).unwrap();
    let mut found = BTreeSet::new();
    present(doc.get_ref(), &mut found);
    let mut missing = Vec::new();
    for shape in SHAPES {
        for key in shape.keys {
            if !found.contains(&(shape.path.to_string(), key.to_string())) {
                missing.push(format!("{}.{key}", shape.path));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from usher.example.toml: {missing:?}"
    );
}

fn is_key_line(line: &str) -> bool {
    let l = line.trim_start();
    l.split_once('=').is_some_and(|(k, _)| {
        !k.trim().is_empty()
            && k.trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[test]
fn every_key_of_the_schema_has_a_comment_in_the_example() {
    // A key line is documented when the nearest line above it that is not itself a key
    // line is a comment (so one comment may cover a group of related keys), or is a
    // `[table]` header directly below a comment (the comment documents the block).
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let documented = |line_idx: usize| -> bool {
        let mut i = line_idx;
        while i > 0 {
            i -= 1;
            let l = lines[i].trim();
            if is_key_line(l) {
                continue;
            }
            if l.starts_with('[') && i > 0 {
                return lines[i - 1].trim().starts_with('#');
            }
            return l.starts_with('#');
        }
        false
    };
    let doc = DeTable::parse(EXAMPLE).unwrap();
    let mut spans = Vec::new();
    visit_keys(doc.get_ref(), "", &mut |_, _, child, at| {
        spans.push((child.to_string(), at));
        true
    });
    let mut undocumented = Vec::new();
    for shape in SHAPES.iter().filter(|s| !s.path.is_empty()) {
        for key in shape.keys {
            let full = format!("{}.{key}", shape.path);
            let ok = spans.iter().any(|(path, at)| {
                let line = EXAMPLE[..*at].matches('\n').count();
                *path == full && documented(line)
            });
            if !ok {
                undocumented.push(full);
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "keys without a comment: {undocumented:?}"
    );
}

#[test]
fn example_without_its_variables_reports_each_reference_with_its_line() {
    // Expected: every "${NAME}" and "file:" value in the example, by line and column.
    let mut want = BTreeSet::new();
    for (i, line) in EXAMPLE.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut search = 0;
        while let Some(rel) = [line[search..].find("\"${"), line[search..].find("\"file:")]
            .into_iter()
            .flatten()
            .min()
        {
            let at = search + rel;
            want.insert((i + 1, line[..at].chars().count() + 1));
            search = at + 1;
        }
    }
    assert!(want.len() >= 12, "the example uses references: {want:?}");
    let problems = errs_with(EXAMPLE, &StaticEnv::new());
    let got: BTreeSet<(usize, usize)> = problems
        .iter()
        .map(|p| (p.line.unwrap(), p.column.unwrap()))
        .collect();
    assert_eq!(got, want, "{problems:#?}");
    for p in &problems {
        let line = EXAMPLE.lines().nth(p.line.unwrap() - 1).unwrap();
        let start = line.find("\"${").unwrap();
        let name = &line[start + 3..line[start..].find('}').unwrap() + start];
        assert_eq!(
            p.message,
            format!("environment variable `{name}` is not set")
        );
        assert!(p.fix.contains(name));
    }
}
