//! Per-login state (OAuth `state`, OIDC `nonce`, PKCE verifier, `rd`, IdP, start
//! time) kept in a short-lived encrypted cookie named after the login
//! (`{cookie_name}_login_<id>`), so parallel sign-ins in several tabs work. Bounded
//! in count and size; a consumed or missing state is a replay. Never logs values.

use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::error::{AuthError, DenialReason};
use super::redirect::SafeRedirect;
use crate::config::Secret;
use crate::session::cookie::find_cookie;
use crate::session::{unix_secs, CookieCodec, CookieError};

/// Most pending logins per browser; the oldest are dropped beyond this.
pub const MAX_PENDING: usize = 4;
/// Longest time between starting a sign-in and its callback.
pub const LOGIN_MAX_AGE: Duration = Duration::from_secs(600);
/// Length of the login id (a prefix of `state`) used in the cookie name.
const ID_LEN: usize = 12;
/// Length of a `state` value (32 random bytes, base64url).
const STATE_LEN: usize = 43;

/// One pending sign-in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// The `[[idp]]` name the login was sent to.
    pub idp: String,
    /// The OAuth `state` (CSRF token); its first 12 characters name the cookie.
    pub state: String,
    /// The OIDC nonce.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where to go after sign-in (already validated).
    pub rd: String,
    /// Unix seconds when the sign-in started.
    pub created_at: u64,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("idp", &self.idp)
            .field("rd", &self.rd)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl LoginState {
    /// The validated redirect target of this login.
    pub fn redirect(&self) -> SafeRedirect {
        SafeRedirect::trusted(&self.rd)
    }

    fn id(&self) -> &str {
        self.state.get(..ID_LEN).unwrap_or("")
    }
}

/// Issues and consumes login-state cookies.
pub struct LoginStates {
    codec: CookieCodec,
    base: String,
    consumed: DashMap<String, u64>,
}

impl LoginStates {
    /// Login cookies for session cookie `cookie_name`, keys from the session secret
    /// (separate HKDF purpose), `__Host-` prefixed when `secure`.
    pub fn new(
        cookie_name: &str,
        secret: &Secret,
        previous: &[Secret],
        secure: bool,
    ) -> Result<Self, CookieError> {
        let base = format!("{cookie_name}_login_");
        let codec = CookieCodec::new(&base, "login", secret, previous, secure)?.with_max_chunks(1);
        Ok(LoginStates {
            codec,
            base,
            consumed: DashMap::new(),
        })
    }

    /// The cookie-name prefix of login cookies as the browser sees it (for stripping).
    pub fn prefix(&self) -> String {
        self.codec.full_name(&self.base)
    }

    fn codec_for(&self, id: &str) -> CookieCodec {
        self.codec.renamed(&format!("{}{id}", self.base))
    }

    /// Pending logins present in a `Cookie` header: (cookie name, decoded state or None).
    fn pending(&self, cookie_header: &str) -> Vec<(String, Option<LoginState>)> {
        let prefix = self.prefix();
        cookie_header
            .split(';')
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
            .filter_map(|name| name.strip_prefix(prefix.as_str()).map(|id| (name, id)))
            .take(32)
            .map(|(name, id)| {
                (
                    name.to_string(),
                    self.codec_for(id).decode::<LoginState>(cookie_header),
                )
            })
            .collect()
    }

    /// `Set-Cookie` values that store `login` and drop expired, unreadable or surplus
    /// (oldest beyond [`MAX_PENDING`]) login cookies of this browser.
    pub fn issue(
        &self,
        login: &LoginState,
        cookie_header: &str,
        now: SystemTime,
    ) -> Result<Vec<String>, CookieError> {
        let t = unix_secs(now);
        let mut out = self
            .codec_for(login.id())
            .encode(login, Some(LOGIN_MAX_AGE))?;
        let mut live: Vec<(u64, String)> = Vec::new();
        for (name, state) in self.pending(cookie_header) {
            match state {
                Some(s) if t < s.created_at.saturating_add(LOGIN_MAX_AGE.as_secs()) => {
                    live.push((s.created_at, name))
                }
                _ => out.extend(self.clear_named(&name)),
            }
        }
        live.sort();
        let surplus = (live.len() + 1).saturating_sub(MAX_PENDING);
        for (_, name) in live.into_iter().take(surplus) {
            out.extend(self.clear_named(&name));
        }
        Ok(out)
    }

    fn clear_named(&self, full_name: &str) -> Vec<String> {
        let prefix = self.prefix();
        match full_name.strip_prefix(prefix.as_str()) {
            Some(id) => self.codec_for(id).clear(),
            None => Vec::new(),
        }
    }

    /// Consumes the login named by the callback's `state`: checks it matches, is not
    /// expired and was not used before. Returns it with the `Set-Cookie` that clears it.
    pub fn take(
        &self,
        cookie_header: &str,
        state_param: &str,
        now: SystemTime,
    ) -> Result<(LoginState, Vec<String>), AuthError> {
        let t = unix_secs(now);
        if state_param.len() != STATE_LEN
            || !state_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthError::new(
                DenialReason::StateMismatch,
                "callback state is missing or malformed",
            ));
        }
        let id = &state_param[..ID_LEN];
        if self.consumed.contains_key(state_param) {
            return Err(AuthError::new(
                DenialReason::ReplayedCallback,
                "callback state was already used",
            ));
        }
        let codec = self.codec_for(id);
        if find_cookie(cookie_header, codec.name()).is_none() {
            return Err(AuthError::new(
                DenialReason::ReplayedCallback,
                "no pending login for this callback state in this browser (cookie gone or already used)",
            ));
        }
        let login: LoginState = codec.decode(cookie_header).ok_or_else(|| {
            AuthError::new(
                DenialReason::StateMismatch,
                "login cookie could not be decrypted",
            )
        })?;
        if !super::constant_time_eq(login.state.as_bytes(), state_param.as_bytes()) {
            return Err(AuthError::new(
                DenialReason::StateMismatch,
                "callback state does not match the login cookie",
            ));
        }
        if t >= login.created_at.saturating_add(LOGIN_MAX_AGE.as_secs())
            || login.created_at > t + 60
        {
            return Err(AuthError::new(
                DenialReason::LoginExpired,
                "pending login is older than 10 minutes",
            ));
        }
        self.remember_consumed(state_param, t);
        Ok((login, codec.clear()))
    }

    /// `Set-Cookie` values that clear every pending login cookie the browser sent
    /// (logout leaves nothing of ours behind).
    pub fn clear_all(&self, cookie_header: &str) -> Vec<String> {
        let prefix = self.prefix();
        cookie_header
            .split(';')
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
            .filter_map(|name| name.strip_prefix(prefix.as_str()))
            .take(32)
            .flat_map(|id| self.codec_for(id).clear())
            .collect()
    }

    fn remember_consumed(&self, state: &str, t: u64) {
        if self.consumed.len() > 10_000 {
            let horizon = t.saturating_sub(LOGIN_MAX_AGE.as_secs());
            self.consumed.retain(|_, at| *at >= horizon);
        }
        self.consumed.insert(state.to_string(), t);
    }
}

/// A fresh random `state`/`nonce`/verifier value (32 bytes, base64url, 43 chars).
pub fn random_value() -> String {
    crate::session::new_session_id()
}

#[cfg(test)]
#[path = "login_state_tests.rs"]
mod tests;
