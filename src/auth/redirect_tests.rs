//! Tests for the `rd` guard: the open-redirect corpus, generated variants, and the
//! positive cases that must keep working.

use super::*;
use proptest::prelude::*;

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The property every accepted value must have when no absolute host is allowed:
/// a same-origin path with exactly one leading slash.
fn assert_neutral(input: &str, result: &Result<SafeRedirect, RedirectError>) {
    if let Ok(ok) = result {
        let v = ok.as_str();
        assert!(ok.is_relative(), "{input:?} accepted as absolute {v:?}");
        assert!(v.starts_with('/'), "{input:?} -> {v:?}");
        assert!(!v.starts_with("//"), "{input:?} -> {v:?}");
        assert!(!v.contains('\\'), "{input:?} -> {v:?}");
        assert!(
            v.is_ascii() && !v.contains(['\t', '\n', '\r', ' ']),
            "{input:?} -> {v:?}"
        );
        // A browser resolving it against our origin stays on our origin.
        let base = url::Url::parse("https://jira.example.com/some/page").unwrap();
        let resolved = base.join(v).unwrap();
        assert_eq!(
            resolved.host_str(),
            Some("jira.example.com"),
            "{input:?} -> {v:?}"
        );
        assert_eq!(resolved.scheme(), "https");
    }
}

fn corpus() -> Vec<String> {
    let text = include_str!("../../tests/fixtures/openredirects.txt");
    text.lines().map(|l| l.to_string()).collect()
}

#[test]
fn corpus_has_all_payloads() {
    assert_eq!(corpus().len(), 559);
}

#[test]
fn every_open_redirect_payload_is_rejected_or_same_origin() {
    let allowed = hosts(&["jira.example.com"]);
    let mut accepted = Vec::new();
    for line in corpus() {
        let r = validate_redirect(&line, &allowed);
        assert_neutral(&line, &r);
        if r.is_ok() {
            accepted.push(line);
        }
    }
    // The corpus is made of attacks; the few accepted ones are harmless paths whose
    // path part never embeds another URL.
    for a in &accepted {
        let v = validate_redirect(a, &allowed).unwrap();
        let path = v.as_str().split(['?', '#']).next().unwrap_or("");
        assert!(!path.contains("//"), "{a:?} -> {v:?}");
    }
    assert!(accepted.len() <= 12, "accepted: {accepted:?}");
}

#[test]
fn corpus_with_whitelisted_domain_only_reaches_that_exact_host() {
    let allowed = hosts(&["www.whitelisteddomain.tld"]);
    for line in corpus() {
        match validate_redirect(&line, &allowed) {
            Ok(ok) if !ok.is_relative() => {
                let url = url::Url::parse(ok.as_str()).unwrap();
                assert_eq!(
                    url.host_str(),
                    Some("www.whitelisteddomain.tld"),
                    "{line:?}"
                );
                assert_eq!(url.username(), "");
                assert!(url.password().is_none());
                assert!(matches!(url.scheme(), "http" | "https"));
            }
            other => assert_neutral(&line, &other),
        }
    }
}

#[test]
fn positive_relative_paths() {
    let allowed = hosts(&["jira.example.com"]);
    for (input, want) in [
        ("/", "/"),
        ("/browse/ABC-1", "/browse/ABC-1"),
        (
            "/secure/Dashboard.jspa?selectPageId=10000",
            "/secure/Dashboard.jspa?selectPageId=10000",
        ),
        (
            "/issues/?jql=project%20%3D%20X",
            "/issues/?jql=project%20%3D%20X",
        ),
        ("/issues/?jql=project = X", "/issues/?jql=project%20=%20X"),
        ("/wiki/a#section", "/wiki/a#section"),
        ("/p/caf\u{e9}", "/p/caf%C3%A9"),
        ("/a\\b", "/a/b"),
    ] {
        let r = validate_redirect(input, &allowed).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert!(r.is_relative());
        assert_eq!(r.as_str(), want, "{input:?}");
    }
}

#[test]
fn positive_absolute_urls_on_allowed_hosts() {
    let allowed = hosts(&["jira.example.com", "Wiki.Example.com:8443"]);
    for (input, want) in [
        (
            "https://jira.example.com/browse/X-1",
            "https://jira.example.com/browse/X-1",
        ),
        ("HTTPS://JIRA.example.COM/", "https://jira.example.com/"),
        ("http://jira.example.com", "http://jira.example.com/"),
        (
            "https://wiki.example.com:8443/display/X",
            "https://wiki.example.com:8443/display/X",
        ),
    ] {
        let r = validate_redirect(input, &allowed).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert!(!r.is_relative());
        assert_eq!(r.as_str(), want);
    }
}

#[test]
fn negative_table() {
    use RedirectError::*;
    let allowed = hosts(&["jira.example.com", "wiki.example.com:8443"]);
    let cases: &[(&str, RedirectError)] = &[
        ("", Empty),
        ("//evil.com", ProtocolRelative),
        ("/\\evil.com", ProtocolRelative),
        ("\\\\evil.com", ProtocolRelative),
        ("/%2fevil.com", ProtocolRelative),
        ("/%252f%252fevil.com", ProtocolRelative),
        ("/%5cevil.com", ProtocolRelative),
        ("/\t/evil.com", ControlCharacter),
        ("/%09/evil.com", ControlCharacter),
        ("/ /evil.com", Whitespace),
        ("/https://evil.com", DoubleSlash),
        ("/a/%2f/evil.com", DoubleSlash),
        ("/\u{3000}/evil.com", Whitespace),
        ("/./evil", DotSegment),
        ("/a/../../evil", DotSegment),
        ("/%2e%2e/x", DotSegment),
        ("javascript:alert(1)", SchemeNotAllowed),
        ("data:text/html,x", SchemeNotAllowed),
        ("ftp://jira.example.com/", SchemeNotAllowed),
        ("browse/X", SchemeNotAllowed),
        ("?x=1", SchemeNotAllowed),
        ("https://evil.com/", HostNotAllowed),
        ("https://jira.example.com.evil.com/", HostNotAllowed),
        ("https://jira.example.com:444/", HostNotAllowed),
        ("https://wiki.example.com/", HostNotAllowed),
        ("https://jira.example.com@evil.com/", Userinfo),
        ("https://evil.com@jira.example.com/", Userinfo),
        ("https://@jira.example.com/", Userinfo),
        ("https://jira.example.com%2f@evil.com/", Userinfo),
        ("https://jira.example.com%40evil.com/", Malformed),
        ("https:///evil.com", ProtocolRelative),
        ("https:\\\\evil.com", HostNotAllowed),
        ("/x%0d%0aSet-Cookie:a=b", ControlCharacter),
        ("/%zz%ff", BadEncoding),
        ("/%25252525252525252f", BadEncoding),
    ];
    for (input, want) in cases {
        assert_eq!(validate_redirect(input, &allowed), Err(*want), "{input:?}");
    }
    let long = format!("/{}", "a".repeat(MAX_REDIRECT_LEN));
    assert_eq!(validate_redirect(&long, &allowed), Err(TooLong));
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "\\",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%09",
        "\t",
        "@",
        ".",
        "..",
        "%2e",
        "evil.com",
        "jira.example.com",
        ":",
        "%3a",
        "https:",
        "http:",
        "//",
        "%252f",
        "a",
        "?",
        "#",
        "%40",
        " ",
        "%20",
        "javascript:",
        "\u{ff0f}",
        "%00",
        "%0a",
        "[",
        "]",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn generated_mixes_never_escape(pieces in prop::collection::vec(piece(), 1..10)) {
        let input: String = pieces.concat();
        let allowed = hosts(&["jira.example.com"]);
        match validate_redirect(&input, &allowed) {
            Ok(ok) if !ok.is_relative() => {
                let url = url::Url::parse(ok.as_str()).unwrap();
                prop_assert_eq!(url.host_str(), Some("jira.example.com"));
                prop_assert_eq!(url.username(), "");
            }
            other => assert_neutral(&input, &other),
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_or_escape(input in "\\PC{0,40}") {
        let allowed = hosts(&["jira.example.com"]);
        match validate_redirect(&input, &allowed) {
            Ok(ok) if !ok.is_relative() => {
                let url = url::Url::parse(ok.as_str()).unwrap();
                prop_assert_eq!(url.host_str(), Some("jira.example.com"));
            }
            other => assert_neutral(&input, &other),
        }
    }

    #[test]
    fn plain_paths_are_kept(segs in prop::collection::vec("[A-Za-z0-9_-]{1,8}", 0..6)) {
        let input = format!("/{}", segs.join("/"));
        let allowed = hosts(&[]);
        let got = validate_redirect(&input, &allowed).unwrap();
        prop_assert_eq!(got.as_str(), input.as_str());
    }
}
