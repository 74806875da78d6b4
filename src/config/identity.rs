//! Decoders of `[[idp]]` (OIDC relying parties, who may sign in, per-IdP overrides) and
//! `[directory]` (the Google Admin SDK and how usher authenticates to it). Checks issuer
//! schemes, secrets and the directory's reference to an IdP; performs no discovery.

use super::policy;
use super::raw::defaults as d;
use super::routes::{ident, Unique};
use super::settings::{DirectoryAuth, DirectorySettings, GroupsSettings, IdpKind, IdpSettings};
use super::values::{self, each, UrlRule};
use super::walk::{Ctx, Field, Str, Table};

/// Decoded `[[idp]]` entries plus the name and kind of every entry seen (even bad ones).
pub(crate) struct Idps {
    pub all: Option<Vec<IdpSettings>>,
    pub seen: Vec<(String, Option<IdpKind>)>,
    /// False when `[[idp]]` itself was missing or malformed: references are then not checked.
    pub complete: bool,
}

/// `[[idp]]` (at least one).
pub(crate) fn idps(cx: &mut Ctx, root: &mut Table, groups: Option<&GroupsSettings>) -> Idps {
    let mut out = Idps {
        all: None,
        seen: Vec::new(),
        complete: false,
    };
    let tables = match root.tables(cx, "idp") {
        Field::Ok(v) if !v.is_empty() => v,
        Field::Ok(_) | Field::Absent => {
            root.missing_section::<()>(
                cx,
                "idp",
                "add an [[idp]] block with name, client_id, client_secret and allowed_domains (see config/usher.example.toml)",
            );
            return out;
        }
        Field::Bad => return out,
    };
    let mut names = Unique::new("idp name");
    let mut all = Some(Vec::new());
    for mut t in tables {
        let one = idp(cx, &mut t, &mut names, groups, &mut out.seen);
        t.finish(cx);
        match (one, all.as_mut()) {
            (Some(one), Some(all)) => all.push(one),
            _ => all = None,
        }
    }
    out.all = all;
    out.complete = true;
    out
}

fn idp(
    cx: &mut Ctx,
    t: &mut Table,
    unique: &mut Unique,
    groups: Option<&GroupsSettings>,
    seen: &mut Vec<(String, Option<IdpKind>)>,
) -> Option<IdpSettings> {
    let name = t.string(cx, "name");
    let mut raw_name = None;
    let name = t.required(cx, "name", name, "\"google\"").and_then(|s| {
        let path = t.key_path("name");
        raw_name = Some(s.value.clone());
        let n = ident(cx, &s, &path)?;
        unique.insert(cx, &s, &n, &path).then_some(n)
    });
    let kind = t
        .choice(
            cx,
            "kind",
            &[("google", IdpKind::Google), ("oidc", IdpKind::Oidc)],
        )
        .or(IdpKind::Google);
    if let Some(n) = raw_name {
        seen.push((n, kind));
    }
    let issuer_path = t.key_path("issuer");
    let issuer = match (t.string(cx, "issuer"), kind) {
        (Field::Ok(s), _) => values::url(cx, &s, &issuer_path, UrlRule::HttpsOrLoopback, false),
        (Field::Absent, Some(IdpKind::Google)) => url::Url::parse(d::GOOGLE_ISSUER).ok(),
        (Field::Absent, Some(IdpKind::Oidc)) => {
            t.missing(cx, "issuer", "\"https://idp.example.com/realms/main\"")
        }
        _ => None,
    };
    let client_id = t.string(cx, "client_id");
    let client_id = t
        .required(cx, "client_id", client_id, "\"${GOOGLE_CLIENT_ID}\"")
        .and_then(|s| non_empty(cx, s, &t.key_path("client_id")));
    let client_secret = t.secret(cx, "client_secret");
    let client_secret = t
        .required(
            cx,
            "client_secret",
            client_secret,
            "\"${GOOGLE_CLIENT_SECRET}\"",
        )
        .map(|(s, _)| s);
    let dpath = t.key_path("allowed_domains");
    let domains = t.strings(cx, "allowed_domains");
    let allowed_domains = each(cx, domains, &dpath, values::domain).or(Vec::new());
    let allowed_groups = t
        .strings(cx, "allowed_groups")
        .map(|v| v.into_iter().map(|s| s.value).collect::<Vec<_>>())
        .or(Vec::new());
    if kind == Some(IdpKind::Google)
        && allowed_domains.as_ref().is_some_and(|v| v.is_empty())
        && allowed_groups.as_ref().is_some_and(|v| v.is_empty())
    {
        cx.report(
            t.span.clone(),
            &dpath,
            "a kind = \"google\" IdP with neither allowed_domains nor allowed_groups lets every Google account sign in",
            "list your Workspace domains: allowed_domains = [\"example.com\"]",
        );
    }
    let groups_claim = t
        .string(cx, "groups_claim")
        .check(|s| {
            if s.value.split('.').all(|seg| !seg.is_empty()) {
                Some(s.value)
            } else {
                cx.report(
                    s.span.clone(),
                    &t.key_path("groups_claim"),
                    format!("{} is not a claim name or dotted path", s.shown()),
                    "write e.g. \"groups\" or \"realm_access.roles\"",
                );
                None
            }
        })
        .or(d::GROUPS_CLAIM.to_string());
    let scim_path = t.key_path("scim_token");
    let scim_token = t
        .secret(cx, "scim_token")
        .check(|(s, span)| {
            if s.expose().chars().count() < d::MIN_SCIM_TOKEN {
                cx.report(
                    span,
                    &scim_path,
                    format!("the token is shorter than {} characters", d::MIN_SCIM_TOKEN),
                    "use a long random token (`usher keygen`)",
                );
                None
            } else {
                Some(s)
            }
        })
        .opt();
    let spath = t.key_path("scopes");
    let scopes = t.strings(cx, "scopes");
    let scopes = each(cx, scopes, &spath, |cx, s, p| {
        if s.value.is_empty() || s.value.contains(char::is_whitespace) {
            cx.report(
                s.span.clone(),
                p,
                "a scope is one word",
                "write each scope as its own string",
            );
            None
        } else {
            Some(s.value.clone())
        }
    })
    .or(Vec::new());
    let revoke_on_logout = t.boolean(cx, "revoke_on_logout").or(false);
    let username = match t.table(cx, "username") {
        Field::Ok(mut u) => {
            let rule = policy::username_rule(cx, &mut u);
            u.finish(cx);
            rule.map(Some)
        }
        other => other.map(|_| None).or(None),
    };
    let groups = match t.table(cx, "groups") {
        Field::Ok(mut g) => {
            let base = groups.cloned().unwrap_or_else(policy::default_groups);
            let over = policy::groups_in(cx, &mut g, &base);
            g.finish(cx);
            over.map(Some)
        }
        other => other.map(|_| None).or(None),
    };
    Some(IdpSettings {
        name: name?,
        kind: kind?,
        issuer: issuer?,
        client_id: client_id?,
        client_secret: client_secret?,
        allowed_domains: allowed_domains?,
        allowed_groups: allowed_groups?,
        groups_claim: groups_claim?,
        scim_token: scim_token?,
        scopes: scopes?,
        revoke_on_logout: revoke_on_logout?,
        username: username?,
        groups: groups?,
    })
}

fn non_empty(cx: &mut Ctx, s: Str, path: &str) -> Option<String> {
    if s.value.trim().is_empty() {
        cx.report(s.span.clone(), path, "is empty", "give it a value");
        None
    } else {
        Some(s.value)
    }
}

/// `[directory]` (optional): `Some(None)` when absent.
pub(crate) fn directory(
    cx: &mut Ctx,
    root: &mut Table,
    idps: &Idps,
) -> Option<Option<DirectorySettings>> {
    let mut t = match root.table(cx, "directory") {
        Field::Ok(t) => t,
        other => return other.map(|_| None).opt().map(Option::flatten),
    };
    let idp_path = t.key_path("idp");
    let idp = match t.string(cx, "idp") {
        Field::Ok(s) => directory_idp(cx, &s, &idp_path, idps),
        Field::Absent if idps.seen.len() == 1 => idps.seen.first().map(|(n, _)| n.clone()),
        Field::Absent => t.missing(cx, "idp", "\"google\""),
        Field::Bad => None,
    };
    let customer = t
        .string(cx, "customer")
        .map(|s| s.value)
        .or(d::DIRECTORY_CUSTOMER.to_string());
    let dom_path = t.key_path("domain");
    let domain = t
        .string(cx, "domain")
        .check(|s| values::domain(cx, &s, &dom_path))
        .opt();
    let url_key = |cx: &mut Ctx, t: &mut Table, key: &str, default: &str| {
        let path = t.key_path(key);
        match t.string(cx, key) {
            Field::Ok(s) => values::url(cx, &s, &path, UrlRule::HttpsOrLoopback, false),
            Field::Absent => url::Url::parse(default).ok(),
            Field::Bad => None,
        }
    };
    let api_url = url_key(cx, &mut t, "api_url", d::DIRECTORY_API_URL);
    let token_url = url_key(cx, &mut t, "token_url", d::DIRECTORY_TOKEN_URL);
    let nested_groups = t.boolean(cx, "nested_groups").or(true);
    let key_path = t.key_path("service_account_key");
    let sa_key = t
        .secret(cx, "service_account_key")
        .check(|(key, span)| {
            match service_account_problem(key.expose()) {
                None => Some((key, span)),
                Some(why) => {
                    cx.report(
                        span,
                        &key_path,
                        format!("is not a service-account JSON key: {why}"),
                        "download a JSON key for the service account and reference it as \"file:/path/key.json\"",
                    );
                    None
                }
            }
        })
        .opt();
    let subject_path = t.key_path("admin_subject");
    let admin_subject = t
        .string(cx, "admin_subject")
        .check(|s| values::email(cx, &s, &subject_path).map(|e| (e, s.span)))
        .opt();
    let oauth = t.boolean(cx, "oauth");
    let oauth_span = t.node("oauth").map(|n| n.span());
    let oauth = oauth.or(false);
    let auth = match (sa_key, admin_subject, oauth) {
        (Some(key), Some(subject), Some(oauth)) => match (key, subject, oauth) {
            (Some(_), _, true) => {
                cx.report(
                    oauth_span.unwrap_or(t.span.clone()),
                    &t.key_path("oauth"),
                    "both `service_account_key` and `oauth = true` are set",
                    "choose one way to reach the directory: remove the key or set oauth = false",
                );
                None
            }
            (Some((key, _)), Some((subject, _)), false) => Some(DirectoryAuth::ServiceAccount {
                key,
                admin_subject: subject,
            }),
            (Some(_), None, false) => t.missing(cx, "admin_subject", "\"admin@example.com\""),
            (None, Some((_, span)), true) => {
                cx.report(
                    span,
                    &subject_path,
                    "is only used with service_account_key",
                    "remove it (oauth = true acts as the admin who consents)",
                );
                None
            }
            (None, _, true) => Some(DirectoryAuth::OAuth),
            (None, _, false) => {
                cx.report(
                    t.span.clone(),
                    &t.path,
                    "no way to authenticate to the directory",
                    "set service_account_key + admin_subject (domain-wide delegation), or oauth = true",
                );
                None
            }
        },
        _ => None,
    };
    let users_query = t
        .string(cx, "users_query")
        .map(|s| s.value)
        .or(String::new());
    let include_suspended = t.boolean(cx, "include_suspended").or(false);
    let rate = t
        .uint(cx, "rate_limit_per_minute", 1..=1_000_000)
        .or(d::DIRECTORY_RATE_PER_MINUTE);
    t.finish(cx);
    Some(Some(DirectorySettings {
        idp: idp?,
        customer: customer?,
        domain: domain?,
        api_url: api_url?,
        token_url: token_url?,
        nested_groups: nested_groups?,
        auth: auth?,
        users_query: users_query?,
        include_suspended: include_suspended?,
        rate_limit_per_minute: rate? as u32,
    }))
}

fn directory_idp(cx: &mut Ctx, s: &Str, path: &str, idps: &Idps) -> Option<String> {
    if !idps.complete {
        return None;
    }
    match idps.seen.iter().find(|(n, _)| *n == s.value) {
        Some((n, Some(IdpKind::Google))) => Some(n.clone()),
        Some((_, None)) => None,
        Some((_, Some(IdpKind::Oidc))) => {
            cx.report(
                s.span.clone(),
                path,
                format!("{} is a kind = \"oidc\" IdP", s.shown()),
                "the directory is Google Workspace: name a kind = \"google\" [[idp]]",
            );
            None
        }
        None => {
            let known: Vec<&str> = idps.seen.iter().map(|(n, _)| n.as_str()).collect();
            let fix = match super::walk::suggest(&s.value, &known) {
                Some(b) => format!("did you mean \"{b}\"?"),
                None => format!("name one of the [[idp]] entries: {}", known.join(", ")),
            };
            cx.report(
                s.span.clone(),
                path,
                format!("no [[idp]] is named {}", s.shown()),
                fix,
            );
            None
        }
    }
}

/// Why `json` is not a Google service-account key, without quoting any of it.
fn service_account_problem(json: &str) -> Option<&'static str> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Some("not valid JSON");
    };
    if v.get("type").and_then(|t| t.as_str()) != Some("service_account") {
        return Some("`type` is not \"service_account\"");
    }
    for field in ["client_email", "private_key"] {
        if v.get(field)
            .and_then(|f| f.as_str())
            .is_none_or(str::is_empty)
        {
            return Some(if field == "client_email" {
                "no `client_email`"
            } else {
                "no `private_key`"
            });
        }
    }
    None
}
