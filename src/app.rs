//! The assembled service: from validated settings to bound listeners and running
//! workers. `usher serve`, `usher demo` and the integration tests all start usher
//! through [`App`], so what the tests run is what production runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::admin::listener::{AdminListener, AdminState};
use crate::auth::flow::{Admission, SignIn, SignInError};
use crate::config::Settings;
use crate::directory::google::GoogleDirectory;
use crate::directory::Directory;
use crate::provision::audit::AuditLog;
use crate::provision::link_store::open_configured;
use crate::provision::login::LoginProvisioner;
use crate::proxy::server::{self, ServeError, ServerOptions, Workers};
use crate::proxy::{tls, BuildError, Proxy};
use crate::replicas::Shared;
use crate::sync::SyncService;
use crate::target;

/// Why usher could not start with a valid config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Building the request path failed (TLS files, upstream URLs).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Sign-in could not be set up (keys, session store, identity providers).
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// Listening failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The public listener's certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The directory, a target, the identity links or the audit log could not be set up.
    #[error("{0}")]
    Provisioning(String),
    /// The sync clients (directory, targets) could not be built.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// `[state] redis_url` is set but Redis cannot be reached.
    #[error(transparent)]
    Shared(#[from] crate::replicas::SharedError),
}

/// The login-time provisioner, when there is anything to provision from or into:
/// a `[directory]` (people read at login) or targets named by an upstream.
fn login_provisioner(
    settings: &Arc<Settings>,
    shared: Option<&Shared>,
) -> Result<Option<Arc<dyn Admission>>, StartError> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| StartError::Provisioning(format!("{what}: {e}"));
    let mut names: Vec<&str> = Vec::new();
    for u in &settings.upstreams {
        for t in &u.targets {
            if !names.contains(&t.as_str()) {
                names.push(t);
            }
        }
    }
    if settings.directory.is_none() && names.is_empty() {
        return Ok(None);
    }
    let directory: Option<Arc<dyn Directory>> = match &settings.directory {
        Some(d) => {
            let idp = settings
                .idps
                .iter()
                .find(|i| i.name == d.idp)
                .ok_or_else(|| {
                    StartError::Provisioning(format!(
                        "[directory] idp {:?} is not an [[idp]]",
                        d.idp
                    ))
                })?;
            let google =
                GoogleDirectory::from_settings(d, idp, &settings.session, &settings.state.dir)
                    .map_err(|e| err("[directory]", &e))?;
            Some(Arc::new(google))
        }
        None => None,
    };
    let mut targets = Vec::new();
    for name in names {
        let t = settings
            .targets
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                StartError::Provisioning(format!("upstream target {name:?} is not a [[target]]"))
            })?;
        targets.push(target::build(t).map_err(|e| err(&format!("[[target]] {name}"), &e))?);
    }
    let links = open_configured(settings).map_err(|e| err("identity links", &e))?;
    let audit = AuditLog::open(&settings.state.dir).map_err(|e| err("audit log", &e))?;
    let mut provisioner = LoginProvisioner::new(
        settings.clone(),
        directory,
        targets,
        links,
        Some(Arc::new(audit)),
    )
    .map_err(|e| err("login provisioning", &e))?;
    if let Some(shared) = shared {
        provisioner = provisioner.with_shared(shared.clone());
    }
    Ok(Some(Arc::new(provisioner)))
}

/// usher, built and bound but not yet serving.
pub struct App {
    /// The shared request-path state.
    pub proxy: Arc<Proxy>,
    listeners: Vec<std::net::TcpListener>,
    options: ServerOptions,
    addr: SocketAddr,
    /// Full syncs (scheduler + admin "sync now"); `None` without `[directory]` or targets.
    pub sync: Option<Arc<SyncService>>,
    /// The `admin_listen` listener (metrics, health), bound; served from `run`.
    admin: Option<AdminListener>,
    /// Applies inbound SCIM pushes to the targets; its worker starts in [`App::run`].
    pub scim_pusher: Option<Arc<crate::directory::scim_in::Pusher>>,
    /// The control runtime `build` ran on: the admin listener and the SCIM pusher
    /// are served there.
    control: Handle,
}

impl App {
    /// Builds the proxy and binds the public listeners (so the port is known
    /// before any request can arrive). Runs on the control runtime: background
    /// tasks (session sweeping, later the sync scheduler) are spawned there.
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        let settings = Arc::new(settings);
        let s = &settings.server;
        let control = Handle::try_current().map_err(|e| {
            ServeError::Runtime(std::io::Error::other(format!(
                "App::build must run inside a tokio runtime: {e}"
            )))
        })?;
        // Metrics exist to be scraped from the admin listener: without one, nothing is
        // recorded and the request path skips the counters entirely. The recorder is
        // process-wide and installed once, however many Apps a process builds.
        if s.admin_listen.is_some() {
            crate::admin::metrics::install();
        }
        let admin = s.admin_listen.map(AdminListener::bind).transpose()?;
        let tls = match &s.tls {
            Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let workers = if s.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            s.workers
        };
        let listeners = server::bind_listeners(s.listen, workers)?;
        let addr = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(s.listen);
        let options = ServerOptions {
            tls,
            max_connections: s.max_connections,
            max_header_bytes: s.max_header_bytes,
            header_read_timeout: s.header_read_timeout,
            keepalive_timeout: s.keepalive_timeout,
            shutdown_grace: s.shutdown_grace,
        };
        // Several replicas: one connection for the locks, the lease and the reports.
        let shared = match &settings.state.redis_url {
            Some(url) => Some(Shared::connect(url).await?),
            None => None,
        };
        let mut sign_in = SignIn::build(&settings).await?;
        if let Some(provisioner) = login_provisioner(&settings, shared.as_ref())? {
            sign_in.set_admission(provisioner);
        }
        let sign_in = Arc::new(sign_in);
        // Built here, on the control runtime, which also runs the schedule and the syncs.
        let sync = SyncService::from_settings(settings.clone())?.map(|s| match &shared {
            Some(shared) => Arc::new(s.with_shared(shared.clone())),
            None => Arc::new(s),
        });
        let inbound = crate::directory::scim_in::build(&settings)
            .map_err(|e| StartError::Provisioning(e.to_string()))?;
        let proxy = Proxy::build(settings.clone(), sign_in)?;
        let _ = proxy
            .admin
            .set(Arc::new(crate::admin::Admin::new(settings, sync.clone())));
        let mut scim_pusher = None;
        if let Some(inbound) = inbound {
            let _ = proxy.scim.set(inbound.server);
            scim_pusher = inbound.pusher;
        }
        Ok(App {
            proxy,
            listeners,
            options,
            addr,
            sync,
            admin,
            scim_pusher,
            control,
        })
    }

    /// The bound public address (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound `[server] admin_listen` address (port 0 resolved), serving
    /// `/metrics`, `/healthz` and `/readyz` once [`App::run`] starts; `None` when
    /// no admin listener is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminListener::local_addr)
    }

    /// Starts the workers, the `[sync] interval` schedule and the admin listener
    /// (both on the control runtime); all stop when `shutdown` becomes true.
    pub fn run(self, shutdown: watch::Receiver<bool>) -> Result<Workers, StartError> {
        if let Some(sync) = &self.sync {
            let _ = sync.spawn_scheduler(shutdown.clone());
        }
        if let Some(pusher) = &self.scim_pusher {
            self.control.spawn(pusher.clone().run(shutdown.clone()));
        }
        let proxy = self.proxy.clone();
        let workers = server::start(self.proxy, self.listeners, self.options, shutdown.clone())?;
        if let Some(admin) = self.admin {
            let state = AdminState {
                ready: proxy,
                open_connections: Some(workers.open_connections.clone()),
            };
            // Detached: it ends by itself when `shutdown` turns true.
            drop(admin.spawn(&self.control, state, shutdown));
        }
        Ok(workers)
    }
}
