//! Pure sign-in policy helpers shared by the relying party and the login flow:
//! strict email parsing, group claims at a dotted path, the allowed-groups check.
//! No I/O, no logging.

use serde_json::Value;

use super::error::{AuthError, DenialReason};

/// `Ok` when `allowed` is empty or `groups` shares a member with it (case-insensitive).
pub fn check_allowed_groups(groups: &[String], allowed: &[String]) -> Result<(), AuthError> {
    if allowed.is_empty()
        || groups
            .iter()
            .any(|g| allowed.iter().any(|a| a.eq_ignore_ascii_case(g)))
    {
        Ok(())
    } else {
        Err(AuthError::new(
            DenialReason::NotInAllowedGroups,
            "person is in none of allowed_groups",
        ))
    }
}

/// Splits an email strictly: exactly one `@`, non-empty parts, no whitespace or
/// control characters, a domain of letters/digits/`-`/`.`; returns (local, lower-case domain).
pub fn parse_email(email: &str) -> Option<(String, String)> {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let mut parts = email.split('@');
    let (local, domain) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || local.is_empty() || domain.is_empty() {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    let domain_ok = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    domain_ok.then(|| (local.to_string(), domain))
}

/// Strings at a dotted claim path (`groups`, `realm_access.roles`): an array of
/// strings or a single string; anything else gives no groups.
pub fn claim_strings(claims: &Value, path: &str) -> Vec<String> {
    let mut cur = claims;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        match cur.get(key) {
            Some(v) => cur = v,
            None => return Vec::new(),
        }
    }
    match cur {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}
