//! Decoders of the policy sections: `[provisioning]` (+ `.login`, username rule, display
//! name template), `[groups]` (+ `[[groups.map]]`, also used for per-IdP overrides),
//! `[sync]` (schedule, safety limits), `[state]` and `[admin]`. All optional with defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::defaults as d;
use super::settings::{
    AdminSettings, Deprovision, GroupMap, GroupsMode, GroupsSettings, Limit, LinkExisting,
    LoginProvisioning, OnFailure, ProvisioningSettings, RewriteRule, StateSettings, SyncSettings,
    UserPattern, UsernameRule,
};
use super::units::parse_duration;
use super::values::{self, each};
use super::walk::{Ctx, Field, Str, Table};

fn dur(text: &str) -> Duration {
    parse_duration(text).unwrap_or_default()
}

/// An optional section: the table, or `Ok(None)` when absent, `Err(())` when not a table.
fn section<'t, 'i>(
    cx: &mut Ctx,
    root: &mut Table<'t, 'i>,
    key: &str,
) -> Result<Option<Table<'t, 'i>>, ()> {
    match root.table(cx, key) {
        Field::Ok(t) => Ok(Some(t)),
        Field::Absent => Ok(None),
        Field::Bad => Err(()),
    }
}

/// The built-in username rule: `(.*)@.*` -> `$1`, lower-cased.
fn default_username() -> Option<UsernameRule> {
    Some(UsernameRule {
        rule: RewriteRule {
            regex: regex::Regex::new(d::USERNAME_REGEX).ok()?,
            replacement: d::USERNAME_REPLACEMENT.to_string(),
        },
        lowercase: true,
    })
}

/// `{ regex, replacement, lowercase }` (lowercase defaults to true).
pub(crate) fn username_rule(cx: &mut Ctx, t: &mut Table) -> Option<UsernameRule> {
    let rule = values::rewrite_rule(cx, t);
    let lowercase = t.boolean(cx, "lowercase").or(true);
    Some(UsernameRule {
        rule: rule?,
        lowercase: lowercase?,
    })
}

/// Placeholders a `display_name` template may use.
const NAME_FIELDS: &[&str] = &["given_name", "family_name", "name", "email", "username"];

fn display_name(cx: &mut Ctx, s: &Str, path: &str) -> Option<String> {
    let mut rest = s.value.as_str();
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            cx.report(
                s.span.clone(),
                path,
                "has a `}` without `{`",
                "write placeholders as {given_name}",
            );
            return None;
        }
        let Some(close) = rest[open..].find('}') else {
            cx.report(
                s.span.clone(),
                path,
                "has a `{` without `}`",
                "write placeholders as {given_name}",
            );
            return None;
        };
        let field = &rest[open + 1..open + close];
        if !NAME_FIELDS.contains(&field) {
            let fix = match super::walk::suggest(field, NAME_FIELDS) {
                Some(b) => format!("did you mean {{{b}}}?"),
                None => format!(
                    "use {}",
                    NAME_FIELDS
                        .iter()
                        .map(|f| format!("{{{f}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            cx.report(
                s.span.clone(),
                path,
                format!("unknown placeholder {{{field}}}"),
                fix,
            );
            return None;
        }
        rest = &rest[open + close + 1..];
    }
    Some(s.value.clone())
}

/// `[provisioning]` and `[provisioning.login]`.
pub(crate) fn provisioning(cx: &mut Ctx, root: &mut Table) -> Option<ProvisioningSettings> {
    let Ok(table) = section(cx, root, "provisioning") else {
        return None;
    };
    let default_login = LoginProvisioning {
        enabled: true,
        refresh_after: dur(d::REFRESH_AFTER),
        on_failure: OnFailure::Deny,
        timeout: dur(d::LOGIN_TIMEOUT),
    };
    let Some(mut t) = table else {
        return Some(ProvisioningSettings {
            username: default_username()?,
            display_name: d::DISPLAY_NAME.to_string(),
            create_users: true,
            update_users: true,
            link_existing: LinkExisting::Email,
            protected_users: Vec::new(),
            login: default_login,
        });
    };
    let username = match t.table(cx, "username") {
        Field::Ok(mut u) => {
            let r = username_rule(cx, &mut u);
            u.finish(cx);
            r
        }
        Field::Absent => default_username(),
        Field::Bad => None,
    };
    let dn_path = t.key_path("display_name");
    let display = t
        .literal(cx, "display_name")
        .check(|s| display_name(cx, &s, &dn_path))
        .or(d::DISPLAY_NAME.to_string());
    let create_users = t.boolean(cx, "create_users").or(true);
    let update_users = t.boolean(cx, "update_users").or(true);
    let link_existing = t
        .choice(
            cx,
            "link_existing",
            &[
                ("email", LinkExisting::Email),
                ("username", LinkExisting::Username),
                ("never", LinkExisting::Never),
            ],
        )
        .or(LinkExisting::Email);
    let pu_path = t.key_path("protected_users");
    let protected = t.literals(cx, "protected_users");
    let protected_users = each(cx, protected, &pu_path, |cx, s, p| {
        match s.value.strip_prefix("re:") {
            Some(pattern) => {
                let inner = Str {
                    value: pattern.to_string(),
                    span: s.span.clone(),
                    source: s.source.clone(),
                };
                values::regex(cx, &inner, p).map(UserPattern::Regex)
            }
            None => Some(UserPattern::Exact(s.value.clone())),
        }
    })
    .or(Vec::new());
    let login = match t.table(cx, "login") {
        Field::Ok(mut l) => {
            let enabled = l.boolean(cx, "enabled").or(true);
            let refresh_after = l.duration(cx, "refresh_after").or(dur(d::REFRESH_AFTER));
            let on_failure = l
                .choice(
                    cx,
                    "on_failure",
                    &[("deny", OnFailure::Deny), ("allow", OnFailure::Allow)],
                )
                .or(OnFailure::Deny);
            let timeout = l.positive_duration(cx, "timeout").or(dur(d::LOGIN_TIMEOUT));
            l.finish(cx);
            (|| {
                Some(LoginProvisioning {
                    enabled: enabled?,
                    refresh_after: refresh_after?,
                    on_failure: on_failure?,
                    timeout: timeout?,
                })
            })()
        }
        Field::Absent => Some(default_login),
        Field::Bad => None,
    };
    t.finish(cx);
    Some(ProvisioningSettings {
        username: username?,
        display_name: display?,
        create_users: create_users?,
        update_users: update_users?,
        link_existing: link_existing?,
        protected_users: protected_users?,
        login: login?,
    })
}

/// `[groups]` defaults when the section is absent.
pub(crate) fn default_groups() -> GroupsSettings {
    GroupsSettings {
        mode: GroupsMode::Manual,
        default_new_users: Vec::new(),
        default_all_users: Vec::new(),
        keep_existing: true,
        filter: None,
        create_missing: false,
        name: None,
        map: Vec::new(),
    }
}

/// `[groups]`.
pub(crate) fn groups(cx: &mut Ctx, root: &mut Table) -> Option<GroupsSettings> {
    match section(cx, root, "groups") {
        Err(()) => None,
        Ok(None) => Some(default_groups()),
        Ok(Some(mut t)) => {
            let g = groups_in(cx, &mut t, &default_groups());
            t.finish(cx);
            g
        }
    }
}

fn names(field: Field<Vec<Str>>) -> Field<Vec<String>> {
    field.map(|v| v.into_iter().map(|s| s.value).collect())
}

/// A groups table; keys it does not set are taken from `base` (defaults, or the global
/// `[groups]` for an `[idp.groups]` override).
pub(crate) fn groups_in(
    cx: &mut Ctx,
    t: &mut Table,
    base: &GroupsSettings,
) -> Option<GroupsSettings> {
    let mode = t
        .choice(
            cx,
            "mode",
            &[
                ("manual", GroupsMode::Manual),
                ("on-the-fly", GroupsMode::OnTheFly),
            ],
        )
        .or(base.mode);
    let default_new_users =
        names(t.strings(cx, "default_new_users")).or(base.default_new_users.clone());
    let default_all_users =
        names(t.strings(cx, "default_all_users")).or(base.default_all_users.clone());
    let keep_existing = t.boolean(cx, "keep_existing").or(base.keep_existing);
    let fpath = t.key_path("filter");
    let filter = match t.literal(cx, "filter") {
        Field::Ok(s) if s.value.is_empty() => Some(None),
        Field::Ok(s) => values::regex(cx, &s, &fpath).map(Some),
        Field::Absent => Some(base.filter.clone()),
        Field::Bad => None,
    };
    let create_missing = t.boolean(cx, "create_missing").or(base.create_missing);
    let name = match t.table(cx, "name") {
        Field::Ok(mut n) => {
            let r = values::rewrite_rule(cx, &mut n);
            n.finish(cx);
            r.map(Some)
        }
        Field::Absent => Some(base.name.clone()),
        Field::Bad => None,
    };
    let map = match t.tables(cx, "map") {
        Field::Ok(entries) => {
            let mut out = Some(Vec::new());
            for mut e in entries {
                let one = group_map(cx, &mut e);
                e.finish(cx);
                match (one, out.as_mut()) {
                    (Some(one), Some(all)) => all.push(one),
                    _ => out = None,
                }
            }
            out
        }
        Field::Absent => Some(base.map.clone()),
        Field::Bad => None,
    };
    Some(GroupsSettings {
        mode: mode?,
        default_new_users: default_new_users?,
        default_all_users: default_all_users?,
        keep_existing: keep_existing?,
        filter: filter?,
        create_missing: create_missing?,
        name: name?,
        map: map?,
    })
}

fn group_map(cx: &mut Ctx, e: &mut Table) -> Option<GroupMap> {
    let idp = e.string(cx, "idp");
    let idp = e.required(cx, "idp", idp, "\"engineering@example.com\"");
    let target = names(e.strings(cx, "target"));
    let target = e.required(cx, "target", target, "[\"jira-developers\"]");
    let target = match target {
        Some(v) if v.is_empty() => {
            cx.report(
                e.span.clone(),
                &e.key_path("target"),
                "lists no target group",
                "name at least one target group",
            );
            None
        }
        other => other,
    };
    Some(GroupMap {
        idp: idp?.value.trim().to_string(),
        target: target?,
    })
}

/// `[sync]`.
pub(crate) fn sync(cx: &mut Ctx, root: &mut Table) -> Option<SyncSettings> {
    let deprovision_default = Limit::Percent(d::MAX_DEPROVISION_PERCENT);
    let removals_default = Limit::Percent(d::MAX_GROUP_REMOVALS_PERCENT);
    let Ok(table) = section(cx, root, "sync") else {
        return None;
    };
    let Some(mut t) = table else {
        return Some(SyncSettings {
            interval: None,
            jitter: Duration::ZERO,
            deprovision: Deprovision::Deactivate,
            max_deprovision: deprovision_default,
            max_changes: d::MAX_CHANGES,
            max_group_removals: removals_default,
            concurrency: d::SYNC_CONCURRENCY as usize,
            notify_webhook: None,
        });
    };
    let interval = t
        .duration(cx, "interval")
        .map(|i| (!i.is_zero()).then_some(i))
        .or(None);
    let jitter_span = t.node("jitter").map(|n| n.span());
    let jitter = t.duration(cx, "jitter");
    let jitter = match (interval, jitter) {
        (Some(Some(i)), Field::Ok(j)) if j >= i => {
            cx.report(
                jitter_span.unwrap_or(t.span.clone()),
                &t.key_path("jitter"),
                "must be shorter than `interval`",
                "use a fraction of the interval, e.g. a tenth",
            );
            None
        }
        (_, Field::Ok(j)) => Some(j),
        (Some(Some(i)), Field::Absent) => Some((i / 10).min(dur(d::MAX_DEFAULT_JITTER))),
        (_, Field::Absent) => Some(Duration::ZERO),
        (_, Field::Bad) => None,
    };
    let deprovision = t
        .choice(
            cx,
            "deprovision",
            &[
                ("none", Deprovision::None),
                ("deactivate", Deprovision::Deactivate),
                ("remove-groups", Deprovision::RemoveGroups),
            ],
        )
        .or(Deprovision::Deactivate);
    let max_deprovision = t.limit(cx, "max_deprovision").or(deprovision_default);
    let max_changes = t.uint(cx, "max_changes", 1..=u64::MAX).or(d::MAX_CHANGES);
    let max_group_removals = t.limit(cx, "max_group_removals").or(removals_default);
    let concurrency = t.uint(cx, "concurrency", 1..=64).or(d::SYNC_CONCURRENCY);
    let hook_path = t.key_path("notify_webhook");
    // "" is the documented way to say "no webhook" (a secret may not be empty otherwise).
    let no_hook = t.node("notify_webhook").and_then(|n| n.get_ref().as_str()) == Some("");
    let hook = if no_hook {
        Field::Absent
    } else {
        t.secret(cx, "notify_webhook")
    };
    let notify_webhook = match hook {
        Field::Ok((s, span)) => {
            let ok = url::Url::parse(s.expose()).is_ok_and(|u| {
                (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some()
            });
            if ok {
                Some(Some(s))
            } else {
                cx.report(
                    span,
                    &hook_path,
                    "is not an http(s) URL",
                    "write the webhook URL, e.g. \"${SLACK_WEBHOOK_URL}\"",
                );
                None
            }
        }
        Field::Bad => None,
        Field::Absent => Some(None),
    };
    t.finish(cx);
    Some(SyncSettings {
        interval: interval?,
        jitter: jitter?,
        deprovision: deprovision?,
        max_deprovision: max_deprovision?,
        max_changes: max_changes?,
        max_group_removals: max_group_removals?,
        concurrency: concurrency? as usize,
        notify_webhook: notify_webhook?,
    })
}

/// `[state]`.
pub(crate) fn state(cx: &mut Ctx, root: &mut Table) -> Option<StateSettings> {
    let Ok(table) = section(cx, root, "state") else {
        return None;
    };
    let Some(mut t) = table else {
        return Some(StateSettings {
            dir: PathBuf::from(d::STATE_DIR),
            redis_url: None,
        });
    };
    let dir = t
        .string(cx, "dir")
        .check(|s| {
            if s.value.trim().is_empty() {
                cx.report(
                    s.span.clone(),
                    &t.key_path("dir"),
                    "is empty",
                    "name a directory, e.g. \"./data\"",
                );
                None
            } else {
                Some(PathBuf::from(s.value))
            }
        })
        .or(PathBuf::from(d::STATE_DIR));
    let rpath = t.key_path("redis_url");
    let redis_url = t
        .secret(cx, "redis_url")
        .check(|(s, span)| {
            if s.expose().starts_with("redis://") || s.expose().starts_with("rediss://") {
                Some(s)
            } else {
                cx.report(
                    span,
                    &rpath,
                    "is not a redis:// or rediss:// URL",
                    "write it as \"redis://host:6379\"",
                );
                None
            }
        })
        .opt();
    t.finish(cx);
    Some(StateSettings {
        dir: dir?,
        redis_url: redis_url?,
    })
}

/// `[admin]`.
pub(crate) fn admin(cx: &mut Ctx, root: &mut Table) -> Option<AdminSettings> {
    let Ok(table) = section(cx, root, "admin") else {
        return None;
    };
    let Some(mut t) = table else {
        return Some(AdminSettings {
            users: Vec::new(),
            groups: Vec::new(),
        });
    };
    let upath = t.key_path("users");
    let users = t.strings(cx, "users");
    let users = each(cx, users, &upath, values::email).or(Vec::new());
    let groups = t
        .strings(cx, "groups")
        .map(|v| v.into_iter().map(|s| s.value.trim().to_string()).collect())
        .or(Vec::new());
    t.finish(cx);
    Some(AdminSettings {
        users: users?,
        groups: groups?,
    })
}
