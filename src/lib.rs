//! usher: a login-time provisioning reverse proxy for Atlassian Data Center.
//! This crate root lists the domain modules; see ARCHITECTURE.md for the three
//! paths (request, login, sync) through them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod directory;
pub mod error;
pub mod identity;
pub mod provision;
pub mod proxy;
pub mod replicas;
pub mod sandbox;
pub mod session;
pub mod sync;
pub mod target;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_support;

pub use app::App;
