//! The assembled service: from validated settings to bound listeners and running
//! workers. `usher serve`, `usher demo` and the integration tests all start usher
//! through [`App`], so what the tests run is what production runs.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::flow::{SignIn, SignInError};
use crate::config::Settings;
use crate::proxy::server::{self, ServeError, ServerOptions, Workers};
use crate::proxy::{tls, BuildError, Proxy};
use crate::sync::SyncService;

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
    /// The sync clients (directory, targets) could not be built.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
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
}

impl App {
    /// Builds the proxy and binds the public listeners (so the port is known
    /// before any request can arrive). Runs on the control runtime: background
    /// tasks (session sweeping, later the sync scheduler) are spawned there.
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        let settings = Arc::new(settings);
        let s = &settings.server;
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
            shutdown_grace: s.shutdown_grace,
        };
        let sign_in = Arc::new(SignIn::build(&settings).await?);
        // Built here, on the control runtime, which also runs the schedule and the syncs.
        let sync = SyncService::from_settings(settings.clone())?.map(Arc::new);
        let proxy = Proxy::build(settings, sign_in)?;
        Ok(App {
            proxy,
            listeners,
            options,
            addr,
            sync,
        })
    }

    /// The bound public address (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the workers and the `[sync] interval` schedule (on the control
    /// runtime); both stop when `shutdown` becomes true.
    pub fn run(self, shutdown: watch::Receiver<bool>) -> Result<Workers, StartError> {
        if let Some(sync) = &self.sync {
            let _ = sync.spawn_scheduler(shutdown.clone());
        }
        Ok(server::start(
            self.proxy,
            self.listeners,
            self.options,
            shutdown,
        )?)
    }
}
