//! Full sync: one guarded reconcile of the whole directory into every target
//! (`run`), what it reads and writes through (`sources`), its limits (`safety`),
//! its record (`report`), the schedule and service inside `usher serve` (`job`),
//! the webhook (`notify`) and the `usher sync` command (`cli`). The planning rules
//! themselves live in `provision/`; nothing here decides what an account should be.

pub mod cli;
pub mod job;
pub mod notify;
pub mod report;
pub mod run;
pub mod safety;
pub mod sources;

pub use job::SyncService;
pub use report::{SyncReport, SyncStatus, TargetReport, Trigger};
pub use run::{run, Progress, ProgressSnapshot, SyncOptions};
pub use sources::Sources;

/// Why a sync could not even be set up (config, clients). Problems during a run
/// are in its [`SyncReport`] instead.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// There is nothing to read people from.
    #[error("no [directory] section: a full sync reads people and groups from Google Workspace; add [directory] (see config/usher.example.toml)")]
    NoDirectory,
    /// `[directory] idp` names no `[[idp]]`.
    #[error("[directory] idp = {name:?} names no [[idp]] (configured: {known:?}); fix the name")]
    UnknownSource { name: String, known: Vec<String> },
    /// The directory client could not be built.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// A target client could not be built.
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
}
