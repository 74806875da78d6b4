//! Header policy at the trust boundary: which client headers may reach the
//! upstream and which usher rebuilds itself. Order matters and is fixed here:
//! (1) forged identity headers are dropped in every spelling, (2) hop-by-hop
//! headers (including names a client lists in `Connection:`) are dropped,
//! (3) the forwarded-header family is rebuilt from the real connection,
//! (4) only then does usher set its own identity headers. Pure functions over
//! `HeaderMap`; no I/O.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Compares a header name with a policy name, ignoring ASCII case and treating
/// `_` and `.` as `-` (WSGI/PHP upstreams fold those, advisory GHSA-vjrc-mh2v-45x6).
pub fn same_header(name: &str, policy_lowercase_dashed: &str) -> bool {
    let (a, b) = (name.as_bytes(), policy_lowercase_dashed.as_bytes());
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            let x = match x {
                b'_' | b'.' => b'-',
                other => other.to_ascii_lowercase(),
            };
            x == y
        })
}

/// The folded form of a header name: lower-case with `_`/`.` as `-`.
pub fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            other => other.to_ascii_lowercase() as char,
        })
        .collect()
}

/// A bit per name length (lengths of 63 and more share the top bit): a header
/// name whose length is not in the mask is not in the list, which rejects most
/// names of a request with one test instead of a comparison per listed name.
const fn length_mask(names: &[&str]) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < names.len() {
        mask |= length_bit(names[i].len());
        i += 1;
    }
    mask
}

const fn length_bit(len: usize) -> u64 {
    1u64 << if len < 63 { len } else { 63 }
}

/// Headers that describe one hop only (RFC 9110 §7.6.1) and never travel on.
const HOP_BY_HOP_LENGTHS: u64 = length_mask(&HOP_BY_HOP);
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as header names, in the same order, for removal.
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_INDEX: usize = 0;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Forwarding headers that usher rebuilds; from an untrusted peer they are dropped
/// (in every spelling) so an upstream never acts on a client's claim about its
/// own address, scheme, port, prefix or URI (advisories GHSA-7x63, GHSA-6384, GHSA-3q9r).
const FORWARDED_FAMILY_LENGTHS: u64 = length_mask(&FORWARDED_FAMILY);
const FORWARDED_FAMILY: [&str; 16] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-ssl",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "front-end-https",
];

/// The set of header names no client may send (identity + assertion headers of
/// every upstream), stored folded. Built once from the config.
#[derive(Debug, Clone, Default)]
pub struct ForbiddenHeaders {
    folded: Vec<String>,
    /// [`length_mask`] of `folded` (folding keeps the length).
    lengths: u64,
}

impl ForbiddenHeaders {
    /// Builds the set from configured header names (any spelling).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut folded: Vec<String> = names.into_iter().map(fold).collect();
        folded.sort();
        folded.dedup();
        let lengths = folded.iter().fold(0, |m, f| m | length_bit(f.len()));
        ForbiddenHeaders { folded, lengths }
    }

    /// Whether `name` is a spelling of a forbidden header.
    pub fn matches(&self, name: &str) -> bool {
        self.lengths & length_bit(name.len()) != 0
            && self.folded.iter().any(|f| same_header(name, f))
    }
}

/// Removes every header whose name satisfies `doomed`; allocates only when one is found.
fn remove_matching(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|k| doomed(k.as_str()))
        .cloned()
        .collect();
    for name in found {
        headers.remove(&name);
    }
}

/// Whether a header name is part of the rebuilt forwarding family, in any spelling.
fn is_forwarded_family(name: &str) -> bool {
    FORWARDED_FAMILY_LENGTHS & length_bit(name.len()) != 0
        && FORWARDED_FAMILY.iter().any(|f| same_header(name, f))
}

/// The position in [`HOP_BY_HOP`] of a header name or `Connection` option (any
/// case), if it is hop-by-hop.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    if HOP_BY_HOP_LENGTHS & length_bit(name.len()) == 0 {
        return None;
    }
    HOP_BY_HOP.iter().position(|h| h.eq_ignore_ascii_case(name))
}

/// Step 1: removes every forged identity/assertion header, whatever its spelling
/// or count. Runs first, on every request, authenticated or not.
pub fn strip_forged(headers: &mut HeaderMap, forbidden: &ForbiddenHeaders) {
    if forbidden.folded.is_empty() {
        return;
    }
    remove_matching(headers, |name| forbidden.matches(name));
}

/// What a request wants beyond plain HTTP: a protocol switch to tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Upgrade` header value to pass on (e.g. `websocket`).
    pub protocol: HeaderValue,
}

/// Step 2: removes hop-by-hop headers and every header named in `Connection`.
/// Returns the requested protocol upgrade, which the caller re-adds with a clean
/// `Connection: upgrade`. Names usher sets later are re-set afterwards, so a client
/// naming them in `Connection:` cannot delete usher's own values (GHSA-62c8).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<UpgradeRequest> {
    // One pass over the (few) names present records which hop-by-hop names are
    // there; `Connection` is itself one, so with none present (most requests)
    // there is nothing to read or remove.
    let present = headers
        .keys()
        .filter_map(|k| hop_by_hop_index(k.as_str()))
        .fold(0u16, |bits, i| bits | 1 << i);
    if present == 0 {
        return None;
    }
    let mut listed: Vec<HeaderName> = Vec::new();
    let mut wants_upgrade = false;
    if present & 1 << CONNECTION_INDEX != 0 {
        // Read and removed in one look-up.
        if let Entry::Occupied(entry) = headers.entry(header::CONNECTION) {
            for value in entry.remove_entry_mult().1 {
                // An upstream's usual `keep-alive` names only a hop-by-hop header,
                // removed below if present: nothing to split or look up.
                if value.as_bytes().eq_ignore_ascii_case(b"keep-alive") {
                    continue;
                }
                let Ok(text) = value.to_str() else { continue };
                for token in text.split(',') {
                    let token = token.trim();
                    if token.eq_ignore_ascii_case("upgrade") {
                        wants_upgrade = true;
                    } else if hop_by_hop_index(token).is_some() {
                        // Removed below with the other hop-by-hop names if present.
                    } else if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                        listed.push(name);
                    }
                }
            }
        }
    }
    let upgrade = if wants_upgrade {
        headers
            .get(header::UPGRADE)
            .cloned()
            .map(|protocol| UpgradeRequest { protocol })
    } else {
        None
    };
    for name in listed {
        headers.remove(&name);
    }
    // `Connection` itself is already gone.
    let rest = present & !(1 << CONNECTION_INDEX);
    for (i, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
        if rest & 1 << i != 0 {
            headers.remove(name);
        }
    }
    upgrade
}

/// Per-connection facts the forwarding headers are built from, with the values
/// cached: a keep-alive connection sends many requests from one peer to one host,
/// so the common case costs no allocation.
#[derive(Debug)]
pub struct ConnForwarding {
    /// The TCP peer address.
    pub ip: IpAddr,
    /// `https` when the client reached usher over TLS.
    pub proto: &'static str,
    ip_value: HeaderValue,
    node: String,
    last: std::sync::Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl ConnForwarding {
    /// Prepares the values for one client connection.
    pub fn new(ip: IpAddr, tls: bool) -> Self {
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        ConnForwarding {
            ip,
            proto: if tls { "https" } else { "http" },
            ip_value: HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            node,
            last: std::sync::Mutex::new(None),
        }
    }

    /// `for=..;proto=..;host=..` for this connection and `host`.
    fn forwarded_element(&self, host: &HeaderValue) -> HeaderValue {
        if let Ok(last) = self.last.lock() {
            if let Some((h, v)) = last.as_ref() {
                if h == host {
                    return v.clone();
                }
            }
        }
        let mut element = String::with_capacity(48);
        self.push_element(&mut element, host.to_str().unwrap_or(""));
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(element))
            .unwrap_or_else(|_| HeaderValue::from_static("for=unknown"));
        if let Ok(mut last) = self.last.lock() {
            *last = Some((host.clone(), value.clone()));
        }
        value
    }

    fn push_element(&self, out: &mut String, host: &str) {
        out.push_str("for=");
        out.push_str(&self.node);
        out.push_str(";proto=");
        out.push_str(self.proto);
        out.push_str(";host=");
        push_quoted_if_needed(out, host);
    }
}

/// Whether `ip` is one of the configured trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Step 3: rebuilds `X-Forwarded-For/-Proto/-Host` and `Forwarded`. From a trusted
/// proxy the chain is extended; from anyone else every forwarding header (in every
/// spelling) is dropped and rebuilt from the connection itself.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    conn: &ConnForwarding,
    host: &HeaderValue,
    trusted: bool,
) {
    if !trusted {
        remove_matching(headers, is_forwarded_family);
    }
    if !trusted || !headers.keys().any(|k| is_forwarded_family(k.as_str())) {
        // Nothing to extend (the usual case): four inserts, no look-ups.
        headers.insert(X_FORWARDED_FOR.clone(), conn.ip_value.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(conn.proto),
        );
        if !host.is_empty() {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        headers.insert(FORWARDED.clone(), conn.forwarded_element(host));
        return;
    }
    match join_existing(headers, &X_FORWARDED_FOR) {
        Some(prev) => {
            let xff = format!("{prev}, {}", conn.ip);
            insert_owned(headers, &X_FORWARDED_FOR, xff);
        }
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), conn.ip_value.clone());
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(conn.proto),
        );
    }
    if !headers.contains_key(&X_FORWARDED_HOST) && !host.is_empty() {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    match join_existing(headers, &FORWARDED) {
        Some(prev) => {
            let mut element = prev + ", ";
            conn.push_element(&mut element, host.to_str().unwrap_or(""));
            insert_owned(headers, &FORWARDED, element);
        }
        None => {
            headers.insert(FORWARDED.clone(), conn.forwarded_element(host));
        }
    }
}

/// Joins repeated header lines into one comma-separated value (RFC 9110 §5.3).
fn join_existing(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let Ok(s) = v.to_str() else { continue };
        match &mut out {
            Some(acc) => {
                acc.push_str(", ");
                acc.push_str(s);
            }
            None => out = Some(s.to_owned()),
        }
    }
    out
}

/// `Forwarded` host values with `:` must be quoted (RFC 7239 §4).
fn push_quoted_if_needed(out: &mut String, host: &str) {
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        out.push_str(host);
    } else {
        out.push('"');
        out.extend(host.chars().filter(|&c| c != '"'));
        out.push('"');
    }
}

/// Inserts a header value built in a `String` without copying it again.
fn insert_owned(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// The request id to use: the client's if it is a short printable token, else a
/// fresh one. Ids travel to the upstream and back in `X-Request-Id`.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            return v.clone();
        }
    }
    new_request_id()
}

/// A fresh random 128-bit id in hex.
///
/// The id is cut from a per-thread buffer shared by the next 127 ids, so making
/// one costs no allocation and copying it (into the response and the access log)
/// only counts a reference, where `HeaderValue::from_bytes` would allocate once
/// for the value and once more on its first clone.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const LEN: usize = 32;
    thread_local! {
        static ARENA: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    let n: u128 = rand::random();
    let mut buf = [0u8; LEN];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    let cut = ARENA.try_with(|arena| {
        let mut arena = arena.try_borrow_mut().ok()?;
        if arena.capacity() - arena.len() < LEN {
            *arena = bytes::BytesMut::with_capacity(LEN * 128);
        }
        arena.extend_from_slice(&buf);
        Some(arena.split().freeze())
    });
    let bytes = match cut {
        Ok(Some(b)) => b,
        // Thread teardown or re-entry: a plain copy does the same job.
        _ => bytes::Bytes::copy_from_slice(&buf),
    };
    // Hex digits are always a valid header value.
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The `x-request-id` header name.
pub fn request_id_header() -> HeaderName {
    X_REQUEST_ID.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn folding_treats_case_underscore_and_dot_alike() {
        for spelling in [
            "x-forwarded-user",
            "X-Forwarded-User",
            "x_forwarded_user",
            "X.Forwarded.User",
            "x-forwarded_user",
            "X_FORWARDED.USER",
        ] {
            assert!(same_header(spelling, "x-forwarded-user"), "{spelling}");
        }
        assert!(!same_header("x-forwarded-users", "x-forwarded-user"));
        assert!(!same_header("x-forwarded-use", "x-forwarded-user"));
        assert!(!same_header("xxforwarded-user", "x-forwarded-user"));
    }

    #[test]
    fn forged_identity_headers_are_removed_in_every_spelling_and_count() {
        let forbidden = ForbiddenHeaders::new(["X-Forwarded-User", "X-Usher-Assertion"]);
        let mut h = map(&[
            ("x-forwarded-user", "admin"),
            ("x-forwarded-user", "admin2"),
            ("x_forwarded_user", "admin"),
            ("x.forwarded.user", "admin"),
            ("x-usher-assertion", "forged.jwt"),
            ("x_usher.assertion", "forged.jwt"),
            ("accept", "text/html"),
        ]);
        strip_forged(&mut h, &forbidden);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("accept").unwrap(), "text/html");
    }

    #[test]
    fn connection_listed_names_and_hop_by_hop_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Custom, x-forwarded-user"),
            ("connection", "te"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("cookie", "a=b"),
        ]);
        let up = strip_hop_by_hop(&mut h);
        assert_eq!(up, None);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("cookie"));
    }

    /// Strips `pairs` (no upgrade in them) and checks that only `kept` is left.
    fn assert_stripped_to(pairs: &[(&str, &str)], kept: &str) {
        let mut h = map(pairs);
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(kept), "{h:?}");
    }

    #[test]
    fn a_plain_keep_alive_value_does_not_hide_the_next_connection_line() {
        // The usual upstream answer: only `Connection` goes.
        assert_stripped_to(&[("connection", "keep-alive"), ("etag", "\"x\"")], "etag");
        // A `keep-alive` line skipped without parsing; the next one still counts.
        assert_stripped_to(
            &[
                ("connection", "Keep-Alive"),
                ("connection", "x-secret"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("etag", "\"x\""),
            ],
            "etag",
        );
    }

    #[test]
    fn every_listed_option_names_a_field_to_drop_even_close() {
        // RFC 9110 §7.6.1: a field named like any listed option goes, `close` too.
        assert_stripped_to(
            &[
                ("connection", "close, Keep-Alive"),
                ("close", "x"),
                ("keep-alive", "timeout=5"),
                ("accept", "*/*"),
            ],
            "accept",
        );
    }

    #[test]
    fn each_hop_by_hop_name_goes_on_its_own_in_any_case() {
        for (name, removable) in HOP_BY_HOP.iter().zip(&HOP_BY_HOP_NAMES) {
            assert_eq!(removable.as_str(), *name);
            let mut h = map(&[(&name.to_ascii_uppercase(), "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
            assert!(h.contains_key("accept"));
        }
        // Options listed in any case name the fields to drop.
        let mut h = map(&[("connection", "TE, X-Gone"), ("x-gone", "1"), ("te", "t")]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn headers_without_hop_by_hop_names_are_left_alone() {
        let mut h = map(&[("accept", "*/*"), ("cookie", "a=b"), ("x-te", "1")]);
        let before = h.clone();
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert_eq!(h, before);
    }

    #[test]
    fn upgrade_is_reported_and_connection_removed() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        let up = strip_hop_by_hop(&mut h).unwrap();
        assert_eq!(up.protocol, "websocket");
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("upgrade"));
        assert!(h.contains_key("sec-websocket-key"));
    }

    #[test]
    fn untrusted_peer_cannot_inject_forwarding_headers() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x_forwarded_host", "evil.example"),
            ("x-forwarded-uri", "/public"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("X.Forwarded.Port", "443"),
        ]);
        let conn = ConnForwarding::new("10.0.0.9".parse().unwrap(), false);
        let host = HeaderValue::from_static("jira.example.com");
        set_forwarded(&mut h, &conn, &host, false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "jira.example.com");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=10.0.0.9;proto=http;host=jira.example.com"
        );
        assert!(!h.contains_key("x-forwarded-uri"));
        assert!(!h.contains_key("x-real-ip"));
        assert!(!h.contains_key("x.forwarded.port"));
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn trusted_peer_extends_the_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        let conn = ConnForwarding::new("::1".parse().unwrap(), false);
        let host = HeaderValue::from_static("jira.example.com:8443");
        set_forwarded(&mut h, &conn, &host, true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 5.6.7.8, ::1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=1.2.3.4, for=\"[::1]\";proto=http;host=\"jira.example.com:8443\""
        );
    }

    #[test]
    fn cached_forwarded_value_follows_the_host() {
        let conn = ConnForwarding::new("10.0.0.9".parse().unwrap(), true);
        for host in ["a.test", "a.test", "b.test", "a.test"] {
            let mut h = HeaderMap::new();
            set_forwarded(&mut h, &conn, &HeaderValue::from_static(host), false);
            assert_eq!(
                h.get("forwarded").unwrap(),
                &format!("for=10.0.0.9;proto=https;host={host}")
            );
            assert_eq!(h.get("x-forwarded-host").unwrap(), host);
            assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        }
    }

    #[test]
    fn trust_is_by_cidr() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::1".parse().unwrap(), &nets));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
        let h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(request_id(&h), "abc-123");
        let long = "a".repeat(200);
        let h = map(&[("x-request-id", &long)]);
        assert_eq!(request_id(&h).len(), 32);
        let h = map(&[("x-request-id", "a b")]);
        assert_eq!(request_id(&h).len(), 32);
        assert_ne!(new_request_id(), new_request_id());
    }
}
