//! The `usher` binary itself: exit codes and output of check-config and keygen.

use std::process::Command;

use base64::Engine;

fn usher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_usher"))
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = crate::harness::temp_dir("cli");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_the_dev_config() {
    let out = usher()
        .args(["check-config", "-c", "config/dev.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_config_reports_every_problem_with_file_line_and_exits_64() {
    let path = temp_file(
        "bad.toml",
        "[server]\nlisten = \"not an address\"\npublic_url = \"http://x\"\nworkerz = 2\n\n[session]\nsecret = \"short\"\nttl = \"forever\"\n",
    );
    let out = usher()
        .args(["check-config", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for (line, key) in [
        (2, "server.listen"),
        (4, "server.workerz"),
        (7, "session.secret"),
        (8, "session.ttl"),
    ] {
        let prefix = format!("{file}:{line}:");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(key)),
            "missing {prefix} {key} in:\n{err}"
        );
    }
    assert!(err.contains("did you mean `workers`"), "{err}");
    // The short secret itself is never echoed.
    assert!(!err.contains("\"short\""), "{err}");
}

#[test]
fn serve_refuses_an_invalid_config_with_64() {
    let path = temp_file("empty-server.toml", "[server]\n");
    let out = usher().args(["serve", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn check_config_names_a_missing_file() {
    let out = usher()
        .args(["check-config", "-c", "/nonexistent/usher.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/usher.toml"));
}

#[test]
fn keygen_prints_32_random_bytes() {
    let a = usher().arg("keygen").output().unwrap();
    let b = usher().arg("keygen").output().unwrap();
    assert!(a.status.success());
    let a = String::from_utf8(a.stdout).unwrap();
    let b = String::from_utf8(b.stdout).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn keygen_tls_dev_writes_a_loadable_certificate() {
    let dir = crate::harness::temp_dir("cli-tls").join("certs");
    let out = usher()
        .args(["keygen", "--tls-dev"])
        .arg(&dir)
        .args(["--name", "jira.localtest.me"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    assert!(usher::proxy::tls::acceptor(&cert, &key).is_ok());
}

#[test]
fn version_is_printed() {
    let out = usher().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
