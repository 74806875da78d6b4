//! Decoders of `[server]` (listeners, TLS files, limits) and `[session]` (keys, lifetimes,
//! store). They check shapes and values only; they never open sockets or TLS files.

use std::path::PathBuf;

use super::raw::defaults as d;
use super::settings::{ServerSettings, SessionSettings, SessionStoreKind, StateSettings, TlsFiles};
use super::units::parse_duration;
use super::values::{self, each};
use super::walk::{Ctx, Field, Table};

/// A default from `raw::defaults` written as a duration string.
fn dur(text: &str) -> std::time::Duration {
    parse_duration(text).unwrap_or_default()
}

/// `[server]` (required).
pub(crate) fn server(cx: &mut Ctx, root: &mut Table) -> Option<ServerSettings> {
    let mut t = match root.table(cx, "server") {
        Field::Ok(t) => t,
        Field::Absent => {
            return root.missing_section(
                cx,
                "server",
                "add a [server] section with listen and public_url",
            )
        }
        Field::Bad => return None,
    };
    let listen = t.string(cx, "listen");
    let listen = t
        .required(cx, "listen", listen, "\"0.0.0.0:8443\"")
        .and_then(|s| values::socket_addr(cx, &s, &t.key_path("listen")));
    let public_url = t.string(cx, "public_url");
    let public_url = t
        .required(cx, "public_url", public_url, "\"https://jira.example.com\"")
        .and_then(|s| {
            values::url(
                cx,
                &s,
                &t.key_path("public_url"),
                values::UrlRule::HttpOrHttps,
                true,
            )
        });
    let tls = match t.table(cx, "tls") {
        Field::Ok(mut tls) => {
            let cert = tls.string(cx, "cert");
            let key = tls.string(cx, "key");
            let cert = tls.required(cx, "cert", cert, "\"certs/tls.crt\"");
            let key = tls.required(cx, "key", key, "\"certs/tls.key\"");
            tls.finish(cx);
            match (cert, key) {
                (Some(c), Some(k)) => Some(Some(TlsFiles {
                    cert: PathBuf::from(c.value),
                    key: PathBuf::from(k.value),
                })),
                _ => None,
            }
        }
        other => other.map(|_| None).or(None),
    };
    let admin_listen_str = t.string(cx, "admin_listen");
    let admin_listen = admin_listen_str
        .check(|s| {
            let addr = values::socket_addr(cx, &s, &t.key_path("admin_listen"))?;
            // Port 0 means "any free port" for both, so two of them never collide.
            if listen == Some(addr) && addr.port() != 0 {
                cx.report(
                    s.span.clone(),
                    &t.key_path("admin_listen"),
                    "is the same address as `listen`",
                    "give the admin listener its own port, e.g. \"127.0.0.1:9090\"",
                );
                return None;
            }
            Some(addr)
        })
        .opt();
    let path = t.key_path("trusted_proxies");
    let proxies = t.strings(cx, "trusted_proxies");
    let trusted_proxies = each(cx, proxies, &path, values::ip_net).or(Vec::new());
    let workers = t.uint(cx, "workers", 0..=1024).or(d::WORKERS).map(|w| {
        if w == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            w as usize
        }
    });
    let max_connections = t
        .uint(cx, "max_connections", 1..=10_000_000)
        .or(d::MAX_CONNECTIONS);
    let max_header_bytes = t
        .uint(cx, "max_header_bytes", 1024..=1_048_576)
        .or(d::MAX_HEADER_BYTES);
    let header_read_timeout = t
        .positive_duration(cx, "header_read_timeout")
        .or(dur(d::HEADER_READ_TIMEOUT));
    let shutdown_grace = t.duration(cx, "shutdown_grace").or(dur(d::SHUTDOWN_GRACE));
    let keepalive_timeout = t
        .positive_duration(cx, "keepalive_timeout")
        .or(dur(d::KEEPALIVE_TIMEOUT));
    t.finish(cx);
    Some(ServerSettings {
        listen: listen?,
        public_url: public_url?,
        tls: tls?,
        admin_listen: admin_listen?,
        trusted_proxies: trusted_proxies?,
        workers: workers?,
        max_connections: max_connections? as usize,
        max_header_bytes: max_header_bytes? as usize,
        header_read_timeout: header_read_timeout?,
        shutdown_grace: shutdown_grace?,
        keepalive_timeout: keepalive_timeout?,
    })
}

/// True when `name` is a valid cookie name (an RFC 9110 token).
fn is_cookie_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// `[session]` (required: it holds the cookie key).
pub(crate) fn session(
    cx: &mut Ctx,
    root: &mut Table,
    state: Option<&StateSettings>,
) -> Option<SessionSettings> {
    let mut t = match root.table(cx, "session") {
        Field::Ok(t) => t,
        Field::Absent => {
            return root.missing_section(
                cx,
                "session",
                "add a [session] section with secret = \"${USHER_SESSION_SECRET}\"",
            )
        }
        Field::Bad => return None,
    };
    let min = d::MIN_SECRET_BYTES;
    let short = |cx: &mut Ctx, span, path: &str, len: usize| {
        cx.report(
            span,
            path,
            format!("the secret is {len} bytes; it needs at least {min}"),
            "generate one with `usher keygen`",
        );
    };
    let secret_path = t.key_path("secret");
    let secret = t.secret(cx, "secret");
    let secret = t
        .required(cx, "secret", secret, "\"${USHER_SESSION_SECRET}\"")
        .and_then(|(s, span)| {
            if s.expose().len() < min {
                short(cx, span, &secret_path, s.expose().len());
                None
            } else {
                Some(s)
            }
        });
    let prev_path = t.key_path("previous_secrets");
    let previous_secrets = t
        .secrets(cx, "previous_secrets")
        .check(|list| {
            let mut ok = true;
            for (i, (s, span)) in list.iter().enumerate() {
                if s.expose().len() < min {
                    short(
                        cx,
                        span.clone(),
                        &format!("{prev_path}[{i}]"),
                        s.expose().len(),
                    );
                    ok = false;
                }
            }
            ok.then(|| list.into_iter().map(|(s, _)| s).collect())
        })
        .or(Vec::new());
    let cookie_name = t
        .string(cx, "cookie_name")
        .check(|s| {
            if is_cookie_token(&s.value) {
                Some(s.value)
            } else {
                cx.report(
                    s.span.clone(),
                    &t.key_path("cookie_name"),
                    format!("{} is not a valid cookie name", s.shown()),
                    "use letters, digits, `_` and `-`, e.g. \"_usher\"",
                );
                None
            }
        })
        .or(d::COOKIE_NAME.to_string());
    let ttl = t.positive_duration(cx, "ttl").or(dur(d::SESSION_TTL));
    let idle_timeout = t
        .positive_duration(cx, "idle_timeout")
        .or(dur(d::SESSION_IDLE));
    let revalidate_after = t
        .positive_duration(cx, "revalidate_after")
        .or(dur(d::REVALIDATE_AFTER));
    let store = t
        .choice(
            cx,
            "store",
            &[
                ("cookie", SessionStoreKind::Cookie),
                ("memory", SessionStoreKind::Memory),
                ("redis", SessionStoreKind::Redis),
            ],
        )
        .or(SessionStoreKind::Cookie);
    let redis_path = t.key_path("redis_url");
    let redis_url = t
        .secret(cx, "redis_url")
        .check(|(s, span)| {
            let e = s.expose();
            if e.starts_with("redis://") || e.starts_with("rediss://") {
                Some(s)
            } else {
                cx.report(
                    span,
                    &redis_path,
                    "is not a redis:// or rediss:// URL",
                    "write it as \"redis://host:6379\" (or a ${VAR} holding one)",
                );
                None
            }
        })
        .opt();
    let redis_url = match (store, redis_url) {
        (Some(SessionStoreKind::Redis), Some(None)) => {
            let from_state = state.and_then(|s| s.redis_url.clone());
            if from_state.is_none() && state.is_some() {
                cx.report(
                    t.span.clone(),
                    &t.key_path("store"),
                    "store = \"redis\" needs a Redis URL",
                    "set [session] redis_url or [state] redis_url",
                );
                None
            } else {
                Some(from_state)
            }
        }
        (_, r) => r,
    };
    t.finish(cx);
    Some(SessionSettings {
        secret: secret?,
        previous_secrets: previous_secrets?,
        cookie_name: cookie_name?,
        ttl: ttl?,
        idle_timeout: idle_timeout?,
        revalidate_after: revalidate_after?,
        store: store?,
        redis_url: redis_url?,
    })
}
