//! Helpers shared by the unit tests.

/// A fresh directory `usher-<what>-XXXXXX` under the system temp dir, removed with
/// everything in it when the returned guard drops (also when the test panics): keep
/// the guard alive for as long as anything uses the directory.
pub(crate) fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("usher-{what}-"))
        .tempdir()
        .expect("a temporary directory")
}
