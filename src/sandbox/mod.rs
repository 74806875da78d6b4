//! The sandbox: in-process emulators of Google (OIDC + Directory) and the
//! Atlassian products, used by `usher demo`, `usher sandbox`, tests and benchmarks.
//! Emulators follow the wire formats in `shared/reference/` exactly; they must
//! never be reachable from a production `usher serve`.

pub mod atlassian;
pub mod bitbucket;
pub mod company;
pub mod confluence;
pub mod crowd;
pub mod demo;
pub mod faults;
pub mod google_directory;
pub mod google_oidc;
pub mod http;
pub mod jira;
pub mod redis_server;
pub mod run;
pub mod scim;
