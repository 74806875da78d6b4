//! Where a request goes: usher's own `/_usher/` endpoints or one upstream chosen
//! by host, and the one normalized path that every later decision (public,
//! passthrough, reserved prefix) is made on. The path the upstream routes must be
//! the path usher matched, so anything a servlet container would re-interpret
//! (dot segments, `;` parameters hiding them, encoded `#`) is refused here.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The reserved prefix answered by usher itself and never forwarded.
pub const RESERVED_PREFIX: &str = "/_usher/";

/// Why a request line is refused before routing (all map to 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    /// `#` or `%23` in the path: a fragment never belongs in a request and would
    /// widen path rules (GHSA-pxq7-h93f-9jrg).
    #[error("the request path contains '#' or '%23'")]
    Fragment,
    /// NUL or another control character, raw or percent-encoded.
    #[error("the request path contains a control character")]
    ControlCharacter,
    /// `.` or `..` segments (raw, encoded, or hidden behind `;` parameters) that the
    /// upstream would resolve to a different path than the one usher checked.
    #[error("the request path contains '.' or '..' segments")]
    DotSegment,
    /// A backslash, which some servers treat as `/`.
    #[error("the request path contains a backslash")]
    Backslash,
    /// Not an origin-form path starting with `/`.
    #[error("the request path does not start with '/'")]
    NotAbsolute,
    /// Percent-decoding produced invalid UTF-8.
    #[error("the request path is not valid UTF-8 after percent-decoding")]
    InvalidEncoding,
}

/// Checks a raw request path and returns the decoded form used for matching
/// (`;` path parameters removed per segment, as Tomcat does). The raw path is what
/// is forwarded; after these checks it cannot be resolved by the upstream to a
/// path different from the returned one.
pub fn normalized_path(raw: &str) -> Result<Cow<'_, str>, PathRejection> {
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if is_plain_path(raw) {
        // Nothing to decode, strip or reject: the path is its own normal form.
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw)
}

/// The full normalization, for paths [`is_plain_path`] does not vouch for.
fn normalize_slow(raw: &str) -> Result<Cow<'_, str>, PathRejection> {
    let lower_has = |needle: &str| raw.len() >= needle.len() && contains_ignore_case(raw, needle);
    if raw.contains('#') || lower_has("%23") {
        return Err(PathRejection::Fragment);
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathRejection::InvalidEncoding)?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(PathRejection::ControlCharacter);
    }
    if decoded.contains('\\') {
        return Err(PathRejection::Backslash);
    }
    if decoded.contains('#') {
        return Err(PathRejection::Fragment);
    }
    let has_params = decoded.contains(';');
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        if segment == "." || segment == ".." {
            return Err(PathRejection::DotSegment);
        }
    }
    if has_params {
        let stripped: Vec<&str> = decoded
            .split('/')
            .map(|s| s.split(';').next().unwrap_or(""))
            .collect();
        return Ok(Cow::Owned(stripped.join("/")));
    }
    Ok(decoded)
}

/// A path made only of bytes that need no decision (no `%`, `#`, `\`, `;`,
/// controls, spaces or non-ASCII) and without a `.` or `..` segment: the slow path
/// would return it unchanged. Most request paths are like this.
fn is_plain_path(raw: &str) -> bool {
    let b = raw.as_bytes();
    let safe = b
        .iter()
        .all(|&c| c.is_ascii_graphic() && !matches!(c, b'%' | b'#' | b'\\' | b';'));
    // A `.` right after a `/` may start a dot segment: leave those to the full check.
    safe && !b.windows(2).any(|w| w == b"/.")
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether a (normalized) path is one of usher's own endpoints.
pub fn is_reserved(path: &str) -> bool {
    path.starts_with(RESERVED_PREFIX) || path == "/_usher"
}

/// Maps a request host to an upstream index. Hosts are compared case-insensitively,
/// with the port ignored unless the configured host names one; unknown hosts go to
/// the first (default) upstream.
#[derive(Debug, Clone)]
pub struct HostTable {
    hosts: Vec<(String, usize)>,
}

impl HostTable {
    /// Builds the table from configured hosts, in upstream order.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        HostTable {
            hosts: hosts
                .into_iter()
                .enumerate()
                .map(|(i, h)| (h.to_ascii_lowercase(), i))
                .collect(),
        }
    }

    /// The upstream index for a `Host`/`:authority` value.
    pub fn pick(&self, host: &str) -> usize {
        if self.hosts.len() <= 1 {
            return 0;
        }
        let bare = strip_port(host);
        for (h, i) in &self.hosts {
            if h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(bare) {
                return *i;
            }
        }
        0
    }
}

/// `host:port` -> `host` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast path answers exactly what the full normalization would.
        #[test]
        fn plain_path_shortcut_agrees_with_the_full_check(
            tail in "[a-zA-Z0-9./;%#\\\\_~ -]{0,24}"
        ) {
            let raw = format!("/{tail}");
            if is_plain_path(&raw) {
                proptest::prop_assert_eq!(normalize_slow(&raw), Ok(Cow::Borrowed(raw.as_str())));
            }
        }
    }

    #[test]
    fn plain_path_shortcut_leaves_doubtful_paths_to_the_full_check() {
        for p in [
            "/a%2e", "/a#b", "/a\\b", "/a;x", "/.", "/a/..", "/a b", "/a\tb",
        ] {
            assert!(!is_plain_path(p), "{p}");
        }
        for p in ["/", "/browse/ABC-1", "/a/b..c/d.", "/x.js"] {
            assert!(is_plain_path(p), "{p}");
        }
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        for p in [
            "/",
            "/browse/ABC-1",
            "/rest/api/2/issue",
            "/s/en_GB/x.js",
            "/a%20b",
        ] {
            assert!(normalized_path(p).is_ok(), "{p}");
        }
        assert_eq!(normalized_path("/a%20b").unwrap(), "/a b");
        assert_eq!(normalized_path("/a/b..c/d.").unwrap(), "/a/b..c/d.");
    }

    #[test]
    fn fragments_are_rejected_in_every_form() {
        for p in ["/a#b", "/a%23b", "/a%2523", "/foo/%23/bar"] {
            let r = normalized_path(p);
            assert!(
                matches!(r, Err(PathRejection::Fragment)) || p == "/a%2523",
                "{p}: {r:?}"
            );
        }
        // `%2523` decodes once to `%23`, which is literal text, not a fragment: the
        // upstream decodes once too, so it sees the same literal `%23`.
        assert_eq!(normalized_path("/a%2523").unwrap(), "/a%23");
    }

    #[test]
    fn dot_segments_are_rejected_raw_encoded_and_behind_params() {
        for p in [
            "/s/../secure/admin",
            "/s/./x",
            "/s/..",
            "/s/%2e%2e/secure",
            "/s/%2E%2E/secure",
            "/s/.%2e/secure",
            "/s/..;/secure",
            "/s/..;jsessionid=1/secure",
            "/s/%2e%2e%3b/secure",
        ] {
            assert_eq!(normalized_path(p), Err(PathRejection::DotSegment), "{p}");
        }
    }

    #[test]
    fn params_are_stripped_for_matching() {
        assert_eq!(normalized_path("/s/x;jsessionid=1/y").unwrap(), "/s/x/y");
    }

    #[test]
    fn control_characters_and_backslashes_are_rejected() {
        assert_eq!(
            normalized_path("/a%00b"),
            Err(PathRejection::ControlCharacter)
        );
        assert_eq!(
            normalized_path("/a%0d%0aSet-Cookie:x"),
            Err(PathRejection::ControlCharacter)
        );
        assert_eq!(normalized_path("/a%5cb"), Err(PathRejection::Backslash));
        assert_eq!(normalized_path("*"), Err(PathRejection::NotAbsolute));
        assert_eq!(normalized_path("/%ff"), Err(PathRejection::InvalidEncoding));
    }

    #[test]
    fn reserved_prefix() {
        assert!(is_reserved("/_usher/healthz"));
        assert!(is_reserved("/_usher"));
        assert!(!is_reserved("/_usherx"));
        assert!(!is_reserved("/x/_usher/"));
    }

    #[test]
    fn hosts_pick_upstreams() {
        let t = HostTable::new([
            "jira.example.com",
            "wiki.example.com",
            "git.example.com:8443",
        ]);
        assert_eq!(t.pick("wiki.example.com"), 1);
        assert_eq!(t.pick("WIKI.example.com:443"), 1);
        assert_eq!(t.pick("git.example.com:8443"), 2);
        assert_eq!(t.pick("unknown"), 0);
        assert_eq!(t.pick(""), 0);
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
