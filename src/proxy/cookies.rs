//! The request's `Cookie` header on the proxy path: read once for the session
//! check, and usher's own cookies taken out before forwarding (Tomcat's 8 KB
//! header limit, and they are none of the upstream's business). A single header
//! with nothing of ours in it — every request once the login cookies are gone —
//! is neither copied nor rewritten.

use http::header::{self, HeaderMap, HeaderValue};

use crate::session::{strip_usher_cookies, usher_cookies_in, UsherCookieNames, UsherCookiesIn};

/// The request's cookies as one string.
pub enum RequestCookies {
    /// No `Cookie` header.
    Absent,
    /// Exactly one header (HTTP/1.1) that is UTF-8 text, shared with the request,
    /// not copied. (UTF-8 rather than `to_str`'s visible ASCII: a browser may send
    /// a non-ASCII cookie of the upstream's, which must reach it unchanged, and
    /// the ASCII check is a byte loop where UTF-8 validation is word-at-a-time.)
    One(HeaderValue),
    /// Several headers (HTTP/2 sends crumbs), joined with `"; "`.
    Joined(String),
}

impl RequestCookies {
    /// Reads the `Cookie` header(s) of a request.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut all = headers.get_all(header::COOKIE).iter();
        match (all.next(), all.next()) {
            (None, _) => RequestCookies::Absent,
            (Some(v), None) if std::str::from_utf8(v.as_bytes()).is_ok() => {
                RequestCookies::One(v.clone())
            }
            _ => RequestCookies::Joined(crate::auth::flow::cookie_header(headers)),
        }
    }

    /// The cookies as text (`""` when there are none).
    pub fn as_str(&self) -> &str {
        match self {
            RequestCookies::Absent => "",
            RequestCookies::One(v) => std::str::from_utf8(v.as_bytes()).unwrap_or(""),
            RequestCookies::Joined(s) => s,
        }
    }

    /// Leaves only other sites' cookies in `headers` (one joined header), or none.
    pub fn strip_ours(&self, headers: &mut HeaderMap, names: &UsherCookieNames) {
        let text = self.as_str();
        match (self, usher_cookies_in(text, names)) {
            (RequestCookies::Absent, _) => {}
            (RequestCookies::One(_), UsherCookiesIn::None) => {}
            (_, UsherCookiesIn::All) => {
                headers.remove(header::COOKIE);
            }
            // Mixed, or HTTP/2 crumbs to be joined into the one header HTTP/1.1 allows.
            _ => {
                headers.remove(header::COOKIE);
                if let Some(kept) = strip_usher_cookies(text, names) {
                    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept)) {
                        headers.insert(header::COOKIE, v);
                    }
                }
            }
        }
    }
}

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

    fn forwarded(values: &[&str]) -> Vec<String> {
        let mut h = headers(values);
        RequestCookies::of(&h).strip_ours(&mut h, &names());
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
        cookies.strip_ours(&mut h, &names());
        assert_eq!(h[header::COOKIE], "JSESSIONID=abc;  seraph=1");
    }

    #[test]
    fn a_non_ascii_cookie_of_the_upstream_is_forwarded_unchanged() {
        let value = HeaderValue::from_bytes("city=Zürich; _usher=x".as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, value);
        let cookies = RequestCookies::of(&h);
        assert_eq!(cookies.as_str(), "city=Zürich; _usher=x");
        cookies.strip_ours(&mut h, &names());
        assert_eq!(h[header::COOKIE].as_bytes(), "city=Zürich".as_bytes());
        // Not UTF-8: unreadable, so it cannot be shown to hold nothing of ours;
        // it is dropped rather than risk forwarding usher's session cookie.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"a=\xff; _usher=x").unwrap(),
        );
        let cookies = RequestCookies::of(&h);
        assert_eq!(cookies.as_str(), "");
        cookies.strip_ours(&mut h, &names());
        assert!(!h.contains_key(header::COOKIE));
    }

    #[test]
    fn http2_crumbs_are_joined_into_one_header() {
        let h = headers(&["a=1", "_usher=x", "b=2"]);
        assert_eq!(RequestCookies::of(&h).as_str(), "a=1; _usher=x; b=2");
        assert_eq!(forwarded(&["a=1", "_usher=x", "b=2"]), ["a=1; b=2"]);
        assert_eq!(forwarded(&["a=1", "b=2"]), ["a=1; b=2"]);
        assert_eq!(RequestCookies::of(&HeaderMap::new()).as_str(), "");
    }
}
