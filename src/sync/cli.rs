//! `usher sync`: its arguments, a runtime, logs on stderr (stdout is for the plan,
//! the summary or the JSON report), a progress bar when stdout is a terminal, and
//! the exit code (0 success, 1 failure, 3 stopped by a safety limit), and with
//! `[state] redis_url` the shared run lock and shared report. The run itself is
//! `run::run`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::config::Settings;

use crate::replicas::run_lock::{run_lock_ttl, RunLock};
use crate::replicas::{lease_period, Shared, SharedReports};

use super::report::{new_sync_id, render_plan, SyncReport, Trigger};
use super::run::{run, Progress, SyncOptions};
use super::sources::Sources;

/// Arguments of `usher sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Config file (default: $USHER_CONFIG, else config/usher.toml).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Print the plan (creates, updates, deactivations, group adds/removes) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The source to read: the [directory] idp, or an [[idp]] with a scim_token (the
    /// people it pushed); refuses to run if it names anything else.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Only this target (repeat for several); default: every [[target]].
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Print the JSON report instead of the table / summary.
    #[arg(long)]
    pub json: bool,
    /// Apply even though a safety limit is exceeded; WHO (your name or e-mail) is
    /// recorded in the report and the audit log.
    #[arg(long, value_name = "WHO")]
    pub apply_anyway: Option<String>,
}

/// Exit code when the sync ran and failed.
pub const EXIT_FAILURE: u8 = 1;

/// Runs `usher sync` with an already validated config; returns the exit code.
pub fn main(settings: Settings, args: &SyncArgs) -> u8 {
    init_stderr_logs();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("usher-sync")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("usher sync: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let sources = match Sources::for_source(&settings, args.source.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("usher sync: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut options = SyncOptions {
        dry_run: args.dry_run,
        source: args.source.clone(),
        targets: args.targets.clone(),
        approved_by: args.apply_anyway.clone(),
        requested_by: None,
        trigger: Trigger::Cli,
        id: Some(new_sync_id(std::time::SystemTime::now())),
        replica: None,
    };
    let progress = Arc::new(Progress::default());
    let show_bar = !args.json && std::io::stdout().is_terminal();
    let report = rt.block_on(async {
        let shared = match shared_run(&settings, &mut options, &progress).await {
            Ok(s) => s,
            Err(msg) => {
                eprintln!("usher sync: {msg}");
                return None;
            }
        };
        let bar = show_bar.then(|| spawn_bar(progress.clone()));
        let report = run(&settings, &sources, &options, &progress).await;
        if let Some((stop, task)) = bar {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some((reports, lock)) = shared {
            if let Err(e) = reports.put(&report).await {
                eprintln!("usher sync: the report could not be shared with the replicas: {e}");
            }
            if let Some(lock) = lock {
                lock.release().await;
            }
        }
        Some(report)
    });
    let Some(report) = report else {
        return EXIT_FAILURE;
    };
    print_report(&report, args);
    report.exit_code()
}

/// With `[state] redis_url`: the shared reports, and for a run that applies, the
/// shared run lock (so `usher sync` never runs beside a replica's sync). `Err` says
/// why the sync must not start.
async fn shared_run(
    settings: &Settings,
    options: &mut SyncOptions,
    progress: &Arc<Progress>,
) -> Result<Option<(SharedReports, Option<RunLock>)>, String> {
    let Some(url) = &settings.state.redis_url else {
        return Ok(None);
    };
    let shared = Shared::connect(url).await.map_err(|e| e.to_string())?;
    options.replica = Some(shared.replica().to_string());
    let reports = SharedReports::new(shared.clone());
    if options.dry_run {
        return Ok(Some((reports, None)));
    }
    let id = options.id.clone().unwrap_or_default();
    let ttl = run_lock_ttl(lease_period(settings.sync.interval));
    let taken = RunLock::take(
        &shared,
        &id,
        ttl,
        progress.clone(),
        Some(reports.clone()),
        &tokio::runtime::Handle::current(),
    )
    .await
    .map_err(|e| e.to_string())?;
    match taken {
        Ok(lock) => Ok(Some((reports, Some(lock)))),
        Err(running) => Err(format!(
            "sync {running} is running on a replica; run again when it has finished (one sync at a time)"
        )),
    }
}

fn print_report(report: &SyncReport, args: &SyncArgs) {
    if args.json {
        match serde_json::to_string_pretty(report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("usher sync: the report could not be encoded: {e}"),
        }
        return;
    }
    if args.dry_run {
        print!("{}", render_plan(report));
    } else {
        for t in &report.targets {
            if let Some(e) = &t.error {
                println!("{}: {e}", t.name);
            }
            for f in t.failures.iter().take(20) {
                println!(
                    "{}: {} {}: {:?}",
                    t.name,
                    f.op.kind(),
                    f.op.username().unwrap_or(""),
                    f.outcome
                );
            }
        }
    }
    for why in &report.stopped_because {
        println!("safety limit: {why}");
    }
    if !report.stopped_because.is_empty() && report.approved_by.is_none() && !report.dry_run {
        println!(
            "nothing was changed; check the plan with --dry-run, then raise the limit or rerun with --apply-anyway WHO"
        );
    }
    for e in &report.errors {
        eprintln!("usher sync: {e}");
    }
    println!("{}", report.summary_line());
}

/// A progress bar polling `progress` until told to stop.
fn spawn_bar(
    progress: Arc<Progress>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new_spinner();
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg} {pos}/{len} writes",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        loop {
            let s = progress.snapshot();
            bar.set_message(s.phase);
            bar.set_length(s.total);
            bar.set_position(s.done);
            bar.tick();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(120)) => {}
                _ = stopped.changed() => break,
            }
        }
        bar.finish_and_clear();
    });
    (stop, task)
}

/// Logs go to stderr (warnings and up unless `RUST_LOG` says otherwise).
fn init_stderr_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
