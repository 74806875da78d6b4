//! Starts the whole sandbox from one company seed: Google OIDC, Google Directory,
//! Jira, Confluence, Bitbucket, Crowd and SCIM emulators on consecutive loopback
//! ports, and says what runs where (`describe`, including a ready-to-paste
//! `usher.toml` snippet). Used by `usher sandbox`, `usher demo`, tests and
//! benchmarks. Never part of a production `usher serve`; binds 127.0.0.1 only.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::bitbucket::BitbucketEmulator;
use super::company::{Company, CompanyError};
use super::confluence::ConfluenceEmulator;
use super::crowd::CrowdEmulator;
use super::google_directory::{
    self, generate_service_account_key, GoogleDirectoryEmulator, SeedServiceAccount,
};
use super::google_oidc::GoogleOidc;
use super::http::Running;
use super::jira::JiraEmulator;
use super::scim::ScimEmulator;
use crate::config::Secret;
use crate::directory::google_auth::{ServiceAccountKey, SystemClock};
use crate::telemetry::{self, LogFormat};

/// The first port `usher sandbox` uses when `--port` is not given.
pub const DEFAULT_PORT: u16 = 9400;

/// How many ports the sandbox takes from `port` on (OIDC .. SCIM).
pub const PORTS: u16 = 7;

/// EX_USAGE: the seed file is invalid (same code as an invalid config).
const EXIT_BAD_SEED: u8 = 64;

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// First port: OIDC on `port`, Directory `+1`, Jira `+2`, Confluence `+3`,
    /// Bitbucket `+4`, Crowd `+5`, SCIM `+6`. 0 = every emulator on an ephemeral port.
    pub port: u16,
    /// A company seed file; `None` = the built-in demo company.
    pub seed: Option<PathBuf>,
    /// Redirect URIs the OAuth client accepts besides the seed's (e.g. the demo
    /// proxy's `http://127.0.0.1:PORT/_usher/callback`).
    pub redirect_uris: Vec<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            port: DEFAULT_PORT,
            seed: None,
            redirect_uris: Vec::new(),
        }
    }
}

/// Why the sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The company seed is invalid.
    #[error(transparent)]
    Seed(#[from] CompanyError),
    /// A port is taken or outside the range.
    #[error("sandbox: cannot listen for the {emulator} emulator on {addr} ({source}); choose another --port (the sandbox uses {PORTS} consecutive ports) or stop what listens there")]
    Bind {
        /// Which emulator.
        emulator: &'static str,
        /// Where.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory service-account key could not be made, read or written.
    #[error("sandbox: the directory service-account key {problem}; {fix}")]
    Key {
        /// What went wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
}

/// Base URLs of the running emulators (`http://127.0.0.1:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxUrls {
    /// Google OIDC issuer (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    /// Directory API base (`[directory] api_url`); the token endpoint is `{directory}/token`.
    pub directory: String,
    /// Jira base URL.
    pub jira: String,
    /// Confluence base URL.
    pub confluence: String,
    /// Bitbucket base URL.
    pub bitbucket: String,
    /// Crowd base URL.
    pub crowd: String,
    /// SCIM base including `/scim/directory/{id}`.
    pub scim: String,
}

impl SandboxUrls {
    /// The directory token endpoint (`[directory] token_url`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.directory)
    }
}

/// The running sandbox. Keep it alive while the emulators should run: dropping it
/// stops them and deletes the service-account key file.
pub struct SandboxHandles {
    /// The company it was seeded with.
    pub company: Company,
    /// Where everything listens.
    pub urls: SandboxUrls,
    /// Redirect URIs the OAuth client accepts (the seed's plus the options').
    pub redirect_uris: Vec<String>,
    /// Google OIDC emulator (steer: `set_suspended`, `rotate_keys`, `set_tamper`, faults).
    pub oidc: Arc<GoogleOidc>,
    /// Google Directory emulator (steer: `set_suspended`, `inject`, counters).
    pub directory: Arc<GoogleDirectoryEmulator>,
    /// Jira emulator (`state()`, `with_state`, `gate`).
    pub jira: Arc<JiraEmulator>,
    /// Confluence emulator.
    pub confluence: Arc<ConfluenceEmulator>,
    /// Bitbucket emulator.
    pub bitbucket: Arc<BitbucketEmulator>,
    /// Crowd emulator.
    pub crowd: Arc<CrowdEmulator>,
    /// SCIM emulator.
    pub scim: Arc<ScimEmulator>,
    /// The directory service-account JSON key.
    pub service_account_key: Secret,
    /// Where that key was written (0600) for `service_account_key = "file:..."`.
    pub key_file: PathBuf,
    servers: Servers,
}

/// Stops every started server when dropped (also on a failed start).
#[derive(Default)]
struct Servers(Vec<Running>);

impl Drop for Servers {
    fn drop(&mut self) {
        for r in &self.0 {
            r.stop();
        }
    }
}

impl Drop for SandboxHandles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
    }
}

impl SandboxHandles {
    /// Suspends (`true`) or reactivates a person in Google consistently: the OIDC
    /// provider refuses (or allows) their sign-in and the directory reports
    /// `suspended`. False if either emulator does not know the email.
    pub fn suspend(&self, email: &str, suspended: bool) -> bool {
        let oidc = self.oidc.set_suspended(email, suspended);
        let dir = self.directory.set_suspended(email, suspended);
        oidc && dir
    }

    /// Renames a person's Google account (sign-in and directory): same id, new
    /// primary email, the old one kept as an alias. False if either emulator
    /// does not know `email`.
    pub fn rename(&self, email: &str, new_email: &str) -> bool {
        let oidc = self.oidc.rename(email, new_email);
        let dir = self.directory.rename_user(email, new_email);
        oidc && dir
    }

    /// Stops every emulator (dropping the handles does the same).
    pub fn stop(&self) {
        for r in &self.servers.0 {
            r.stop();
        }
    }

    /// A `usher.toml` fragment ([[idp]], [directory], [[target]]s) that points usher
    /// at this sandbox. Contains the sandbox's (public, throw-away) credentials.
    pub fn usher_toml(&self) -> String {
        let c = &self.company;
        let u = &self.urls;
        let at = &c.atlassian;
        let mut s = String::new();
        let _ = writeln!(s, "[[idp]]\nname = \"google\"\nkind = \"google\"");
        let _ = writeln!(s, "issuer = {}", q(&u.issuer));
        let _ = writeln!(s, "client_id = {}", q(&c.oauth_client.client_id));
        let _ = writeln!(s, "client_secret = {}", q(&c.oauth_client.client_secret));
        let _ = writeln!(s, "allowed_domains = [{}]\n", q(&c.domain));
        let _ = writeln!(s, "[directory]\nidp = \"google\"");
        let _ = writeln!(s, "api_url = {}", q(&u.directory));
        let _ = writeln!(s, "token_url = {}", q(&u.token_url()));
        let key = format!("file:{}", self.key_file.display());
        let _ = writeln!(s, "service_account_key = {}", q(&key));
        let _ = writeln!(
            s,
            "admin_subject = {}\n",
            q(&c.service_account.admin_subject)
        );
        let bearer = format!("{{ token = {} }}", q(&at.bot.token));
        let crowd = format!(
            "{{ username = {}, password = {} }}",
            q(&at.crowd_application.name),
            q(&at.crowd_application.password)
        );
        let scim = format!("{{ token = {} }}", q(&at.scim.token));
        let lead = at
            .admins
            .first()
            .map(|a| format!("default_project_lead = {}\n", q(a)));
        for (name, url, auth, extra) in [
            ("jira", &u.jira, &bearer, lead.as_deref()),
            ("confluence", &u.confluence, &bearer, None),
            ("bitbucket", &u.bitbucket, &bearer, None),
            ("crowd", &u.crowd, &crowd, None),
            ("scim", &u.scim, &scim, None),
        ] {
            let _ = writeln!(
                s,
                "[[target]]\nname = \"{name}\"\nkind = \"{name}\"\nurl = {}\nauth = {auth}\n{}",
                q(url),
                extra.unwrap_or("")
            );
        }
        let mut protected = vec![q(&at.bot.username)];
        protected.extend(at.accounts.iter().map(|a| q(&a.username)));
        let _ = writeln!(
            s,
            "# Suggested: accounts usher must never change.\n# [provisioning]\n# protected_users = [{}]",
            protected.join(", ")
        );
        s
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The first port at or after `from` where [`PORTS`] consecutive loopback ports
/// can be bound right now (`usher demo`: "the sandbox takes the next free ports").
/// Another process may still take one before `start` binds it; `start` then fails
/// with [`SandboxError::Bind`].
pub fn next_free_ports(from: u16) -> Option<u16> {
    let last = u16::MAX - (PORTS - 1);
    let mut base = from.max(1);
    while base <= last {
        let taken =
            (0..PORTS).find(|&i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_err());
        match taken {
            None => return Some(base),
            Some(i) => base = base.checked_add(i + 1)?,
        }
    }
    None
}

fn addr(port: u16, offset: u16) -> SocketAddr {
    let p = if port == 0 { 0 } else { port + offset };
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn bind_error(
    emulator: &'static str,
    at: SocketAddr,
) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |source| SandboxError::Bind {
        emulator,
        addr: at.to_string(),
        source,
    }
}

/// The service-account key from the seed, or a freshly generated one.
async fn service_account_key(
    company: &Company,
) -> Result<(ServiceAccountKey, Secret), SandboxError> {
    let json = match company.service_account_key() {
        Some(k) => k.clone(),
        None => {
            let (email, id) = (
                company.service_account.client_email.clone(),
                company.service_account.client_id.clone(),
            );
            let made =
                tokio::task::spawn_blocking(move || generate_service_account_key(&email, &id))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
            Secret::new(made.map_err(|e| SandboxError::Key {
                problem: format!("could not be generated ({e})"),
                fix: "give one with service_account.key_file in the seed".into(),
            })?)
        }
    };
    let key = ServiceAccountKey::from_json(json.expose()).map_err(|e| SandboxError::Key {
        problem: format!("is not usable ({e})"),
        fix: "give a service-account JSON key as downloaded from Google Cloud".into(),
    })?;
    company.check_key(&key)?;
    Ok((key, json))
}

/// Writes the key where only this user can read it.
fn write_key_file(json: &Secret, port: u16) -> Result<PathBuf, SandboxError> {
    let path = std::env::temp_dir().join(format!(
        "usher-sandbox-{}-{port}-{:08x}-sa.json",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, json.expose().as_bytes()));
    written.map_err(|e| SandboxError::Key {
        problem: format!("cannot be written to {} ({e})", path.display()),
        fix: "make the temporary directory writable (or set TMPDIR)".into(),
    })?;
    Ok(path)
}

/// Starts every emulator from the options' seed. See [`SandboxOptions::port`] for
/// the port layout; everything binds 127.0.0.1.
pub async fn start(opts: SandboxOptions) -> Result<SandboxHandles, SandboxError> {
    let company = match &opts.seed {
        Some(path) => Company::load(path)?,
        None => Company::demo()?,
    };
    if opts.port != 0 && opts.port.checked_add(PORTS - 1).is_none() {
        return Err(SandboxError::Bind {
            emulator: "SCIM",
            addr: format!("127.0.0.1:{}+{}", opts.port, PORTS - 1),
            source: std::io::Error::other("port out of range"),
        });
    }
    let port = opts.port;
    let mut servers = Servers::default();
    let oidc_addr = addr(port, 0);
    let oidc_config = company.oidc_config(&opts.redirect_uris);
    let redirect_uris = oidc_config.redirect_uris.clone();
    let (oidc_started, key) = tokio::join!(
        GoogleOidc::start(oidc_config, oidc_addr),
        service_account_key(&company)
    );
    let (oidc, running) = oidc_started.map_err(bind_error("Google OIDC", oidc_addr))?;
    servers.0.push(running);
    for p in company.people.iter().filter(|p| !p.can_sign_in()) {
        oidc.set_suspended(&p.email, true);
    }
    let (key, key_json) = key?;
    let seed = company.directory_seed(SeedServiceAccount::for_key(&key));
    let at = addr(port, 1);
    let (directory, running) = google_directory::start_with(at, seed, Arc::new(SystemClock))
        .await
        .map_err(bind_error("Google Directory", at))?;
    servers.0.push(running);
    oidc.attach_consent(directory.clone());
    let at = addr(port, 2);
    let (jira, running) = JiraEmulator::start_on(at, company.jira_seed())
        .await
        .map_err(bind_error("Jira", at))?;
    servers.0.push(running);
    let at = addr(port, 3);
    let (confluence, running) = ConfluenceEmulator::start_on(at, company.confluence_seed())
        .await
        .map_err(bind_error("Confluence", at))?;
    servers.0.push(running);
    let at = addr(port, 4);
    let (bitbucket, running) = BitbucketEmulator::start_on(at, company.bitbucket_seed())
        .await
        .map_err(bind_error("Bitbucket", at))?;
    servers.0.push(running);
    let at = addr(port, 5);
    let (crowd, running) = CrowdEmulator::start_on(at, company.crowd_seed())
        .await
        .map_err(bind_error("Crowd", at))?;
    servers.0.push(running);
    let at = addr(port, 6);
    let (scim, running) = ScimEmulator::start_on(at, company.scim_seed())
        .await
        .map_err(bind_error("SCIM", at))?;
    servers.0.push(running);
    let url = |i: usize| servers.0[i].url();
    let urls = SandboxUrls {
        issuer: oidc.issuer().to_string(),
        directory: directory.base_url(),
        jira: url(2),
        confluence: url(3),
        bitbucket: url(4),
        crowd: url(5),
        scim: format!("{}{}", url(6), scim.base_path()),
    };
    let key_file = write_key_file(&key_json, servers.0[0].addr.port())?;
    tracing::info!(issuer = %urls.issuer, jira = %urls.jira, "sandbox emulators started");
    Ok(SandboxHandles {
        company,
        urls,
        redirect_uris,
        oidc,
        directory,
        jira,
        confluence,
        bitbucket,
        crowd,
        scim,
        service_account_key: key_json,
        key_file,
        servers,
    })
}

/// A human summary: what runs where, the demo accounts, the OAuth client, the
/// service account, the Atlassian credentials and a `usher.toml` snippet. Prints
/// the sandbox's throw-away credentials on purpose; never use them elsewhere.
pub fn describe(h: &SandboxHandles) -> String {
    let c = &h.company;
    let u = &h.urls;
    let at = &c.atlassian;
    let mut s = String::from("usher sandbox (development only; all data is in memory)\n\n");
    for (name, url, note) in [
        (
            "Google OIDC",
            &u.issuer,
            "issuer; /.well-known/openid-configuration",
        ),
        (
            "Google Directory",
            &u.directory,
            "Admin SDK /admin/directory/v1, OAuth /token",
        ),
        ("Jira", &u.jira, ""),
        ("Confluence", &u.confluence, ""),
        ("Bitbucket", &u.bitbucket, ""),
        ("Crowd", &u.crowd, ""),
        ("SCIM", &u.scim, ""),
    ] {
        let _ = writeln!(s, "  {name:<17} {url}  {note}");
    }
    let _ = writeln!(
        s,
        "\nGoogle accounts in {} (no passwords: pick one on the sign-in page):",
        c.domain
    );
    for p in &c.people {
        let mut notes = Vec::new();
        if p.admin {
            notes.push("Workspace admin".to_string());
        }
        if h.oidc.is_suspended(&p.email) {
            notes.push("suspended: cannot sign in".to_string());
        }
        if let Some(a) = &p.atlassian_username {
            notes.push(format!("already has Atlassian account {a}"));
        }
        let _ = writeln!(
            s,
            "  {:<26} {:<16} sub {}  {}",
            p.email,
            p.display_name(),
            p.id,
            notes.join("; ")
        );
    }
    let _ = writeln!(s, "\nGoogle groups:");
    for g in &c.groups {
        let _ = writeln!(s, "  {:<26} {}: {}", g.email, g.name, g.members.join(", "));
    }
    let _ = writeln!(
        s,
        "\nOAuth client: id {}  secret {}\n  redirect URIs: {}",
        c.oauth_client.client_id,
        c.oauth_client.client_secret,
        h.redirect_uris.join(", ")
    );
    let _ = writeln!(
        s,
        "Directory service account: {} (acts as {}), key {}",
        c.service_account.client_email,
        c.service_account.admin_subject,
        h.key_file.display()
    );
    let _ = writeln!(
        s,
        "\nAtlassian bot: {} / password {} / token {}  (product admins besides the bot: {})",
        at.bot.username,
        at.bot.password,
        at.bot.token,
        at.admins.join(", ")
    );
    let fixture = c.fixture();
    let accounts: Vec<String> = fixture
        .users
        .iter()
        .map(|(n, e, _)| format!("{n} <{e}>"))
        .collect();
    let _ = writeln!(s, "  existing accounts: {}", accounts.join(", "));
    for (g, members) in &fixture.groups {
        let _ = writeln!(s, "  existing group {g}: {}", members.join(", "));
    }
    let _ = writeln!(
        s,
        "  Crowd application: {} / {}   SCIM token: {}",
        at.crowd_application.name, at.crowd_application.password, at.scim.token
    );
    let _ = writeln!(
        s,
        "\nusher.toml snippet for this sandbox (add [server], [session], [[upstream]]):\n"
    );
    s.push_str(h.usher_toml().trim_end());
    s
}

/// `usher sandbox [--port N] [--seed FILE]`: start, print [`describe`] and a ready
/// line, run until SIGINT/SIGTERM. Exit 64 on a bad seed, 1 on other failures.
pub fn run_cli(opts: SandboxOptions, format: LogFormat) -> ExitCode {
    let _guard = telemetry::init(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("usher-sandbox")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("usher sandbox: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let handles = match start(opts).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("usher: {e}");
                return match e {
                    SandboxError::Seed(_) => ExitCode::from(EXIT_BAD_SEED),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        println!("{}", describe(&handles));
        println!(
            "usher sandbox ready: issuer {} (Ctrl-C to stop)",
            handles.urls.issuer
        );
        if let Err(e) = wait_for_signal().await {
            eprintln!("usher sandbox: cannot wait for signals: {e}");
            return ExitCode::FAILURE;
        }
        handles.stop();
        tracing::info!("sandbox stopped");
        ExitCode::SUCCESS
    })
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() -> std::io::Result<()> {
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

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
