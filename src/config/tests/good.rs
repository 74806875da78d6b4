//! Valid configurations: defaults of every optional key, every enum value, references,
//! limits and the public API (`load`, `default_path`, `ConfigErrors`).

use std::time::Duration;

use super::super::*;
use super::{errs, ok, ok_with, MIN, SECRET};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_of_a_minimal_config() {
    let s = ok(MIN);
    assert!(s.source.is_none());
    let sv = &s.server;
    assert!(sv.tls.is_none() && sv.admin_listen.is_none() && sv.trusted_proxies.is_empty());
    assert_eq!(
        sv.workers,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert_eq!(sv.max_connections, 10_000);
    assert_eq!(sv.max_header_bytes, 16_384);
    assert_eq!(sv.header_read_timeout, secs(10));
    assert_eq!(sv.shutdown_grace, secs(30));
    assert_eq!(sv.keepalive_timeout, secs(60));

    let se = &s.session;
    assert_eq!(se.cookie_name, "_usher");
    assert_eq!(
        (se.ttl, se.idle_timeout, se.revalidate_after),
        (secs(43_200), secs(7_200), secs(300))
    );
    assert_eq!(se.store, SessionStoreKind::Cookie);
    assert!(se.previous_secrets.is_empty() && se.redis_url.is_none());

    let idp = &s.idps[0];
    assert_eq!(idp.kind, IdpKind::Google);
    assert_eq!(idp.issuer.as_str(), "https://accounts.google.com/");
    assert_eq!(idp.groups_claim, "groups");
    assert!(idp.scim_token.is_none() && idp.scopes.is_empty() && idp.allowed_groups.is_empty());
    assert!(idp.username.is_none() && idp.groups.is_none());
    assert!(s.directory.is_none());

    let up = &s.upstreams[0];
    assert!(up.targets.is_empty());
    let h = &up.identity_headers;
    assert_eq!(
        h.user.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-user")
    );
    assert_eq!(
        h.email.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-email")
    );
    assert_eq!(
        h.groups.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-groups")
    );
    assert_eq!(
        up.assertion_header.as_ref().map(|h| h.as_str()),
        Some("x-usher-assertion")
    );
    assert!(up.passthrough.is_empty() && up.public.is_empty());
    assert_eq!(
        (up.connect_timeout, up.response_timeout, up.idle_timeout),
        (secs(5), secs(60), secs(90))
    );
    assert_eq!(up.max_idle_per_worker, 256);
    assert!(up.ca_file.is_none());
    assert!(s.targets.is_empty());

    let p = &s.provisioning;
    assert_eq!(p.username.rule.regex.as_str(), "(.*)@.*");
    assert_eq!(p.username.rule.replacement, "$1");
    assert!(p.username.lowercase);
    assert_eq!(p.display_name, "{given_name} {family_name}");
    assert!(p.create_users && p.update_users && p.protected_users.is_empty());
    assert_eq!(p.link_existing, LinkExisting::Email);
    assert!(p.login.enabled);
    assert_eq!(p.login.refresh_after, secs(900));
    assert_eq!(p.login.on_failure, OnFailure::Deny);
    assert_eq!(p.login.timeout, secs(10));

    let g = &s.groups;
    assert_eq!(g.mode, GroupsMode::Manual);
    assert!(g.keep_existing && !g.create_missing && g.filter.is_none() && g.name.is_none());
    assert!(g.map.is_empty() && g.default_new_users.is_empty() && g.default_all_users.is_empty());

    let sy = &s.sync;
    assert_eq!(sy.interval, None);
    assert_eq!(sy.jitter, Duration::ZERO);
    assert_eq!(sy.deprovision, Deprovision::Deactivate);
    assert_eq!(sy.max_deprovision, Limit::Percent(5.0));
    assert_eq!(sy.max_group_removals, Limit::Percent(10.0));
    assert_eq!((sy.max_changes, sy.concurrency), (5000, 8));
    assert!(sy.notify_webhook.is_none());
    assert_eq!(s.state.dir.to_str(), Some("./data"));
    assert!(s.state.redis_url.is_none());
    assert!(s.admin.users.is_empty() && s.admin.groups.is_empty());
}

#[test]
fn directory_defaults() {
    let text = format!("{MIN}\n[directory]\noauth = true\n");
    let s = ok(&text);
    let d = s.directory.unwrap();
    assert_eq!(d.idp, "google", "the only idp is the default");
    assert_eq!(d.customer, "my_customer");
    assert_eq!(d.api_url.as_str(), "https://admin.googleapis.com/");
    assert_eq!(d.token_url.as_str(), "https://oauth2.googleapis.com/token");
    assert!(d.nested_groups && !d.include_suspended && d.users_query.is_empty());
    assert_eq!(d.rate_limit_per_minute, 2400);
    assert!(matches!(d.auth, DirectoryAuth::OAuth));
    assert!(d.domain.is_none());
}

#[test]
fn target_defaults_and_every_kind() {
    for (word, kind) in [
        ("jira", TargetKind::Jira),
        ("confluence", TargetKind::Confluence),
        ("bitbucket", TargetKind::Bitbucket),
        ("crowd", TargetKind::Crowd),
        ("scim", TargetKind::Scim),
    ] {
        let text = format!(
            "{MIN}\n[[target]]\nname = \"t\"\nkind = \"{word}\"\nurl = \"https://t.example.com\"\nauth = {{ token = \"x\" }}\n"
        );
        let s = ok(&text);
        let t = &s.targets[0];
        assert_eq!(t.kind, kind);
        assert_eq!((t.concurrency, t.timeout), (4, secs(30)));
        assert!(
            t.ca_file.is_none() && t.directory_id.is_none() && t.default_project_lead.is_none()
        );
        assert!(matches!(&t.auth, TargetAuth::Bearer { token } if token.expose() == "x"));
    }
}

#[test]
fn every_enum_value_is_accepted() {
    for (word, want) in [
        ("cookie", SessionStoreKind::Cookie),
        ("memory", SessionStoreKind::Memory),
        ("redis", SessionStoreKind::Redis),
    ] {
        let text = MIN.replace(
            "[session]\n",
            &format!("[session]\nstore = \"{word}\"\nredis_url = \"redis://127.0.0.1:6379\"\n"),
        );
        assert_eq!(ok(&text).session.store, want);
    }
    for (word, want) in [("google", IdpKind::Google), ("oidc", IdpKind::Oidc)] {
        let text = MIN.replace(
            "name = \"google\"\n",
            &format!(
                "name = \"google\"\nkind = \"{word}\"\nissuer = \"https://idp.example.com\"\n"
            ),
        );
        assert_eq!(ok(&text).idps[0].kind, want);
    }
    for (word, want) in [
        ("email", LinkExisting::Email),
        ("username", LinkExisting::Username),
        ("never", LinkExisting::Never),
    ] {
        let s = ok(&format!(
            "{MIN}[provisioning]\nlink_existing = \"{word}\"\n"
        ));
        assert_eq!(s.provisioning.link_existing, want);
    }
    for (word, want) in [("deny", OnFailure::Deny), ("allow", OnFailure::Allow)] {
        let s = ok(&format!(
            "{MIN}[provisioning.login]\non_failure = \"{word}\"\n"
        ));
        assert_eq!(s.provisioning.login.on_failure, want);
    }
    for (word, want) in [
        ("manual", GroupsMode::Manual),
        ("on-the-fly", GroupsMode::OnTheFly),
    ] {
        assert_eq!(
            ok(&format!("{MIN}[groups]\nmode = \"{word}\"\n"))
                .groups
                .mode,
            want
        );
    }
    for (word, want) in [
        ("none", Deprovision::None),
        ("deactivate", Deprovision::Deactivate),
        ("remove-groups", Deprovision::RemoveGroups),
    ] {
        assert_eq!(
            ok(&format!("{MIN}[sync]\ndeprovision = \"{word}\"\n"))
                .sync
                .deprovision,
            want
        );
    }
}

#[test]
fn redis_store_falls_back_to_the_state_redis_url() {
    let text = MIN.replace("[session]\n", "[session]\nstore = \"redis\"\n")
        + "[state]\nredis_url = \"rediss://cache:6380\"\n";
    let s = ok(&text);
    assert_eq!(s.session.redis_url.unwrap().expose(), "rediss://cache:6380");
}

#[test]
fn sync_interval_jitter_and_limits() {
    let s = ok(&format!("{MIN}[sync]\ninterval = \"1h\"\n"));
    assert_eq!(s.sync.interval, Some(secs(3600)));
    assert_eq!(
        s.sync.jitter,
        secs(300),
        "a tenth of 1h is 6m, capped at 5m"
    );
    let s = ok(&format!("{MIN}[sync]\ninterval = \"10m\"\n"));
    assert_eq!(s.sync.jitter, secs(60), "a tenth of 10m");
    for zero in ["0", "\"0\"", "\"0s\""] {
        let s = ok(&format!("{MIN}[sync]\ninterval = {zero}\n"));
        assert_eq!(s.sync.interval, None, "{zero}");
        assert_eq!(s.sync.jitter, Duration::ZERO);
    }
    let s = ok(&format!(
        "{MIN}[sync]\nmax_deprovision = 12\nmax_group_removals = \"2.5%\"\njitter = \"30s\"\n"
    ));
    assert_eq!(s.sync.max_deprovision, Limit::Count(12));
    assert_eq!(s.sync.max_group_removals, Limit::Percent(2.5));
    assert_eq!(s.sync.jitter, secs(30));
}

#[test]
fn references_expand_in_any_string() {
    let env = StaticEnv::new()
        .var("HOST", "jira.example.com")
        .var("S", SECRET)
        .file("/run/cid", "from-file\r\n\n");
    let text = MIN
        .replace("host = \"jira.example.com\"", "host = \"${HOST}\"")
        .replace(&format!("secret = \"{SECRET}\""), "secret = \"${S}\"")
        .replace("client_id = \"cid\"", "client_id = \"file:/run/cid\"");
    let s = ok_with(&text, &env);
    assert_eq!(s.upstreams[0].host, "jira.example.com");
    assert_eq!(s.session.secret.expose(), SECRET);
    assert_eq!(
        s.idps[0].client_id, "from-file",
        "trailing newlines trimmed"
    );
}

#[test]
fn regex_fields_are_literal_so_named_groups_work() {
    let text = format!(
        "{MIN}[provisioning]\nusername = {{ regex = \"^(?P<user>[^@]+)@\", replacement = \"${{user}}\", lowercase = false }}\n"
    );
    let s = ok(&text);
    let u = &s.provisioning.username;
    assert!(!u.lowercase);
    assert_eq!(
        u.rule
            .regex
            .replace("Ann@x.com", u.rule.replacement.as_str()),
        "Annx.com"
    );
}

#[test]
fn empty_header_names_turn_headers_off() {
    let text = MIN.replace(
        "url = \"http://127.0.0.1:8080\"\n",
        "url = \"http://127.0.0.1:8080\"\nidentity_headers = { groups = \"\" }\nassertion_header = \"\"\n",
    );
    let s = ok(&text);
    let up = &s.upstreams[0];
    assert!(up.identity_headers.groups.is_none());
    assert_eq!(
        up.identity_headers.user.as_ref().map(|h| h.as_str()),
        Some("x-forwarded-user")
    );
    assert!(up.assertion_header.is_none());
}

#[test]
fn idp_groups_override_inherits_unset_keys() {
    let text = MIN.replace(
        "allowed_domains = [\"example.com\"]\n",
        "allowed_domains = [\"example.com\"]\n[idp.groups]\nkeep_existing = false\n",
    ) + "[groups]\nmode = \"on-the-fly\"\ncreate_missing = true\nfilter = \"^eng-\"\n";
    let s = ok(&text);
    let over = s.idps[0].groups.as_ref().unwrap();
    assert!(!over.keep_existing, "set in the override");
    assert_eq!(over.mode, GroupsMode::OnTheFly, "inherited");
    assert!(over.create_missing, "inherited");
    assert!(over.filter.as_ref().unwrap().is_match("eng-x"));
    assert!(s.groups.keep_existing, "the global value is unchanged");
}

#[test]
fn load_reads_a_file_and_records_its_path() {
    let tmp = crate::test_support::temp_dir("config");
    let dir = tmp.path();
    let path = dir.join("usher.toml");
    std::fs::write(&path, MIN).unwrap();
    let s = load(&path).unwrap();
    assert_eq!(s.source.as_deref(), Some(path.as_path()));
    std::fs::write(&path, MIN.replace("[session]", "[sesion]")).unwrap();
    let e = load(&path).unwrap_err();
    let first = e.iter().next().unwrap();
    assert_eq!(first.origin, path.display().to_string());
    assert!(e.to_string().starts_with(&format!("{}:", path.display())));
    let missing = load(&dir.join("nope.toml")).unwrap_err();
    assert_eq!(missing.len(), 1);
    assert!(missing
        .to_string()
        .contains("cannot read the configuration file"));
    tmp.close().unwrap();
}

#[test]
fn default_path_is_config_usher_toml_unless_overridden() {
    // Never mutate the process environment in tests: check against what it says.
    let want = match std::env::var_os("USHER_CONFIG") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => std::path::PathBuf::from("config/usher.toml"),
    };
    assert_eq!(default_path(), want);
}

#[test]
fn an_empty_file_names_the_required_sections() {
    let problems = errs("");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["server", "session", "idp", "upstream"]);
    assert!(problems
        .iter()
        .all(|p| p.line == Some(1) && p.column == Some(1)));
}
