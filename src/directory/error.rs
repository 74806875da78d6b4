//! [`DirectoryError`]: everything that can go wrong reading a directory, each
//! message naming the thing, the cause and the fix. Must never carry a token,
//! a client secret or a private key in a message.

/// Where an admin re-grants usher access in OAuth (refresh-token) mode.
pub const CONNECT_PATH: &str = "/_usher/admin/connect/google";

/// A failure reading the directory. Callers treat every variant as "nothing
/// changes": a sync that cannot read the directory never deprovisions.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// OAuth mode, but no admin has consented yet (or the stored token was removed).
    #[error(
        "the Google directory is not connected: no admin refresh token is stored; \
         a Workspace admin must open {CONNECT_PATH} and consent"
    )]
    NotConnected,

    /// The token endpoint refused the credentials (`invalid_grant`, `unauthorized_client`, ...).
    #[error(
        "Google's token endpoint refused usher's credentials ({error}: {description}); fix: {fix}"
    )]
    TokenRefused {
        error: String,
        description: String,
        fix: String,
    },

    /// The API answered 401 even with a freshly minted access token.
    #[error("Google answered {method} with 401 ({message}); fix: {fix}")]
    Unauthorized {
        method: &'static str,
        message: String,
        fix: String,
    },

    /// The API answered 403 for a reason that retrying cannot fix (scope, delegation, role).
    #[error("Google refused {method} with 403 {reason} ({message}); fix: {fix}")]
    Forbidden {
        method: &'static str,
        reason: String,
        message: String,
        fix: String,
    },

    /// 404 for something other than a person lookup (which answers `Ok(None)`).
    #[error("Google says {what} does not exist ({message}); check the key or [directory] customer/domain")]
    NotFound { what: String, message: String },

    /// 400: the request itself was wrong, usually the configuration.
    #[error(
        "Google rejected {method} as a bad request ({reason}: {message}); \
         check [directory] customer, domain and users_query"
    )]
    BadRequest {
        method: &'static str,
        reason: String,
        message: String,
    },

    /// Still rate-limited after every retry.
    #[error(
        "Google kept rate-limiting {method} ({reason}) after {attempts} attempts; lower \
         [directory] rate_limit_per_minute or raise the Admin SDK quota in the Google Cloud console"
    )]
    RateLimited {
        method: &'static str,
        reason: String,
        attempts: u32,
    },

    /// Still failing with 5xx (or a broken connection) after every retry.
    #[error("Google answered {method} with {status} after {attempts} attempts ({message}); try again later")]
    Unavailable {
        method: &'static str,
        status: String,
        message: String,
        attempts: u32,
    },

    /// Any other unexpected HTTP status.
    #[error("Google answered {method} with HTTP {status} ({message})")]
    Http {
        method: &'static str,
        status: u16,
        message: String,
    },

    /// The answer was not what the Directory API returns (garbage JSON, missing fields).
    #[error(
        "Google answered {method} with something usher cannot read ({detail}); \
         check that [directory] api_url/token_url point at Google (or the sandbox)"
    )]
    Protocol {
        method: &'static str,
        detail: String,
    },

    /// The service-account key file could not be used.
    #[error(
        "the service account key is unusable ({detail}); download a fresh JSON key for the \
         service account in the Google Cloud console and point [directory] service_account_key at it"
    )]
    Key { detail: String },

    /// Reading or writing the encrypted refresh-token file failed.
    #[error("the stored Google refresh token at {path} is unusable ({detail}); fix: {fix}")]
    Store {
        path: String,
        detail: String,
        fix: String,
    },

    /// The configuration cannot work (e.g. a base URL that cannot take a path).
    #[error("[directory] is misconfigured: {detail}")]
    Config { detail: String },
}

impl DirectoryError {
    /// Whether retrying later could succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DirectoryError::RateLimited { .. } | DirectoryError::Unavailable { .. }
        )
    }
}
