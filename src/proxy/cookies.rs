//! The request's `Cookie` header on the proxy path: read once for the session
//! check, and usher's own cookies taken out before forwarding (Tomcat's 8 KB
//! header limit, and they are none of the upstream's business). A single header
//! with nothing of ours in it — every request once the login cookies are gone —
//! is neither copied nor rewritten, and a keep-alive connection that sends the
//! same header again gets the same answer from [`ConnCookieForward`] without a
//! second walk over it.

use http::header::{self, HeaderMap, HeaderValue};

use crate::session::conn_memo::LastCookieHeader;
use crate::session::{strip_usher_cookies, usher_cookies_in, UsherCookieNames, UsherCookiesIn};

/// The request's cookies as one value.
pub enum RequestCookies {
    /// No `Cookie` header.
    Absent,
    /// Exactly one header (HTTP/1.1), shared with the request, not copied. Its
    /// bytes are read as they are: another site's cookie may be non-ASCII, or not
    /// even UTF-8, and must reach the upstream unchanged.
    One(HeaderValue),
    /// Several headers (HTTP/2 sends crumbs), their bytes joined with `"; "`.
    Joined(Vec<u8>),
}

impl RequestCookies {
    /// Reads the `Cookie` header(s) of a request.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut all = headers.get_all(header::COOKIE).iter();
        match (all.next(), all.next()) {
            (None, _) => RequestCookies::Absent,
            (Some(v), None) => RequestCookies::One(v.clone()),
            _ => {
                let mut joined = Vec::new();
                for v in headers.get_all(header::COOKIE) {
                    if !joined.is_empty() {
                        joined.extend_from_slice(b"; ");
                    }
                    joined.extend_from_slice(v.as_bytes());
                }
                RequestCookies::Joined(joined)
            }
        }
    }

    /// The cookies' bytes (empty when there are none).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestCookies::Absent => b"",
            RequestCookies::One(v) => v.as_bytes(),
            RequestCookies::Joined(b) => b,
        }
    }

    /// Leaves only other sites' cookies in `headers` (one joined header), or none.
    pub fn strip_ours(
        &self,
        headers: &mut HeaderMap,
        names: &UsherCookieNames,
        memo: &ConnCookieForward,
    ) {
        let forward = match self {
            RequestCookies::Absent => return,
            RequestCookies::One(v) => match memo.get(v.as_bytes()) {
                Some(f) => f,
                None => {
                    let f = Forward::of(v.as_bytes(), names, true);
                    memo.put(v.as_bytes(), f.clone());
                    f
                }
            },
            // HTTP/2 crumbs are always rewritten into the one header HTTP/1.1 allows.
            RequestCookies::Joined(b) => Forward::of(b, names, false),
        };
        match forward {
            Forward::Unchanged => {}
            Forward::Drop => {
                headers.remove(header::COOKIE);
            }
            Forward::Replace(v) => {
                headers.insert(header::COOKIE, v);
            }
        }
    }
}

/// What reaches the upstream in place of a request's `Cookie` header.
#[derive(Clone)]
pub enum Forward {
    /// The header as received (nothing of usher's in it).
    Unchanged,
    /// No `Cookie` header at all (only usher's cookies were in it).
    Drop,
    /// The other sites' cookies, without usher's.
    Replace(HeaderValue),
}

impl Forward {
    /// `single`: the value is the request's one header, which may stay as it is.
    fn of(cookies: &[u8], names: &UsherCookieNames, single: bool) -> Self {
        match usher_cookies_in(cookies, names) {
            UsherCookiesIn::None if single => Forward::Unchanged,
            UsherCookiesIn::All => Forward::Drop,
            _ => match strip_usher_cookies(cookies, names)
                .and_then(|kept| HeaderValue::from_maybe_shared(bytes::Bytes::from(kept)).ok())
            {
                Some(v) => Forward::Replace(v),
                None => Forward::Drop,
            },
        }
    }
}

/// One client connection's last `Cookie` header and what was forwarded for it.
/// A browser sends the same header on every request of a keep-alive connection;
/// remembering the answer saves walking a few hundred bytes of session cookie
/// (and, when the header mixes usher's cookies with the upstream's, building the
/// stripped copy) on each of them.
pub type ConnCookieForward = LastCookieHeader<Forward>;

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> UsherCookieNames {
        UsherCookieNames {
            session: "_usher".into(),
            login_prefix: "_usher_login_".into(),
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// What the upstream gets for `values`, on a fresh connection.
    fn forwarded(values: &[&str]) -> Vec<String> {
        forwarded_on(&ConnCookieForward::default(), values)
    }

    fn forwarded_on(memo: &ConnCookieForward, values: &[&str]) -> Vec<String> {
        let mut h = headers(values);
        RequestCookies::of(&h).strip_ours(&mut h, &names(), memo);
        h.get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn ours_are_removed_and_others_kept_in_order() {
        assert_eq!(forwarded(&["a=1; _usher=x; b=2"]), ["a=1; b=2"]);
        assert_eq!(
            forwarded(&["_usher=x; _usher_1=y; _usher_login_k=z"]),
            Vec::<String>::new()
        );
        assert_eq!(
            forwarded(&["_usher_2=y;JSESSIONID=abc"]),
            ["JSESSIONID=abc"]
        );
        // Look-alikes are not ours.
        assert_eq!(
            forwarded(&["_usher_x=1; x_usher=2"]),
            ["_usher_x=1; x_usher=2"]
        );
    }

    #[test]
    fn a_single_header_without_ours_is_forwarded_byte_exact() {
        let mut h = headers(&["JSESSIONID=abc;  seraph=1"]);
        let cookies = RequestCookies::of(&h);
        assert!(matches!(cookies, RequestCookies::One(_)));
        cookies.strip_ours(&mut h, &names(), &ConnCookieForward::default());
        assert_eq!(h[header::COOKIE], "JSESSIONID=abc;  seraph=1");
    }

    #[test]
    fn cookies_that_are_not_ascii_or_not_utf8_reach_the_upstream_unchanged() {
        for (sent, kept) in [
            ("city=Zürich; _usher=x".as_bytes(), "city=Zürich".as_bytes()),
            // Latin-1, not UTF-8: still bytes to pass on, and usher's still goes.
            (b"a=\xff; _usher=x", b"a=\xff"),
            (b"_usher=x; a=\xff", b"a=\xff"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_bytes(sent).unwrap());
            let cookies = RequestCookies::of(&h);
            assert_eq!(cookies.as_bytes(), sent);
            cookies.strip_ours(&mut h, &names(), &ConnCookieForward::default());
            assert_eq!(h[header::COOKIE].as_bytes(), kept);
        }
    }

    #[test]
    fn http2_crumbs_that_are_not_utf8_are_joined_byte_exact() {
        let mut h = HeaderMap::new();
        for crumb in [&b"a=\xff"[..], b"_usher=x", b"b=2"] {
            h.append(header::COOKIE, HeaderValue::from_bytes(crumb).unwrap());
        }
        let cookies = RequestCookies::of(&h);
        assert_eq!(cookies.as_bytes(), b"a=\xff; _usher=x; b=2");
        cookies.strip_ours(&mut h, &names(), &ConnCookieForward::default());
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE].as_bytes(), b"a=\xff; b=2");
    }

    #[test]
    fn http2_crumbs_are_joined_into_one_header() {
        let h = headers(&["a=1", "_usher=x", "b=2"]);
        assert_eq!(RequestCookies::of(&h).as_bytes(), b"a=1; _usher=x; b=2");
        assert_eq!(forwarded(&["a=1", "_usher=x", "b=2"]), ["a=1; b=2"]);
        assert_eq!(forwarded(&["a=1", "b=2"]), ["a=1; b=2"]);
        assert_eq!(forwarded(&["_usher=x", "_usher_1=y"]), Vec::<String>::new());
        assert_eq!(RequestCookies::of(&HeaderMap::new()).as_bytes(), b"");
    }

    #[test]
    fn a_connection_remembers_only_its_last_header_and_answers_alike() {
        let memo = ConnCookieForward::default();
        for _ in 0..2 {
            assert_eq!(forwarded_on(&memo, &["a=1; _usher=x"]), ["a=1"]);
        }
        // Another header on the same connection is read afresh, every time.
        assert_eq!(forwarded_on(&memo, &["_usher=y"]), Vec::<String>::new());
        assert_eq!(forwarded_on(&memo, &["b=2"]), ["b=2"]);
        assert_eq!(forwarded_on(&memo, &["a=1; _usher=x"]), ["a=1"]);
        assert_eq!(forwarded_on(&memo, &["a=1; _usher=x; c=3"]), ["a=1; c=3"]);
        // Crumbs never come from (or go into) the memo.
        assert_eq!(
            forwarded_on(&memo, &["a=1", "_usher=x", "c=3"]),
            ["a=1; c=3"]
        );
        assert_eq!(forwarded_on(&memo, &["a=1; _usher=x; c=3"]), ["a=1; c=3"]);
        assert!(
            !format!("{memo:?}").contains("_usher"),
            "the cookie is never shown"
        );
    }
}
