//! The `usher` command line: parse arguments, load and validate the config (exit
//! 64 when it is invalid), install the one TLS crypto provider (ring), and run
//! the chosen command. `anyhow` is allowed here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use usher::config::{self, Settings};
use usher::telemetry::{self, LogFormat};
use usher::App;

/// EX_USAGE from sysexits.h: the configuration is invalid.
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "usher",
    version,
    about = "Login-time provisioning reverse proxy for Atlassian Data Center"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (default: $USHER_CONFIG, else config/usher.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// One full reconcile now (exit 0 success, 1 failure, 3 stopped by a safety limit).
    Sync(usher::sync::cli::SyncArgs),
    /// Validate the config file and report every problem with file:line:column.
    CheckConfig {
        /// Config file (default: $USHER_CONFIG, else config/usher.toml).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Print a fresh random 32-byte secret (base64) for `[session] secret`.
    Keygen {
        /// Instead, write a self-signed development certificate (tls.crt, tls.key) into DIR.
        #[arg(long, value_name = "DIR")]
        tls_dev: Option<PathBuf>,
        /// Host names for the development certificate.
        #[arg(long = "name", default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
    /// Run usher with a built-in sandbox (Google + Jira emulators): no config, no network.
    Demo {
        /// usher listens here; the sandbox takes the next seven ports, the control page the one after.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run only the sandbox emulators (Google OIDC + Directory, Jira, Confluence,
    /// Bitbucket, Crowd, SCIM) on 127.0.0.1 for development without network.
    Sandbox {
        /// First port: OIDC on N, Directory N+1, Jira N+2, Confluence N+3,
        /// Bitbucket N+4, Crowd N+5, SCIM N+6 (0 = ephemeral ports).
        #[arg(long, default_value_t = usher::sandbox::run::DEFAULT_PORT)]
        port: u16,
        /// Company seed JSON (default: the built-in demo company).
        #[arg(long, value_name = "FILE")]
        seed: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("usher: a TLS crypto provider was already installed; continuing with it");
    }
    match cli.command {
        Command::Serve { config } => serve(config, cli.log_format),
        Command::Sync(args) => match load(args.config.clone()) {
            Ok(settings) => ExitCode::from(usher::sync::cli::main(settings, &args)),
            Err(code) => code,
        },
        Command::CheckConfig { config } => check_config(config),
        Command::Keygen { tls_dev, names } => keygen(tls_dev, &names),
        Command::Demo { port } => usher::sandbox::demo::run_cli(port, cli.log_format),
        Command::Sandbox { port, seed } => usher::sandbox::run::run_cli(
            usher::sandbox::run::SandboxOptions {
                port,
                seed,
                redirect_uris: Vec::new(),
            },
            cli.log_format,
        ),
    }
}

fn load(path: Option<PathBuf>) -> Result<Settings, ExitCode> {
    let path = path.unwrap_or_else(config::default_path);
    config::load(&path).map_err(|errors| {
        eprintln!("{errors}");
        eprintln!(
            "usher: {} problem(s) in {}; nothing was started",
            errors.len(),
            path.display()
        );
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    match load(path) {
        Ok(s) => {
            let file = s
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            println!(
                "{file}: OK ({} identity provider(s), {} upstream(s), {} target(s))",
                s.idps.len(),
                s.upstreams.len(),
                s.targets.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn keygen(tls_dev: Option<PathBuf>, names: &[String]) -> ExitCode {
    if let Some(dir) = tls_dev {
        return match usher::proxy::tls::write_dev_certificate(&dir, names) {
            Ok((cert, key)) => {
                println!(
                    "wrote {} and {} (self-signed for {}; development only)",
                    cert.display(),
                    key.display(),
                    names.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("usher: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut key);
    println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
    ExitCode::SUCCESS
}

fn serve(path: Option<PathBuf>, format: LogFormat) -> ExitCode {
    let settings = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let _guard = telemetry::init(format);
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "usher stopped");
            eprintln!("usher: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    // The control runtime: start-up, signals and background jobs. Requests are
    // served by the per-core worker runtimes that `App::run` starts.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("usher-control")
        .enable_all()
        .build()?;
    let app = rt.block_on(App::build(settings))?;
    let addr = app.local_addr();
    let (stop, stopped) = watch::channel(false);
    let sync = app.sync.clone();
    let workers = app.run(stopped)?;
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "usher is serving");
    rt.block_on(wait_for_signal())?;
    tracing::info!("shutdown requested; draining in-flight requests");
    let _ = stop.send(true);
    if let Some(sync) = sync {
        // Several replicas: hand the sync leader lease over before exiting.
        rt.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sync.resign()).await;
        });
    }
    workers.join();
    tracing::info!("usher stopped");
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
