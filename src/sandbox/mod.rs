//! The sandbox: in-process emulators of Google (OIDC + Directory) and the
//! Atlassian products, used by `usher demo`, `usher sandbox`, tests and benchmarks.
//! Emulators follow the wire formats in `shared/reference/` exactly; they must
//! never be reachable from a production `usher serve`.

pub mod faults;
pub mod google_directory;
pub mod google_oidc;
pub mod http;
