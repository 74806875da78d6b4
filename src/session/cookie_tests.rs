//! Tests of the cookie codec: round trips, chunking, rotation, attributes, and every
//! way a cookie can be wrong (tampered, truncated, foreign key, garbage).

use super::*;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    who: String,
    groups: Vec<String>,
}

fn secret(c: char) -> Secret {
    Secret::new(c.to_string().repeat(40))
}

fn codec(secure: bool) -> CookieCodec {
    CookieCodec::new("_usher", "session", &secret('a'), &[], secure).unwrap()
}

/// Turns Set-Cookie values into the Cookie header a browser would send back.
fn as_request_header(set: &[String]) -> String {
    set.iter()
        .filter_map(|c| c.split(';').next())
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn small() -> Payload {
    Payload {
        who: "ann".into(),
        groups: vec!["eng".into()],
    }
}

fn big(n: usize) -> Payload {
    Payload {
        who: "bob".into(),
        groups: (0..n)
            .map(|i| format!("a-long-group-name-{i}@example.com"))
            .collect(),
    }
}

#[test]
fn short_secrets_are_refused() {
    let err = CookieCodec::new("_usher", "session", &Secret::new("short"), &[], false).unwrap_err();
    assert!(matches!(err, CookieError::WeakSecret(5)));
    assert!(err.to_string().contains("usher keygen"));
    assert!(!err.to_string().contains("short\""));
}

#[test]
fn round_trip_with_secure_attributes() {
    let c = codec(true);
    let set = c.encode(&small(), Some(Duration::from_secs(3600))).unwrap();
    assert_eq!(set.len(), MAX_CHUNKS);
    let first = &set[0];
    assert!(first.starts_with("__Host-_usher=1."), "{first}");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(first.contains(attr), "{attr} missing in {first}");
    }
    assert!(!first.contains("Domain"));
    assert!(!first.contains("ann"), "value is encrypted");
    // Higher chunks are removed so stale ones never linger.
    assert!(set[1].starts_with("__Host-_usher_1=;") && set[1].contains("Max-Age=0"));
    let back: Payload = c.decode(&as_request_header(&set)).unwrap();
    assert_eq!(back, small());
}

#[test]
fn plain_http_has_no_host_prefix_and_no_secure() {
    let c = codec(false);
    let set = c.encode(&small(), None).unwrap();
    assert!(set[0].starts_with("_usher=1."));
    assert!(!set[0].contains("Secure"));
    assert!(!set[0].contains("Max-Age"));
    assert_eq!(c.decode::<Payload>(&as_request_header(&set)), Some(small()));
}

#[test]
fn large_values_are_chunked_and_reassembled() {
    let c = codec(true);
    let value = big(300);
    let set = c.encode(&value, None).unwrap();
    let header = as_request_header(&set);
    assert!(header.contains("__Host-_usher_1=") && header.contains("__Host-_usher_2="));
    for s in &set {
        assert!(
            s.len() < 4000,
            "each Set-Cookie stays under the browser limit"
        );
    }
    assert_eq!(c.decode::<Payload>(&header), Some(value));
    // A missing chunk means no session.
    let without_2: String = header
        .split("; ")
        .filter(|p| !p.starts_with("__Host-_usher_2="))
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(c.decode::<Payload>(&without_2), None);
}

#[test]
fn too_large_values_are_an_error_not_a_truncation() {
    let err = codec(true).encode(&big(2000), None).unwrap_err();
    assert!(matches!(err, CookieError::TooLarge { .. }), "{err}");
}

#[test]
fn clear_removes_every_chunk() {
    let set = codec(true).clear();
    assert_eq!(set.len(), MAX_CHUNKS);
    assert!(set[0].starts_with("__Host-_usher=;"));
    for (i, s) in set.iter().enumerate().skip(1) {
        assert!(s.starts_with(&format!("__Host-_usher_{i}=;")));
    }
    for s in &set {
        assert!(s.contains("Max-Age=0") && s.contains("Path=/") && s.contains("Secure"));
    }
}

#[test]
fn rotation_decodes_with_previous_secrets() {
    let old = CookieCodec::new("_usher", "session", &secret('o'), &[], true).unwrap();
    let header = as_request_header(&old.encode(&small(), None).unwrap());
    let rotated =
        CookieCodec::new("_usher", "session", &secret('n'), &[secret('o')], true).unwrap();
    assert_eq!(rotated.decode::<Payload>(&header), Some(small()));
    // New cookies use the new key: the old-only codec cannot read them.
    let fresh = as_request_header(&rotated.encode(&small(), None).unwrap());
    assert_eq!(old.decode::<Payload>(&fresh), None);
    // Without the previous secret the old cookie is dead.
    let dropped = CookieCodec::new("_usher", "session", &secret('n'), &[], true).unwrap();
    assert_eq!(dropped.decode::<Payload>(&header), None);
}

#[test]
fn purposes_have_separate_keys_and_names_bind_values() {
    let session = codec(true);
    let login = CookieCodec::new("_usher", "login", &secret('a'), &[], true).unwrap();
    let header = as_request_header(&session.encode(&small(), None).unwrap());
    assert_eq!(login.decode::<Payload>(&header), None);
    // A value sealed for one name does not open under another (AAD = name).
    let other = CookieCodec::new("_other", "session", &secret('a'), &[], true).unwrap();
    let swapped = header.replace("__Host-_usher=", "__Host-_other=");
    assert_eq!(other.decode::<Payload>(&swapped), None);
}

#[test]
fn tampered_truncated_and_garbage_cookies_are_none() {
    let c = codec(true);
    let header = as_request_header(&c.encode(&small(), None).unwrap());
    let value = find_cookie(&header, "__Host-_usher").unwrap().to_string();
    let mut cases = vec![
        String::new(),
        "__Host-_usher=".into(),
        "__Host-_usher=1.".into(),
        "__Host-_usher=garbage".into(),
        "__Host-_usher=0.AAAA".into(),
        "__Host-_usher=99.AAAA".into(),
        "__Host-_usher=2.AAAA".into(),
        "_usher=".to_string() + &value,
        format!("__Host-_usher={}", &value[..value.len() - 4]),
        format!("__Host-_usher={}", &value[..10]),
    ];
    // Flip one base64 character at several positions.
    for pos in [2, 10, value.len() / 2, value.len() - 2] {
        let mut bytes = value.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        cases.push(format!(
            "__Host-_usher={}",
            String::from_utf8(bytes).unwrap()
        ));
    }
    for h in cases {
        assert_eq!(c.decode::<Payload>(&h), None, "{h}");
    }
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic_or_decode(h in "\\PC{0,300}", v in "[A-Za-z0-9+/=.]{0,200}") {
        let c = codec(true);
        prop_assert_eq!(c.decode::<Payload>(&h), None);
        prop_assert_eq!(c.decode::<Payload>(&format!("__Host-_usher={v}")), None);
        prop_assert_eq!(c.decode::<Payload>(&format!("__Host-_usher=1.{v}")), None);
    }
}

fn names() -> UsherCookieNames {
    UsherCookieNames {
        session: "__Host-_usher".into(),
        login_prefix: "__Host-_usher_login_".into(),
    }
}

proptest! {
    /// The memchr walk cuts exactly where `split(';')` does.
    #[test]
    fn pieces_match_split(s in "[a-z=; \t\u{e9}]{0,40}") {
        let ours: Vec<&[u8]> = pieces(s.as_bytes()).collect();
        let std: Vec<&[u8]> = s.split(';').map(str::as_bytes).collect();
        prop_assert_eq!(ours, std);
    }
}

#[test]
fn usher_cookies_are_told_apart_in_one_walk() {
    let n = names();
    for (header, expected) in [
        ("", UsherCookiesIn::None),
        ("JSESSIONID=a; b=2", UsherCookiesIn::None),
        // Look-alikes are not ours.
        ("__Host-_usherx=1; __Host-_usher_x=2", UsherCookiesIn::None),
        ("__Host-_usher=1.a", UsherCookiesIn::All),
        (
            "__Host-_usher=1.a;  __Host-_usher_1=b; __Host-_usher_login_k=c",
            UsherCookiesIn::All,
        ),
        ("__Host-_usher=1.a; JSESSIONID=x", UsherCookiesIn::Mixed),
        (
            "JSESSIONID=x; __Host-_usher_login_k=c",
            UsherCookiesIn::Mixed,
        ),
    ] {
        assert_eq!(
            usher_cookies_in(header.as_bytes(), &n),
            expected,
            "{header:?}"
        );
    }
}

#[test]
fn strip_removes_only_usher_cookies_and_keeps_others_exact() {
    let strip = |h: &str| strip_usher_cookies(h.as_bytes(), &names());
    let header = "JSESSIONID=AbC.node1; __Host-_usher=1.xyz; atl.xsrf.token=B|x|lin; __Host-_usher_1=abc; __Host-_usher_login_k3j=zz;seraph.rememberme.cookie=1%3A2; __Host-_usher_x=keep; __Host-_usher_12=gone";
    assert_eq!(
        strip(header).as_deref(),
        Some(&b"JSESSIONID=AbC.node1; atl.xsrf.token=B|x|lin; seraph.rememberme.cookie=1%3A2; __Host-_usher_x=keep"[..])
    );
    assert_eq!(strip("__Host-_usher=1.a; __Host-_usher_1=b"), None);
    assert_eq!(strip(""), None);
    assert_eq!(
        strip("a=\"quoted; v\"").as_deref(),
        Some(&b"a=\"quoted; v\""[..])
    );
    assert_eq!(strip("flag; b=2").as_deref(), Some(&b"flag; b=2"[..]));
    // Bytes that are not UTF-8 (a legacy site's Latin-1 cookie) pass unchanged.
    assert_eq!(
        strip_usher_cookies(b"city=Z\xfcrich; __Host-_usher=1.a", &names()).as_deref(),
        Some(&b"city=Z\xfcrich"[..])
    );
}

#[test]
fn find_cookie_returns_the_first_trimmed_value() {
    let header = " a=1 ;__Host-_usher = 1.xyz ; __Host-_usher=second; é=2";
    assert_eq!(find_cookie(header, "__Host-_usher"), Some("1.xyz"));
    assert_eq!(find_cookie(header, "é"), Some("2"));
    assert_eq!(find_cookie(header, "a"), Some("1"));
    assert_eq!(find_cookie(header, "b"), None);
    assert_eq!(find_cookie("flag; __Host-_usher", "__Host-_usher"), None);
}
