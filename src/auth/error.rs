//! The sign-in failure type: a [`DenialReason`] the 403/400 page can show, plus a
//! detail for logs. Details never contain tokens, codes, cookies or secrets.

use std::fmt;

/// Why a sign-in was refused; stable names for the denial page and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialReason {
    /// The verified `hd` (google) / email domain (oidc) is not in `allowed_domains`.
    DomainNotAllowed,
    /// `email_verified` is not true.
    EmailNotVerified,
    /// The email is missing or not exactly `local@domain`.
    InvalidEmail,
    /// The person is in none of `allowed_groups`.
    NotInAllowedGroups,
    /// The IdP answered the callback with `error=...` (e.g. access_denied).
    IdpError,
    /// The callback's `state` does not match a pending login of this browser.
    StateMismatch,
    /// The ID token's nonce does not match the pending login.
    NonceMismatch,
    /// The code exchange (PKCE, client auth, used code) failed at the token endpoint.
    CodeExchangeFailed,
    /// The callback was already used, or its login cookie is gone.
    ReplayedCallback,
    /// The pending login is older than its maximum age.
    LoginExpired,
    /// The ID token failed verification (signature, issuer, audience, expiry).
    InvalidIdToken,
    /// The IdP could not be reached or its discovery document is unusable.
    ProviderUnavailable,
    /// usher's own configuration prevents sign-in (e.g. a non-loopback http issuer).
    Misconfigured,
    /// The `[provisioning] username` rule maps this person to an invalid username.
    InvalidUsername,
    /// The person is suspended or archived in the directory.
    Suspended,
    /// The directory does not know the person who signed in.
    NotInDirectory,
    /// An existing account in a target belongs to someone else (`link_existing`).
    AccountConflict,
    /// The account could not be prepared in the target and `on_failure = "deny"`.
    ProvisioningFailed,
}

impl DenialReason {
    /// A stable snake_case code for pages, logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            DenialReason::DomainNotAllowed => "domain_not_allowed",
            DenialReason::EmailNotVerified => "email_not_verified",
            DenialReason::InvalidEmail => "invalid_email",
            DenialReason::NotInAllowedGroups => "not_in_allowed_groups",
            DenialReason::IdpError => "idp_error",
            DenialReason::StateMismatch => "state_mismatch",
            DenialReason::NonceMismatch => "nonce_mismatch",
            DenialReason::CodeExchangeFailed => "code_exchange_failed",
            DenialReason::ReplayedCallback => "replayed_callback",
            DenialReason::LoginExpired => "login_expired",
            DenialReason::InvalidIdToken => "invalid_id_token",
            DenialReason::ProviderUnavailable => "provider_unavailable",
            DenialReason::Misconfigured => "misconfigured",
            DenialReason::InvalidUsername => "invalid_username",
            DenialReason::Suspended => "suspended",
            DenialReason::NotInDirectory => "not_in_directory",
            DenialReason::AccountConflict => "account_conflict",
            DenialReason::ProvisioningFailed => "provisioning_failed",
        }
    }

    /// A sentence for the person on the denial page.
    pub fn message(self) -> &'static str {
        match self {
            DenialReason::DomainNotAllowed => {
                "Your account's organisation is not allowed to sign in here."
            }
            DenialReason::EmailNotVerified => {
                "Your email address is not verified by your identity provider."
            }
            DenialReason::InvalidEmail => "Your identity provider sent an unusable email address.",
            DenialReason::NotInAllowedGroups => {
                "Your account is not in a group that may sign in here."
            }
            DenialReason::IdpError => "The identity provider refused or cancelled the sign-in.",
            DenialReason::StateMismatch => {
                "This sign-in did not start in this browser. Please start again."
            }
            DenialReason::NonceMismatch => {
                "The sign-in response did not match this sign-in. Please start again."
            }
            DenialReason::CodeExchangeFailed => {
                "The sign-in could not be completed with the identity provider. Please start again."
            }
            DenialReason::ReplayedCallback => {
                "This sign-in link was already used. Please start again."
            }
            DenialReason::LoginExpired => "The sign-in took too long. Please start again.",
            DenialReason::InvalidIdToken => "The identity provider's answer could not be verified.",
            DenialReason::ProviderUnavailable => {
                "The identity provider is unavailable. Please try again shortly."
            }
            DenialReason::Misconfigured => "Sign-in is misconfigured; contact your administrator.",
            DenialReason::InvalidUsername => {
                "Your account cannot be given a valid username here; contact your administrator."
            }
            DenialReason::Suspended => "Your account is suspended.",
            DenialReason::NotInDirectory => {
                "Your account is not in your organisation's directory; contact your administrator."
            }
            DenialReason::AccountConflict => {
                "An existing account conflicts with yours; contact your administrator."
            }
            DenialReason::ProvisioningFailed => {
                "Your account could not be prepared in the application. Please try again shortly."
            }
        }
    }

    /// True when the person is refused (403); false for a broken/expired flow (400)
    /// or an unavailable provider (502/503, decided by the caller).
    pub fn is_forbidden(self) -> bool {
        matches!(
            self,
            DenialReason::DomainNotAllowed
                | DenialReason::EmailNotVerified
                | DenialReason::InvalidEmail
                | DenialReason::NotInAllowedGroups
                | DenialReason::IdpError
                | DenialReason::InvalidUsername
                | DenialReason::Suspended
                | DenialReason::NotInDirectory
                | DenialReason::AccountConflict
        )
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused or failed sign-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sign-in refused ({reason}): {detail}")]
pub struct AuthError {
    /// What to show and count.
    pub reason: DenialReason,
    /// What happened, for the log line (no secrets).
    pub detail: String,
}

impl AuthError {
    /// An error with a reason and a log detail.
    pub fn new(reason: DenialReason, detail: impl Into<String>) -> Self {
        AuthError {
            reason,
            detail: detail.into(),
        }
    }
}
