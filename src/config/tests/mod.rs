//! Tests of the configuration module as a whole: the example file, a table of bad
//! configurations with exact positions, defaults, enums and redaction.

mod bad;
mod example;
mod good;
mod robust;

use super::{parse, Problem, Settings, StaticEnv};

/// A 32-byte session secret for tests.
pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The smallest valid configuration.
pub(super) const MIN: &str = r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://jira.example.com"

[session]
secret = "0123456789abcdef0123456789abcdef"

[[idp]]
name = "google"
client_id = "cid"
client_secret = "csecret"
allowed_domains = ["example.com"]

[[upstream]]
name = "jira"
host = "jira.example.com"
url = "http://127.0.0.1:8080"
"#;

/// Parses with an empty environment, expecting success.
pub(super) fn ok(text: &str) -> Settings {
    ok_with(text, &StaticEnv::new())
}

pub(super) fn ok_with(text: &str, env: &StaticEnv) -> Settings {
    match parse(text, "t.toml", env) {
        Ok(s) => s,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// Parses with an empty environment, expecting problems.
pub(super) fn errs(text: &str) -> Vec<Problem> {
    errs_with(text, &StaticEnv::new())
}

pub(super) fn errs_with(text: &str, env: &StaticEnv) -> Vec<Problem> {
    match parse(text, "t.toml", env) {
        Ok(_) => panic!("expected problems, the config was accepted:\n{text}"),
        Err(e) => e.iter().cloned().collect(),
    }
}
