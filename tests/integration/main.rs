//! The one integration test binary (one link step on 2 cores). Each module is
//! one area; `harness` starts usher exactly as `usher serve` does.

// Test support code may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_log;
mod admin;
mod auth;
mod cli;
mod connect;
mod demo;
mod harness;
mod lean;
mod metrics;
mod multi_idp;
mod oidc_peer;
mod peers;
mod proxy;
mod replicas;
mod sandbox_cmd;
mod scim_in;
mod signin;
mod signin_peer;
mod sync;
mod targets;
mod upstream;
