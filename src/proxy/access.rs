//! Who may pass without signing in, decided on the normalized path only (never
//! the query, never a client-sent `X-Forwarded-Uri`, advisories GHSA-7rh7 and
//! GHSA-7x63), and what a signed-out request gets instead. Pure functions.

use http::{header, HeaderMap, Method};
use regex::RegexSet;

/// How a request is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A `public` path: forwarded without login and without identity.
    Public,
    /// A `passthrough` path carrying its own `Authorization` (REST token, git over
    /// HTTPS): forwarded without login and never with an identity header.
    Passthrough,
    /// Everything else needs a session.
    SignedIn,
}

/// Classifies a request by its normalized path and whether it brings credentials.
pub fn classify(
    public: &RegexSet,
    passthrough: &RegexSet,
    path: &str,
    has_authorization: bool,
) -> Access {
    // An empty set still sets up a regex search (≈ 300 instructions); most
    // upstreams list no public paths, so look first.
    if !public.is_empty() && public.is_match(path) {
        Access::Public
    } else if has_authorization && !passthrough.is_empty() && passthrough.is_match(path) {
        Access::Passthrough
    } else {
        Access::SignedIn
    }
}

/// Whether the request carries its own credentials (`Authorization` with a value).
pub fn has_authorization(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| !v.as_bytes().iter().all(|b| b.is_ascii_whitespace()))
}

/// What a signed-out request that needs a session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedOut {
    /// A browser navigation: 302 to the login page with the original URL as `rd`.
    RedirectToLogin,
    /// An API call, XHR, non-GET or WebSocket upgrade: 401 JSON (a redirect to an
    /// HTML login page would only confuse it).
    Unauthorized,
}

/// Decides between a login redirect and a 401 for a signed-out request.
pub fn signed_out(method: &Method, headers: &HeaderMap, wants_json: bool) -> SignedOut {
    let navigation = matches!(*method, Method::GET | Method::HEAD);
    let upgrade = headers.contains_key(header::UPGRADE);
    if navigation && !upgrade && !wants_json {
        SignedOut::RedirectToLogin
    } else {
        SignedOut::Unauthorized
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sets() -> (RegexSet, RegexSet) {
        (
            RegexSet::new(["^/s/", "^/favicon.ico$"]).unwrap(),
            RegexSet::new(["^/rest/", "^/scm/"]).unwrap(),
        )
    }

    #[test]
    fn public_passthrough_and_signed_in() {
        let (public, pass) = sets();
        let table = [
            ("/s/abc/app.js", false, Access::Public),
            ("/s/abc/app.js", true, Access::Public),
            ("/favicon.ico", false, Access::Public),
            ("/favicon.ico.php", false, Access::SignedIn),
            ("/rest/api/2/issue", true, Access::Passthrough),
            ("/rest/api/2/issue", false, Access::SignedIn),
            ("/scm/proj/repo.git/info/refs", true, Access::Passthrough),
            ("/secure/Dashboard.jspa", true, Access::SignedIn),
            ("/browse/ABC-1", false, Access::SignedIn),
            // A path only "looks" public via something the query would say.
            ("/secure/admin", false, Access::SignedIn),
        ];
        for (path, auth, want) in table {
            assert_eq!(
                classify(&public, &pass, path, auth),
                want,
                "{path} auth={auth}"
            );
        }
    }

    #[test]
    fn empty_authorization_is_no_credential() {
        let mut h = HeaderMap::new();
        assert!(!has_authorization(&h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(" "));
        assert!(!has_authorization(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(has_authorization(&h));
    }

    #[test]
    fn browsers_are_redirected_and_apis_get_401() {
        let h = HeaderMap::new();
        assert_eq!(
            signed_out(&Method::GET, &h, false),
            SignedOut::RedirectToLogin
        );
        assert_eq!(
            signed_out(&Method::HEAD, &h, false),
            SignedOut::RedirectToLogin
        );
        assert_eq!(signed_out(&Method::GET, &h, true), SignedOut::Unauthorized);
        assert_eq!(
            signed_out(&Method::POST, &h, false),
            SignedOut::Unauthorized
        );
        let mut ws = HeaderMap::new();
        ws.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(
            signed_out(&Method::GET, &ws, false),
            SignedOut::Unauthorized
        );
    }
}
