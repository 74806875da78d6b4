//! Logging set-up: one tracing subscriber for the process, text or JSON, written
//! by a background thread so workers never block on stdout. Filter with
//! `RUST_LOG` (e.g. `usher::access=off` silences the access log). The access log
//! has its own batched fast path ([`access_log`]) into the same writer.

pub mod access_log;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. Keep the returned guard alive until exit, or
/// the last lines are lost.
pub fn init(format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = std::io::stdout();
    let ansi = std::io::IsTerminal::is_terminal(&stdout);
    // The background thread drains every queued line, then flushes: with a
    // buffer in between, a burst of access-log lines costs one write(2), not one each.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(64 * 1024, stdout));
    if !ansi {
        access_log::install(writer.clone(), format);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.ok().map(|_| guard)
}
