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
