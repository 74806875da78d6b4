//! `usher demo`: the whole product on one machine with no config and no network.
//! Starts the sandbox (Google OIDC + Directory + a Jira emulator that shows who
//! you are), usher in front of that Jira with login-time provisioning, and a small
//! control page to suspend people. The config is `config/demo.toml` filled in at
//! start-up: a real usher config, validated like any other.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::http::{self as shttp, Handler, Running};
use super::run::{self, SandboxError, SandboxHandles, SandboxOptions};
use crate::config::{self, SystemEnv};
use crate::error::html_escape;
use crate::proxy::server::Workers;
use crate::telemetry::{self, LogFormat};
use crate::App;

/// The demo's config template (see `config/demo.toml`).
const TEMPLATE: &str = include_str!("../../config/demo.toml");

/// Ports after the proxy's: the sandbox takes the next seven, the control page the one after.
const SANDBOX_OFFSET: u16 = 1;
const CONTROL_OFFSET: u16 = 8;

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The sandbox emulators could not start (usually a port in use).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The generated config is invalid (a bug: it is tested).
    #[error("the demo configuration is invalid:\n{0}")]
    Config(String),
    /// usher itself could not start.
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    /// The control page could not listen.
    #[error("cannot listen for the demo control page on {addr}: {source}; choose another --port")]
    Control {
        /// Address tried.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// A running demo.
pub struct Demo {
    /// Where usher listens (the URL to open).
    pub addr: SocketAddr,
    /// The sandbox, to inspect or steer (suspend people, read the Jira state).
    pub sandbox: Arc<SandboxHandles>,
    /// The control page.
    pub control: Running,
    stop: watch::Sender<bool>,
    workers: Option<Workers>,
    /// Removed on drop; declared last, so after everything else (usher stopped).
    _state_dir: StateDir,
}

/// The demo's own state directory under the temp dir, removed when the demo stops
/// (also when it fails to start): `usher demo` takes no state directory option, so
/// nothing in it outlives the run.
struct StateDir(std::path::PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "demo: cannot remove the state directory");
            }
        }
    }
}

impl Demo {
    /// usher's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops usher (draining requests), the control page and the sandbox.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.workers.take() {
            w.join();
        }
        self.control.stop();
        self.sandbox.stop();
    }
}

/// The demo config text for a proxy on `port` in front of this sandbox.
pub fn config_text(port: u16, sandbox: &SandboxHandles, state_dir: &std::path::Path) -> String {
    let secret: String = (0..48)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    TEMPLATE
        .replace("{{PORT}}", &port.to_string())
        .replace("{{SECRET}}", &secret)
        .replace("{{SANDBOX}}", sandbox.usher_toml().trim_end())
        .replace("{{JIRA_URL}}", &sandbox.urls.jira)
        .replace(
            "{{STATE_DIR}}",
            &state_dir.display().to_string().replace('\\', "/"),
        )
}

/// Starts the sandbox, usher and the control page. `port` 0 picks free ports (tests).
pub async fn start(port: u16) -> Result<Demo, DemoError> {
    start_with(port, |text| text).await
}

/// Like [`start`], with the generated config text passed through `edit` first
/// (tests shorten timings with it; the result is validated like any config).
pub async fn start_with(port: u16, edit: impl FnOnce(String) -> String) -> Result<Demo, DemoError> {
    // usher needs its port first (the callback URL names it). The port stays
    // reserved by a bound, non-listening SO_REUSEPORT socket until usher's own
    // listeners (also SO_REUSEPORT) hold it, so nothing else can take it between.
    let reserve = SocketAddr::from(([127, 0, 0, 1], port));
    let control_err = |source| DemoError::Control {
        addr: reserve,
        source,
    };
    let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(control_err)?;
    probe.set_reuse_address(true).map_err(control_err)?;
    probe.set_reuse_port(true).map_err(control_err)?;
    probe.bind(&reserve.into()).map_err(control_err)?;
    let proxy_port = probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(port, |a| a.port());
    let sandbox_port = if port == 0 { 0 } else { port + SANDBOX_OFFSET };
    let callbacks = vec![
        format!("http://127.0.0.1:{proxy_port}/_usher/callback"),
        format!("http://localhost:{proxy_port}/_usher/callback"),
    ];
    let sandbox = Arc::new(
        run::start(SandboxOptions {
            port: sandbox_port,
            seed: None,
            redirect_uris: callbacks,
        })
        .await?,
    );
    let state_dir = StateDir(
        std::env::temp_dir().join(format!("usher-demo-{}-{proxy_port}", std::process::id())),
    );
    let text = edit(config_text(proxy_port, &sandbox, &state_dir.0));
    let settings =
        config::parse(&text, "<demo>", &SystemEnv).map_err(|e| DemoError::Config(e.to_string()))?;
    let app = App::build(settings).await?;
    drop(probe);
    let addr = app.local_addr();
    let (stop, stopped) = watch::channel(false);
    let workers = app.run(stopped)?;
    let control_addr = SocketAddr::from((
        [127, 0, 0, 1],
        if port == 0 { 0 } else { port + CONTROL_OFFSET },
    ));
    let control = shttp::serve(control_addr, control_handler(sandbox.clone()))
        .await
        .map_err(|source| DemoError::Control {
            addr: control_addr,
            source,
        })?;
    Ok(Demo {
        addr,
        sandbox,
        control,
        stop,
        workers: Some(workers),
        _state_dir: state_dir,
    })
}

/// The control page: everyone in the company with a Suspend/Restore button.
fn control_handler(sandbox: Arc<SandboxHandles>) -> Handler {
    Arc::new(move |req: Request<Bytes>| {
        let sandbox = sandbox.clone();
        Box::pin(async move { control(&sandbox, req) })
    })
}

fn control(sandbox: &SandboxHandles, req: Request<Bytes>) -> Response<Bytes> {
    if req.method() == Method::POST && req.uri().path() == "/suspend" {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let (Some(email), Some(on)) = (get("email"), get("suspend")) {
            let on = on == "1";
            if sandbox.suspend(email, on) {
                tracing::info!(email, suspended = on, "demo: directory changed");
            }
        }
        let mut r = shttp::empty(StatusCode::SEE_OTHER);
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        return r;
    }
    if req.uri().path() != "/" {
        return shttp::empty(StatusCode::NOT_FOUND);
    }
    let mut rows = String::new();
    for p in &sandbox.company.people {
        let suspended = sandbox
            .directory
            .user(&p.email)
            .map(|u| u.suspended)
            .unwrap_or(p.suspended);
        let (label, value) = if suspended {
            ("Restore", "0")
        } else {
            ("Suspend", "1")
        };
        rows.push_str(&format!(
            "<tr><td>{email}</td><td>{state}</td><td><form method=\"post\" action=\"/suspend\">\
             <input type=\"hidden\" name=\"email\" value=\"{email}\">\
             <input type=\"hidden\" name=\"suspend\" value=\"{value}\">\
             <button>{label}</button></form></td></tr>",
            email = html_escape(&p.email),
            state = if suspended { "suspended" } else { "active" },
        ));
    }
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>usher demo: directory</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:44em;margin:3em auto}}\
         td{{padding:.3em 1em}}</style></head><body><h1>Sandbox Google Workspace</h1>\
         <p>Suspend someone here; usher re-checks signed-in people every 20 seconds and \
         ends the session of a suspended person at their next request.</p>\
         <table>{rows}</table></body></html>\n"
    );
    let mut r = Response::new(Bytes::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// What `usher demo` prints: where to go, who to be.
pub fn describe(demo: &Demo) -> String {
    let mut s = String::new();
    s.push_str("usher demo: everything runs on this machine, in memory\n\n");
    s.push_str(&format!(
        "  Open     {}/  (usher in front of a Jira emulator)\n",
        demo.url()
    ));
    s.push_str(&format!(
        "  Directory control page: http://{}/  (suspend people)\n\n",
        demo.control.addr
    ));
    s.push_str("  Sign in as any of (the sandbox Google shows a chooser, no password):\n");
    for p in &demo.sandbox.company.people {
        let note = if p.suspended {
            "  (suspended: will be refused)"
        } else {
            ""
        };
        s.push_str(&format!("    {}{note}\n", p.email));
    }
    s.push_str(
        "\n  After sign-in the page shows the account usher created in Jira and its groups.\n",
    );
    s
}

/// `usher demo [--port N]`: run until SIGINT/SIGTERM.
pub fn run_cli(port: u16, format: LogFormat) -> ExitCode {
    let _guard = telemetry::init(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("usher-demo")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("usher demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = match rt.block_on(start(port)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("usher demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", describe(&demo));
    println!("usher demo ready: {}/ (Ctrl-C to stop)", demo.url());
    if let Err(e) = rt.block_on(run::wait_for_signal()) {
        eprintln!("usher demo: cannot wait for signals: {e}");
    }
    demo.shutdown();
    ExitCode::SUCCESS
}
