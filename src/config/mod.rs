//! Configuration: TOML text -> raw serde shapes -> validated [`Settings`].
//! Owns parsing, `${ENV}`/`file:` secret expansion, durations, percentages and
//! error reporting with file:line:column. Must not do any network I/O.

mod secret;
mod settings;

pub use secret::Secret;
pub use settings::*;
