//! Typed checks shared by the section decoders: socket addresses, URLs (with the
//! "http only on loopback" rule), header names, regexes and regex rewrite rules, emails.
//! Each takes a decoded [`Str`], reports a located problem and returns `None` when wrong.

use std::net::{IpAddr, SocketAddr};

use http::HeaderName;
use regex::Regex;

use super::settings::RewriteRule;
use super::walk::{Ctx, Field, Str, Table};

/// Reports that `s` (at `path`) is not acceptable, as "`<value shown>` `what`" with `fix`,
/// and yields `None`: the one shape every typed check uses to say no, so messages stay alike.
pub(crate) fn reject<T>(cx: &mut Ctx, s: &Str, path: &str, what: &str, fix: &str) -> Option<T> {
    cx.report(s.span.clone(), path, format!("{} {what}", s.shown()), fix);
    None
}

/// `host:port` with a literal IP.
pub(crate) fn socket_addr(cx: &mut Ctx, s: &Str, path: &str) -> Option<SocketAddr> {
    match s.value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => reject(
            cx,
            s,
            path,
            "is not an IP address with a port",
            "write it as \"IP:PORT\", e.g. \"0.0.0.0:8443\" or \"[::]:8443\"",
        ),
    }
}

/// What a URL key accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlRule {
    /// `https://`, or `http://` when the host is loopback (tests, emulators, sidecars).
    HttpsOrLoopback,
    /// `http://` or `https://` anywhere (upstreams and targets on a private network).
    HttpOrHttps,
}

/// An absolute URL; `origin_only` rejects paths, queries and fragments.
pub(crate) fn url(
    cx: &mut Ctx,
    s: &Str,
    path: &str,
    rule: UrlRule,
    origin_only: bool,
) -> Option<url::Url> {
    let u = match url::Url::parse(&s.value) {
        Ok(u) => u,
        Err(e) => {
            return reject(
                cx,
                s,
                path,
                &format!("is not a URL: {e}"),
                "write an absolute URL such as \"https://host.example.com\"",
            );
        }
    };
    let https = u.scheme() == "https";
    let http = u.scheme() == "http";
    if !(http || https) || u.host().is_none() {
        return reject(
            cx,
            s,
            path,
            "is not an http(s) URL with a host",
            "write it as \"https://host[:port]\"",
        );
    }
    if rule == UrlRule::HttpsOrLoopback && http && !is_loopback(&u) {
        cx.report(
            s.span.clone(),
            path,
            "http:// is accepted only for loopback addresses",
            "use https://, or 127.0.0.1 / [::1] / localhost for a local test service",
        );
        return None;
    }
    if origin_only && (u.path() != "/" || u.query().is_some() || u.fragment().is_some()) {
        return reject(
            cx,
            s,
            path,
            "has a path, query or fragment",
            "give only the scheme, host and port; usher keeps the request path as it is",
        );
    }
    Some(u)
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Headers usher must never let configuration hijack (framing, routing, credentials).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// The same name backed by static memory. A name parsed at run time is
/// reference-counted, and every request that sets the header clones it: with
/// both workers doing so, the count's cache line bounces between cores. The
/// text is leaked once per config load (a few bytes per identity header).
pub(crate) fn static_header_name(name: HeaderName) -> HeaderName {
    let text: &'static str = Box::leak(name.as_str().to_owned().into_boxed_str());
    // `as_str` of a valid name is a valid lower-case name, which is all
    // `from_static` asks for; `from_bytes` keeps the no-panic guarantee anyway.
    match HeaderName::from_bytes(text.as_bytes()) {
        Ok(_) => HeaderName::from_static(text),
        Err(_) => name,
    }
}

/// A header name usable for identity, not one of the reserved ones.
pub(crate) fn header_name(cx: &mut Ctx, s: &Str, path: &str) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(s.value.as_bytes()) else {
        return reject(
            cx,
            s,
            path,
            "is not a valid HTTP header name",
            "use letters, digits and `-`, e.g. \"X-Forwarded-User\"",
        );
    };
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return reject(
            cx,
            s,
            path,
            "is a header usher or HTTP itself controls",
            "choose a dedicated name such as \"X-Forwarded-User\"",
        );
    }
    Some(static_header_name(name))
}

/// A compiled regex; the regex crate's explanation goes into the message.
pub(crate) fn regex(cx: &mut Ctx, s: &Str, path: &str) -> Option<Regex> {
    match Regex::new(&s.value) {
        Ok(r) => Some(r),
        Err(e) => {
            // The regex crate draws a caret diagram over several lines; keep its last line.
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error:"))
                .unwrap_or(text.as_str())
                .trim()
                .to_string();
            cx.report(
                s.span.clone(),
                path,
                format!("invalid regex {}: {why}", s.shown()),
                "fix the pattern (Rust regex syntax; in TOML basic strings write `\\\\` for one `\\`)",
            );
            None
        }
    }
}

/// `{ regex = "...", replacement = "..." }`: both required, the replacement may only refer
/// to groups the regex has.
pub(crate) fn rewrite_rule(cx: &mut Ctx, t: &mut Table) -> Option<RewriteRule> {
    let re = t.literal(cx, "regex");
    let rep = t.literal(cx, "replacement");
    let re = t.required(cx, "regex", re, "\"(.*)@.*\"");
    let rep = t.required(cx, "replacement", rep, "\"$1\"");
    let (re_s, rep) = (re?, rep?);
    let regex = regex(cx, &re_s, &t.key_path("regex"))?;
    check_replacement(cx, &regex, &rep, &t.key_path("replacement"))?;
    Some(RewriteRule {
        regex,
        replacement: rep.value,
    })
}

/// Every `$N` / `${N}` / `$name` / `${name}` in `rep` must be a group of `regex`.
fn check_replacement(cx: &mut Ctx, regex: &Regex, rep: &Str, path: &str) -> Option<()> {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let groups = regex.captures_len();
    let bytes = rep.value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
            match rep.value[i + 2..].find('}') {
                Some(end) => (&rep.value[i + 2..i + 2 + end], i + 3 + end),
                None => (&rep.value[i + 1..i + 1], i + 1),
            }
        } else {
            let len = rep.value[i + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&rep.value[i + 1..i + 1 + len], i + 1 + len)
        };
        if !name.is_empty() {
            let ok = match name.parse::<usize>() {
                Ok(n) => n < groups,
                Err(_) => names.contains(&name),
            };
            if !ok {
                cx.report(
                    rep.span.clone(),
                    path,
                    format!("refers to group `{name}`, which the regex does not have"),
                    format!(
                        "use $1..${} or a named group of the regex; write `$$` for a literal `$`",
                        groups.saturating_sub(1)
                    ),
                );
                return None;
            }
        }
        i = next.max(i + 1);
    }
    Some(())
}

/// A lower-cased email address (`name@domain`).
pub(crate) fn email(cx: &mut Ctx, s: &Str, path: &str) -> Option<String> {
    let v = s.value.trim().to_ascii_lowercase();
    let ok = v
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
        && !v.contains(char::is_whitespace);
    if ok {
        Some(v)
    } else {
        reject(
            cx,
            s,
            path,
            "is not an email address",
            "write it as \"name@example.com\"",
        )
    }
}

/// A DNS domain name, lower-cased (`example.com`).
pub(crate) fn domain(cx: &mut Ctx, s: &Str, path: &str) -> Option<String> {
    let v = s.value.trim().to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Some(v)
    } else {
        reject(
            cx,
            s,
            path,
            "is not a domain name",
            "write a bare domain such as \"example.com\" (no scheme, no @)",
        )
    }
}

/// An IP network (`10.0.0.0/8`) or a single address (`10.1.2.3`).
pub(crate) fn ip_net(cx: &mut Ctx, s: &Str, path: &str) -> Option<ipnet::IpNet> {
    let v = s.value.trim();
    if let Ok(n) = v.parse::<ipnet::IpNet>() {
        return Some(n);
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ipnet::IpNet::from(ip));
    }
    reject(
        cx,
        s,
        path,
        "is not an IP address or network",
        "write an address (\"10.0.0.5\") or a CIDR network (\"10.0.0.0/8\")",
    )
}

/// Reads a list of strings and maps each through `f`, keeping going after bad entries.
pub(crate) fn each<T>(
    cx: &mut Ctx,
    field: Field<Vec<Str>>,
    path: &str,
    mut f: impl FnMut(&mut Ctx, &Str, &str) -> Option<T>,
) -> Field<Vec<T>> {
    match field {
        Field::Absent => Field::Absent,
        Field::Bad => Field::Bad,
        Field::Ok(items) => Field::all(
            items
                .iter()
                .enumerate()
                .map(|(i, s)| f(cx, s, &format!("{path}[{i}]"))),
        ),
    }
}
