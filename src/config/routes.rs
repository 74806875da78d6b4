//! Decoders of `[[upstream]]` (hosts usher proxies, identity headers, path rules, pool
//! limits) and `[[target]]` (where accounts are provisioned, how usher authenticates).
//! Cross-checks names: duplicates, and upstream `targets` naming no `[[target]]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use http::HeaderName;
use regex::RegexSet;

use super::raw::defaults as d;
use super::settings::{IdentityHeaders, TargetAuth, TargetKind, TargetSettings, UpstreamSettings};
use super::units::parse_duration;
use super::values::{self, reject, UrlRule};
use super::walk::{Ctx, Field, Str, Table};

fn dur(text: &str) -> std::time::Duration {
    parse_duration(text).unwrap_or_default()
}

/// Decoded `[[target]]` entries plus every name seen (even of bad entries), so references
/// can be checked without piling up follow-on errors.
pub(crate) struct Targets {
    pub all: Option<Vec<TargetSettings>>,
    pub names: Vec<String>,
    /// False when `[[target]]` itself was malformed: references are then not checked.
    pub complete: bool,
}

/// Remembers names already used in one array of tables and reports repeats.
pub(crate) struct Unique {
    what: &'static str,
    seen: BTreeMap<String, usize>,
}

impl Unique {
    pub(crate) fn new(what: &'static str) -> Self {
        Unique {
            what,
            seen: BTreeMap::new(),
        }
    }

    /// `true` when `value` is new; otherwise reports it at `s`.
    pub(crate) fn insert(&mut self, cx: &mut Ctx, s: &Str, value: &str, path: &str) -> bool {
        if let Some(first) = self.seen.get(value) {
            cx.report(
                s.span.clone(),
                path,
                format!(
                    "duplicate {} {} (first used on line {first})",
                    self.what,
                    s.shown()
                ),
                format!("give every {} a different value", self.what),
            );
            return false;
        }
        self.seen
            .insert(value.to_string(), cx.line_of(s.span.start));
        true
    }
}

/// A short identifier (`jira`, `google-main`): used in URLs, metrics and CLI flags.
pub(crate) fn ident(cx: &mut Ctx, s: &Str, path: &str) -> Option<String> {
    let ok = !s.value.is_empty()
        && s.value.len() <= 64
        && s.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Some(s.value.clone())
    } else {
        reject(
            cx,
            s,
            path,
            "is not a valid name",
            "use 1-64 letters, digits, `-` or `_` (it appears in URLs and CLI flags)",
        )
    }
}

/// `[[target]]` entries (optional: without them usher only authenticates).
pub(crate) fn targets(cx: &mut Ctx, root: &mut Table) -> Targets {
    let tables = match root.tables(cx, "target") {
        Field::Ok(v) => v,
        Field::Absent => {
            return Targets {
                all: Some(Vec::new()),
                names: Vec::new(),
                complete: true,
            }
        }
        Field::Bad => {
            return Targets {
                all: None,
                names: Vec::new(),
                complete: false,
            }
        }
    };
    let mut names = Unique::new("target name");
    let mut all = Some(Vec::new());
    let mut seen_names = Vec::new();
    for mut t in tables {
        let one = target(cx, &mut t, &mut names, &mut seen_names);
        t.finish(cx);
        match (one, all.as_mut()) {
            (Some(one), Some(all)) => all.push(one),
            _ => all = None,
        }
    }
    Targets {
        all,
        names: seen_names,
        complete: true,
    }
}

fn target(
    cx: &mut Ctx,
    t: &mut Table,
    unique: &mut Unique,
    seen: &mut Vec<String>,
) -> Option<TargetSettings> {
    let name = t.string(cx, "name");
    let name = t.required(cx, "name", name, "\"jira\"").and_then(|s| {
        let path = t.key_path("name");
        seen.push(s.value.clone());
        let n = ident(cx, &s, &path)?;
        unique.insert(cx, &s, &n, &path).then_some(n)
    });
    let kind = t.choice(
        cx,
        "kind",
        &[
            ("jira", TargetKind::Jira),
            ("confluence", TargetKind::Confluence),
            ("bitbucket", TargetKind::Bitbucket),
            ("crowd", TargetKind::Crowd),
            ("scim", TargetKind::Scim),
        ],
    );
    let kind = t.required(cx, "kind", kind, "\"jira\"");
    let url = t.string(cx, "url");
    let url = t
        .required(cx, "url", url, "\"https://jira.internal:8080\"")
        .and_then(|s| values::url(cx, &s, &t.key_path("url"), UrlRule::HttpOrHttps, false));
    let auth = match t.table(cx, "auth") {
        Field::Ok(mut a) => {
            let auth = target_auth(cx, &mut a);
            a.finish(cx);
            auth
        }
        Field::Absent => t.missing(
            cx,
            "auth",
            "{ username = \"usher-bot\", token = \"${JIRA_TOKEN}\" }",
        ),
        Field::Bad => None,
    };
    let jira_only = |cx: &mut Ctx, t: &mut Table, key: &str| -> Option<Option<String>> {
        let path = t.key_path(key);
        t.string(cx, key)
            .check(|s| {
                if kind.is_some() && kind != Some(TargetKind::Jira) {
                    cx.report(
                        s.span.clone(),
                        &path,
                        "is only used by kind = \"jira\"",
                        "remove it from this target",
                    );
                    return None;
                }
                Some(s.value)
            })
            .opt()
    };
    let default_project_lead = jira_only(cx, t, "default_project_lead");
    let default_component_lead = jira_only(cx, t, "default_component_lead");
    let directory_id = t.uint(cx, "directory_id", 0..=u64::MAX).opt();
    let concurrency = t.uint(cx, "concurrency", 1..=64).or(d::TARGET_CONCURRENCY);
    let timeout = t
        .positive_duration(cx, "timeout")
        .or(dur(d::TARGET_TIMEOUT));
    let ca_file = t
        .string(cx, "ca_file")
        .map(|s| PathBuf::from(s.value))
        .opt();
    Some(TargetSettings {
        name: name?,
        kind: kind?,
        url: url?,
        auth: auth?,
        default_project_lead: default_project_lead?,
        default_component_lead: default_component_lead?,
        directory_id: directory_id?,
        concurrency: concurrency? as usize,
        timeout: timeout?,
        ca_file: ca_file?,
    })
}

/// `{ username, token }` or `{ username, password }` -> basic; `{ token }` -> bearer.
fn target_auth(cx: &mut Ctx, a: &mut Table) -> Option<TargetAuth> {
    let username = a.string(cx, "username");
    let password = a.secret(cx, "password");
    let token = a.secret(cx, "token");
    let (username, password, token) = (username.opt()?, password.opt()?, token.opt()?);
    match (username, password, token) {
        (Some(u), Some(_), Some((_, span))) => {
            let _ = u;
            cx.report(
                span,
                &a.key_path("token"),
                "both `password` and `token` are set",
                "keep one: `token` (PAT / API token) or `password`",
            );
            None
        }
        (Some(u), Some((p, _)), None) | (Some(u), None, Some((p, _))) => Some(TargetAuth::Basic {
            username: u.value,
            password: p,
        }),
        (None, None, Some((tok, _))) => Some(TargetAuth::Bearer { token: tok }),
        (None, Some((_, span)), _) => {
            cx.report(
                span,
                &a.key_path("password"),
                "a password needs a `username`",
                "add `username = \"usher-bot\"`",
            );
            None
        }
        (Some(u), None, None) => {
            cx.report(
                u.span,
                &a.key_path("username"),
                "a username needs a `token` or `password`",
                "add `token = \"${TARGET_TOKEN}\"`",
            );
            None
        }
        (None, None, None) => {
            cx.report(
                a.span.clone(),
                &a.path,
                "no credentials",
                "write `{ username = \"usher-bot\", token = \"${TOKEN}\" }` (basic) or `{ token = \"${PAT}\" }` (bearer)",
            );
            None
        }
    }
}

/// `[[upstream]]` entries (at least one).
pub(crate) fn upstreams(
    cx: &mut Ctx,
    root: &mut Table,
    targets: &Targets,
) -> Option<Vec<UpstreamSettings>> {
    let tables =
        match root.tables(cx, "upstream") {
            Field::Ok(v) if !v.is_empty() => v,
            Field::Ok(_) | Field::Absent => return root.missing_section(
                cx,
                "upstream",
                "add an [[upstream]] block with name, host and url (see config/usher.example.toml)",
            ),
            Field::Bad => return None,
        };
    let mut names = Unique::new("upstream name");
    let mut hosts = Unique::new("upstream host");
    let mut all = Some(Vec::new());
    for mut t in tables {
        let one = upstream(cx, &mut t, &mut names, &mut hosts, targets);
        t.finish(cx);
        match (one, all.as_mut()) {
            (Some(one), Some(all)) => all.push(one),
            _ => all = None,
        }
    }
    all
}

/// `jira.example.com` or `jira.example.com:8443`, lower-cased, nothing else.
fn host(cx: &mut Ctx, s: &Str, path: &str) -> Option<String> {
    let v = s.value.trim().to_ascii_lowercase();
    let parsed = url::Url::parse(&format!("http://{v}/")).ok();
    let ok = parsed.as_ref().is_some_and(|u| {
        let rebuilt = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        rebuilt == v && u.path() == "/"
    }) || parsed
        .as_ref()
        .is_some_and(|u| u.port().is_none() && v.ends_with(":80"));
    if ok {
        Some(v)
    } else {
        reject(
            cx,
            s,
            path,
            "is not a host name",
            "write the Host header value: \"jira.example.com\" or \"jira.example.com:8443\" (no scheme, no path)",
        )
    }
}

fn upstream(
    cx: &mut Ctx,
    t: &mut Table,
    names: &mut Unique,
    hosts: &mut Unique,
    targets: &Targets,
) -> Option<UpstreamSettings> {
    let name = t.string(cx, "name");
    let name = t.required(cx, "name", name, "\"jira\"").and_then(|s| {
        let path = t.key_path("name");
        let n = ident(cx, &s, &path)?;
        names.insert(cx, &s, &n, &path).then_some(n)
    });
    let host_s = t.string(cx, "host");
    let host = t
        .required(cx, "host", host_s, "\"jira.example.com\"")
        .and_then(|s| {
            let path = t.key_path("host");
            let h = host(cx, &s, &path)?;
            hosts.insert(cx, &s, &h, &path).then_some(h)
        });
    let url = t.string(cx, "url");
    let url = t
        .required(cx, "url", url, "\"http://127.0.0.1:8080\"")
        .and_then(|s| values::url(cx, &s, &t.key_path("url"), UrlRule::HttpOrHttps, true));
    let tpath = t.key_path("targets");
    let target_names = t
        .strings(cx, "targets")
        .check(|list| {
            let mut ok = true;
            for (i, s) in list.iter().enumerate() {
                if targets.complete && !targets.names.contains(&s.value) {
                    let known = targets.names.iter().map(|n| n.as_str()).collect::<Vec<_>>();
                    let fix = match super::walk::suggest(&s.value, &known) {
                        Some(best) => format!("did you mean \"{best}\"?"),
                        None if known.is_empty() => "add a [[target]] with this name".to_string(),
                        None => format!("name one of the [[target]] entries: {}", known.join(", ")),
                    };
                    cx.report(
                        s.span.clone(),
                        &format!("{tpath}[{i}]"),
                        format!("no [[target]] is named {}", s.shown()),
                        fix,
                    );
                    ok = false;
                }
            }
            ok.then(|| list.into_iter().map(|s| s.value).collect())
        })
        .or(Vec::new());
    let identity_headers = identity_headers(cx, t);
    let assertion_header = optional_header(cx, t, "assertion_header", d::ASSERTION_HEADER);
    let passthrough = regex_set(cx, t, "passthrough");
    let public = regex_set(cx, t, "public");
    let connect_timeout = t
        .positive_duration(cx, "connect_timeout")
        .or(dur(d::CONNECT_TIMEOUT));
    let response_timeout = t
        .positive_duration(cx, "response_timeout")
        .or(dur(d::RESPONSE_TIMEOUT));
    let ca_file = t
        .string(cx, "ca_file")
        .map(|s| PathBuf::from(s.value))
        .opt();
    let max_idle_per_worker = t
        .uint(cx, "max_idle_per_worker", 0..=100_000)
        .or(d::MAX_IDLE_PER_WORKER);
    let idle_timeout = t
        .positive_duration(cx, "idle_timeout")
        .or(dur(d::UPSTREAM_IDLE));
    // The identity headers must be distinct, or one would overwrite another.
    if let (Some(ih), Some(Some(a))) = (&identity_headers, &assertion_header) {
        let all = [&ih.user, &ih.email, &ih.groups];
        if all.iter().any(|h| h.as_ref() == Some(a)) {
            cx.report(
                t.span.clone(),
                &t.key_path("assertion_header"),
                format!("`{a}` is also an identity header"),
                "give the assertion header its own name",
            );
        }
    }
    Some(UpstreamSettings {
        name: name?,
        host: host?,
        url: url?,
        targets: target_names?,
        identity_headers: identity_headers?,
        assertion_header: assertion_header?,
        passthrough: passthrough?,
        public: public?,
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        ca_file: ca_file?,
        max_idle_per_worker: max_idle_per_worker? as usize,
        idle_timeout: idle_timeout?,
    })
}

/// A header key: absent -> `default`, `""` -> not sent, else a checked name.
fn optional_header(
    cx: &mut Ctx,
    t: &mut Table,
    key: &str,
    default: &str,
) -> Option<Option<HeaderName>> {
    let path = t.key_path(key);
    match t.string(cx, key) {
        Field::Absent => Some(default_header(default)),
        Field::Bad => None,
        Field::Ok(s) if s.value.is_empty() => Some(None),
        Field::Ok(s) => values::header_name(cx, &s, &path).map(Some),
    }
}

/// One of our constant default header names (`HeaderName` lower-cases it).
fn default_header(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .ok()
        .map(values::static_header_name)
}

fn identity_headers(cx: &mut Ctx, t: &mut Table) -> Option<IdentityHeaders> {
    let mut h = match t.table(cx, "identity_headers") {
        Field::Ok(h) => h,
        Field::Absent => {
            return Some(IdentityHeaders {
                user: default_header(d::IDENTITY_USER),
                email: default_header(d::IDENTITY_EMAIL),
                groups: default_header(d::IDENTITY_GROUPS),
            })
        }
        Field::Bad => return None,
    };
    let user = optional_header(cx, &mut h, "user", d::IDENTITY_USER);
    let email = optional_header(cx, &mut h, "email", d::IDENTITY_EMAIL);
    let groups = optional_header(cx, &mut h, "groups", d::IDENTITY_GROUPS);
    let (span, path) = (h.span.clone(), h.path.clone());
    h.finish(cx);
    let (user, email, groups) = (user?, email?, groups?);
    let set: Vec<&HeaderName> = [&user, &email, &groups].into_iter().flatten().collect();
    for (i, a) in set.iter().enumerate() {
        if set[..i].contains(a) {
            cx.report(
                span,
                &path,
                format!("`{a}` is used for two identity fields"),
                "give user, email and groups different header names",
            );
            return None;
        }
    }
    Some(IdentityHeaders {
        user,
        email,
        groups,
    })
}

fn regex_set(cx: &mut Ctx, t: &mut Table, key: &str) -> Option<RegexSet> {
    let path = t.key_path(key);
    let list = t.literals(cx, key);
    let patterns = values::each(cx, list, &path, |cx, s, p| {
        values::regex(cx, s, p).map(|_| s.value.clone())
    })
    .or(Vec::new())?;
    match RegexSet::new(&patterns) {
        Ok(set) => Some(set),
        Err(e) => {
            cx.report(
                t.span.clone(),
                &path,
                format!("the patterns cannot be combined: {e}"),
                "simplify the patterns",
            );
            None
        }
    }
}
