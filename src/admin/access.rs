//! Who may enter the admin console: the pure decisions. Admin-ness from `[admin]
//! users`/`groups` (made at sign-in, where the IdP groups are known), the gate for
//! one request (sign in / forbidden / admin), and the same-origin check for POSTs
//! (Origin and Sec-Fetch-Site). No I/O; the session itself is resolved elsewhere.

use http::{header, HeaderMap};

use crate::config::AdminSettings;
use crate::session::Session;

/// Whether a person is an usher administrator: their e-mail is in `[admin] users`
/// or one of their IdP groups (e-mail or name) is in `[admin] groups`; both compared
/// case-insensitively. An empty `[admin]` makes nobody an admin.
pub fn is_admin(admins: &AdminSettings, email: &str, idp_groups: &[String]) -> bool {
    admins.users.iter().any(|u| u.eq_ignore_ascii_case(email))
        || idp_groups
            .iter()
            .any(|g| admins.groups.iter().any(|a| a.eq_ignore_ascii_case(g)))
}

/// What one request to `/_usher/admin/` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// No (valid) session: the sign-in redirect for browsers, 401 for API clients.
    SignIn,
    /// Signed in, but not an administrator: 403.
    Forbidden,
    /// An administrator (their e-mail, recorded as the approver of overrides).
    Admin(String),
}

/// The gate for a request with this (already resolved and checked) session.
pub fn gate(session: Option<&Session>) -> Gate {
    match session {
        None => Gate::SignIn,
        Some(s) if s.admin => Gate::Admin(s.email.to_ascii_lowercase()),
        Some(_) => Gate::Forbidden,
    }
}

/// Why a state-changing request was refused before its CSRF token was even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` says another site (or a sibling subdomain) sent it.
    FetchSite,
    /// `Origin` names another origin (or is `null`).
    Origin,
}

/// Checks that a POST comes from this site: `Sec-Fetch-Site` (when the browser
/// sends it) must be `same-origin` or `none` (typed by the user), and `Origin` (when
/// sent) must name the host the request was addressed to (`host`, as in `Host`)
/// or one of `allowed` (`scheme://host[:port]` origins, e.g. the public URL).
/// Clients that send neither header (scripts, curl) still need the CSRF token.
pub fn same_origin(headers: &HeaderMap, host: &str, allowed: &[String]) -> Result<(), CrossSite> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(CrossSite::FetchSite);
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| CrossSite::Origin)?;
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    // `scheme://authority` with nothing after it; the authority must equal Host.
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(CrossSite::Origin)?;
    if !host.is_empty() && !authority.contains('/') && authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(CrossSite::Origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn admins() -> AdminSettings {
        AdminSettings {
            users: vec!["it-admin@example.com".into()],
            groups: vec!["it-admins@example.com".into(), "Platform Team".into()],
        }
    }

    #[test]
    fn admin_by_email_or_group_case_insensitively() {
        let a = admins();
        let table: &[(&str, &[&str], bool)] = &[
            ("it-admin@example.com", &[], true),
            ("IT-Admin@Example.com", &[], true),
            ("ann@example.com", &["it-admins@example.com"], true),
            ("ann@example.com", &["IT-ADMINS@example.com"], true),
            ("ann@example.com", &["platform team"], true),
            ("ann@example.com", &["eng@example.com"], false),
            ("ann@example.com", &[], false),
            // A user list entry is not a group and vice versa.
            ("it-admins@example.com", &[], false),
            ("ann@example.com", &["it-admin@example.com"], false),
        ];
        for (email, groups, want) in table {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            assert_eq!(is_admin(&a, email, &groups), *want, "{email} {groups:?}");
        }
        let nobody = AdminSettings {
            users: vec![],
            groups: vec![],
        };
        assert!(!is_admin(&nobody, "it-admin@example.com", &[]));
    }

    #[test]
    fn gate_follows_the_session_flag() {
        let now = SystemTime::now();
        assert_eq!(gate(None), Gate::SignIn);
        let mut s = Session::new("google", "1", "Ann@Example.com", "ann", now);
        assert_eq!(gate(Some(&s)), Gate::Forbidden);
        s.admin = true;
        assert_eq!(gate(Some(&s)), Gate::Admin("ann@example.com".into()));
    }

    #[test]
    fn old_cookies_without_the_flag_decode_as_non_admin() {
        let s = Session::new("google", "1", "a@example.com", "a", SystemTime::now());
        let mut v = serde_json::to_value(&s).unwrap();
        assert!(v.get("a").is_none(), "false is not written: {v}");
        v.as_object_mut().unwrap().remove("a");
        let back: Session = serde_json::from_value(v).unwrap();
        assert!(!back.admin);
        let mut admin = s.clone();
        admin.admin = true;
        let text = serde_json::to_string(&admin).unwrap();
        assert!(serde_json::from_str::<Session>(&text).unwrap().admin);
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let allowed = vec!["https://jira.example.com".to_string()];
        let check = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            same_origin(&h, "jira.test:8080", &allowed)
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), CrossSite>);
        let table: &[Case] = &[
            (&[], Ok(())),
            (&[("sec-fetch-site", "same-origin")], Ok(())),
            (&[("sec-fetch-site", "none")], Ok(())),
            (
                &[("sec-fetch-site", "cross-site")],
                Err(CrossSite::FetchSite),
            ),
            (
                &[("sec-fetch-site", "same-site")],
                Err(CrossSite::FetchSite),
            ),
            (&[("origin", "http://jira.test:8080")], Ok(())),
            (&[("origin", "https://jira.example.com")], Ok(())),
            (
                &[("origin", "https://evil.example")],
                Err(CrossSite::Origin),
            ),
            (
                &[("origin", "http://jira.test:8081")],
                Err(CrossSite::Origin),
            ),
            (&[("origin", "null")], Err(CrossSite::Origin)),
            (
                &[("origin", "http://jira.test:8080.evil.example")],
                Err(CrossSite::Origin),
            ),
            (
                &[
                    ("origin", "http://jira.test:8080"),
                    ("sec-fetch-site", "cross-site"),
                ],
                Err(CrossSite::FetchSite),
            ),
        ];
        for (headers, want) in table {
            assert_eq!(check(headers), *want, "{headers:?}");
        }
    }
}
