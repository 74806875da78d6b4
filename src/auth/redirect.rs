//! The `rd` guard: decides whether a post-login/logout redirect target is safe.
//! Pure and total (no I/O, no panics); it never fetches, resolves or logs the value.
//! A target is safe when it is a same-origin absolute path, or an absolute http(s)
//! URL whose host (and port) is one of the configured upstream hosts.

use std::borrow::Cow;
use std::fmt;

/// Longest `rd` accepted (bytes, before decoding); longer values are never legitimate.
pub const MAX_REDIRECT_LEN: usize = 2048;

/// How many percent-decoding layers are peeled before giving up.
const MAX_DECODE_ROUNDS: usize = 6;

/// A redirect target that passed [`validate_redirect`]; safe to put in `Location`.
#[derive(Clone, PartialEq, Eq)]
pub struct SafeRedirect {
    value: String,
    relative: bool,
}

impl SafeRedirect {
    /// The site root, used whenever `rd` is absent or rejected.
    pub fn root() -> Self {
        SafeRedirect {
            value: "/".to_string(),
            relative: true,
        }
    }

    /// Rebuilds a value that was validated earlier and kept in usher's own encrypted
    /// login cookie; never call it on input from the request.
    pub(crate) fn trusted(value: &str) -> Self {
        SafeRedirect {
            value: value.to_string(),
            relative: value.starts_with('/'),
        }
    }

    /// The value for the `Location` header (ASCII only, already percent-encoded).
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// True for a same-origin path (`/...`), false for an absolute URL on an allowed host.
    pub fn is_relative(&self) -> bool {
        self.relative
    }

    /// Consumes the value into the `Location` string.
    pub fn into_string(self) -> String {
        self.value
    }
}

impl fmt::Debug for SafeRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeRedirect({:?})", self.value)
    }
}

/// Why a redirect target was refused; the caller falls back to [`SafeRedirect::root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// The value was empty.
    #[error("redirect target is empty; send a path such as `/browse`")]
    Empty,
    /// The value was longer than [`MAX_REDIRECT_LEN`].
    #[error("redirect target is longer than {MAX_REDIRECT_LEN} bytes; send a shorter path")]
    TooLong,
    /// Percent-decoding produced invalid UTF-8 or never settled.
    #[error("redirect target has invalid or too deeply nested percent-encoding")]
    BadEncoding,
    /// A control character (tab, newline, NUL, ...) appeared at some decoding layer.
    #[error("redirect target contains a control character")]
    ControlCharacter,
    /// Whitespace appeared in the scheme, host or path.
    #[error("redirect target contains whitespace before its query")]
    Whitespace,
    /// `//host` or `/\host`: a protocol-relative URL pointing elsewhere.
    #[error(
        "redirect target is protocol-relative (`//` or `/\\`); send a path with one leading `/`"
    )]
    ProtocolRelative,
    /// `//` inside the path (e.g. `/https://evil`): never a real page, often an attack.
    #[error("redirect target path contains `//`")]
    DoubleSlash,
    /// `.` or `..` path segments, which can re-root the path after normalisation.
    #[error("redirect target contains `.` or `..` path segments")]
    DotSegment,
    /// Neither a `/path` nor an `http(s)://` URL (e.g. `javascript:`, `data:`, `foo/bar`).
    #[error("redirect target must be a path starting with `/` or an http(s) URL")]
    SchemeNotAllowed,
    /// `user@host` in the authority.
    #[error("redirect target carries userinfo (`@`) in its authority")]
    Userinfo,
    /// The URL could not be parsed as an absolute http(s) URL.
    #[error("redirect target is not a well-formed URL")]
    Malformed,
    /// The URL's host:port is not one of the configured upstream hosts.
    #[error("redirect target host is not a configured upstream host; add it to an [[upstream]] host or send a relative path")]
    HostNotAllowed,
}

/// Validates `raw` (the already query-decoded `rd` parameter) against `allowed_hosts`
/// (`host` or `host:port`, compared case-insensitively). Every percent-decoding layer
/// of the input is checked, so a value that is safe once decoded is also safe when a
/// later hop decodes it again.
pub fn validate_redirect(
    raw: &str,
    allowed_hosts: &[String],
) -> Result<SafeRedirect, RedirectError> {
    if raw.is_empty() {
        return Err(RedirectError::Empty);
    }
    if raw.len() > MAX_REDIRECT_LEN {
        return Err(RedirectError::TooLong);
    }
    // Check the raw value and every decoding layer until it is stable.
    let mut layer: Cow<'_, str> = Cow::Borrowed(raw);
    let mut rounds = 0;
    loop {
        check_layer(&layer, allowed_hosts)?;
        let decoded = percent_encoding::percent_decode_str(&layer)
            .decode_utf8()
            .map_err(|_| RedirectError::BadEncoding)?;
        if decoded == layer {
            break;
        }
        rounds += 1;
        if rounds > MAX_DECODE_ROUNDS {
            return Err(RedirectError::BadEncoding);
        }
        layer = Cow::Owned(decoded.into_owned());
    }
    build_output(raw, allowed_hosts)
}

/// The checks applied to one decoding layer.
fn check_layer(layer: &str, allowed_hosts: &[String]) -> Result<(), RedirectError> {
    if layer.chars().any(char::is_control) {
        return Err(RedirectError::ControlCharacter);
    }
    let s = layer.replace('\\', "/");
    let (head, tail) = split_head(&s);
    if head.chars().any(char::is_whitespace) {
        return Err(RedirectError::Whitespace);
    }
    if tail.chars().any(|c| c.is_whitespace() && c != ' ') {
        return Err(RedirectError::Whitespace);
    }
    if let Some(path) = head.strip_prefix('/') {
        if path.starts_with('/') {
            return Err(RedirectError::ProtocolRelative);
        }
        if path.contains("//") {
            return Err(RedirectError::DoubleSlash);
        }
        check_dot_segments(head)?;
        return Ok(());
    }
    if head.is_empty() {
        // "?x" or "#x": relative to the current page; not a path we accept.
        return Err(RedirectError::SchemeNotAllowed);
    }
    check_absolute(&s, allowed_hosts).map(|_| ())
}

/// Splits at the first `?` or `#` into (scheme/authority/path, query+fragment).
fn split_head(s: &str) -> (&str, &str) {
    match s.find(['?', '#']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    }
}

fn check_dot_segments(path: &str) -> Result<(), RedirectError> {
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(RedirectError::DotSegment);
    }
    Ok(())
}

/// Checks an absolute URL (backslashes already turned into slashes) and parses it.
fn check_absolute(s: &str, allowed_hosts: &[String]) -> Result<url::Url, RedirectError> {
    let lower_prefix: String = s.chars().take(8).collect::<String>().to_ascii_lowercase();
    let rest = if lower_prefix.starts_with("https://") {
        &s[8..]
    } else if lower_prefix.starts_with("http://") {
        &s[7..]
    } else {
        return Err(RedirectError::SchemeNotAllowed);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty() {
        return Err(RedirectError::ProtocolRelative);
    }
    if authority.contains('@') {
        return Err(RedirectError::Userinfo);
    }
    if !authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(RedirectError::Malformed);
    }
    let (head, _) = split_head(&rest[authority_end..]);
    check_dot_segments(head)?;
    let url = url::Url::parse(s).map_err(|_| RedirectError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RedirectError::SchemeNotAllowed);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::Userinfo);
    }
    let Some(host) = url.host_str() else {
        return Err(RedirectError::Malformed);
    };
    let wanted = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    if allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&wanted))
    {
        Ok(url)
    } else {
        Err(RedirectError::HostNotAllowed)
    }
}

/// Characters re-encoded in a relative output so the value is a clean ASCII header.
fn needs_encoding(c: char) -> bool {
    !c.is_ascii()
        || c.is_ascii_control()
        || matches!(c, ' ' | '"' | '<' | '>' | '`' | '{' | '}' | '^' | '|')
}

fn build_output(raw: &str, allowed_hosts: &[String]) -> Result<SafeRedirect, RedirectError> {
    let s = raw.replace('\\', "/");
    if s.starts_with('/') {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if needs_encoding(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
        // Invariant re-checked on the final value: one leading slash, never two.
        if out.starts_with("//") || !out.starts_with('/') {
            return Err(RedirectError::ProtocolRelative);
        }
        return Ok(SafeRedirect {
            value: out,
            relative: true,
        });
    }
    let url = check_absolute(&s, allowed_hosts)?;
    Ok(SafeRedirect {
        value: url.to_string(),
        relative: false,
    })
}

#[cfg(test)]
#[path = "redirect_tests.rs"]
mod tests;
