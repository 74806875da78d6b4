//! Sign-in: the OIDC relying party per `[[idp]]`, the per-login state cookie, the
//! `rd` redirect guard and the signed identity assertion. It must not touch the
//! upstream request path or provisioning; the proxy wires these pieces in.

pub mod assertion;
pub mod error;
pub mod flow;
pub mod id_token;
pub mod login_state;
pub mod oidc;
pub mod policy;
pub mod redirect;

/// Compares two secrets (states, nonces, bearer tokens) in time that depends only
/// on their lengths, so a client cannot learn a secret byte by byte from timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
