//! What a full sync reads from and writes to: the directory and the targets, built
//! from the settings (or handed in by tests), each target wrapped in a counter of
//! read and write calls for the report and the progress bar. Decides nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Settings, TargetKind};
use crate::directory::google::GoogleDirectory;
use crate::directory::Directory;
use crate::target::{
    Capabilities, Cursor, NewUser, Outcome, Page, Target, TargetFuture, TargetGroup, TargetUser,
    UserUpdate,
};

use super::SyncError;

/// The directory and targets one sync uses.
#[derive(Clone)]
pub struct Sources {
    /// The source of people and groups (`[directory]`).
    pub directory: Arc<dyn Directory>,
    /// Every `[[target]]`, in config order.
    pub targets: Vec<Arc<dyn Target>>,
    /// Directory API requests so far, when the directory counts them (Google does).
    pub directory_calls: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("directory", &self.directory.source())
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// Builds the Google directory client and every target client from the config.
    /// Nothing is contacted yet.
    pub fn from_settings(settings: &Settings) -> Result<Self, SyncError> {
        let dir_settings = settings.directory.as_ref().ok_or(SyncError::NoDirectory)?;
        let idp = settings
            .idps
            .iter()
            .find(|i| i.name == dir_settings.idp)
            .ok_or_else(|| SyncError::UnknownSource {
                name: dir_settings.idp.clone(),
                known: settings.idps.iter().map(|i| i.name.clone()).collect(),
            })?;
        let google = Arc::new(GoogleDirectory::from_settings(
            dir_settings,
            idp,
            &settings.session,
            &settings.state.dir,
        )?);
        let counter = google.clone();
        let mut targets = Vec::with_capacity(settings.targets.len());
        for t in &settings.targets {
            targets.push(crate::target::build(t)?);
        }
        Ok(Sources {
            directory: google,
            targets,
            directory_calls: Some(Arc::new(move || counter.api_calls())),
        })
    }
}

impl Sources {
    /// Like [`Sources::from_settings`], but `--source NAME` naming an `[[idp]]` with a
    /// `scim_token` (and not the `[directory] idp`) reads the people that IdP pushed
    /// to usher's inbound SCIM endpoint (`<state dir>/scim/NAME.json`) instead.
    pub fn for_source(settings: &Settings, source: Option<&str>) -> Result<Self, SyncError> {
        let scim_idp = source.and_then(|name| {
            let is_directory = settings.directory.as_ref().is_some_and(|d| d.idp == name);
            settings
                .idps
                .iter()
                .find(|i| i.name == name && i.scim_token.is_some() && !is_directory)
        });
        let Some(idp) = scim_idp else {
            return Self::from_settings(settings);
        };
        let store = crate::directory::scim_in::ScimStore::open(
            &settings.state.dir,
            std::slice::from_ref(&idp.name),
        )
        .map_err(|e| {
            SyncError::Directory(crate::directory::DirectoryError::Config {
                detail: e.to_string(),
            })
        })?;
        let directory = crate::directory::scim_in::ScimDirectory::new(Arc::new(store), &idp.name);
        let mut targets = Vec::with_capacity(settings.targets.len());
        for t in &settings.targets {
            targets.push(crate::target::build(t)?);
        }
        Ok(Sources {
            directory: Arc::new(directory),
            targets,
            directory_calls: None,
        })
    }
}

/// Calls made to one target during a sync (method calls; the HTTP client's own
/// retries are not counted separately).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCalls {
    /// Listings and look-ups.
    pub reads: u64,
    /// Creates, updates, (de)activations and membership changes.
    pub writes: u64,
}

/// Shared counters of a [`CountingTarget`].
#[derive(Debug, Default)]
pub struct CallCounter {
    reads: AtomicU64,
    writes: AtomicU64,
    /// Incremented on every finished write, shared with the progress display.
    progress: Option<Arc<AtomicU64>>,
}

impl CallCounter {
    /// A counter that also advances `progress` after each write.
    pub fn with_progress(progress: Arc<AtomicU64>) -> Self {
        CallCounter {
            progress: Some(progress),
            ..CallCounter::default()
        }
    }

    /// The counts so far.
    pub fn get(&self) -> ApiCalls {
        ApiCalls {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    fn wrote(&self) {
        if let Some(p) = &self.progress {
            p.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A target that counts the calls made through it, then delegates.
pub struct CountingTarget {
    inner: Arc<dyn Target>,
    counter: Arc<CallCounter>,
}

impl CountingTarget {
    /// Wraps `inner`; counts go to `counter`.
    pub fn new(inner: Arc<dyn Target>, counter: Arc<CallCounter>) -> Self {
        CountingTarget { inner, counter }
    }
}

macro_rules! write_call {
    ($self:ident, $call:expr) => {{
        $self.counter.write();
        let fut = $call;
        let counter = $self.counter.clone();
        Box::pin(async move {
            let r = fut.await;
            counter.wrote();
            r
        })
    }};
}

impl Target for CountingTarget {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> TargetKind {
        self.inner.kind()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn get_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        self.counter.read();
        self.inner.get_user(username)
    }
    fn find_user_by_email<'a>(&'a self, email: &'a str) -> TargetFuture<'a, Option<TargetUser>> {
        self.counter.read();
        self.inner.find_user_by_email(email)
    }
    fn create_user<'a>(&'a self, user: &'a NewUser) -> TargetFuture<'a, TargetUser> {
        write_call!(self, self.inner.create_user(user))
    }
    fn update_user<'a>(
        &'a self,
        username: &'a str,
        update: &'a UserUpdate,
    ) -> TargetFuture<'a, TargetUser> {
        write_call!(self, self.inner.update_user(username, update))
    }
    fn deactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        write_call!(self, self.inner.deactivate_user(username))
    }
    fn reactivate_user<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Outcome> {
        write_call!(self, self.inner.reactivate_user(username))
    }
    fn list_users_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetUser>> {
        self.counter.read();
        self.inner.list_users_page(cursor)
    }
    fn list_groups_page<'a>(
        &'a self,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<TargetGroup>> {
        self.counter.read();
        self.inner.list_groups_page(cursor)
    }
    fn create_group<'a>(&'a self, name: &'a str) -> TargetFuture<'a, Outcome> {
        write_call!(self, self.inner.create_group(name))
    }
    fn list_members_page<'a>(
        &'a self,
        group: &'a str,
        cursor: Option<&'a Cursor>,
    ) -> TargetFuture<'a, Page<String>> {
        self.counter.read();
        self.inner.list_members_page(group, cursor)
    }
    fn user_groups<'a>(&'a self, username: &'a str) -> TargetFuture<'a, Vec<String>> {
        self.counter.read();
        self.inner.user_groups(username)
    }
    fn add_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        write_call!(self, self.inner.add_member(group, username))
    }
    fn remove_member<'a>(&'a self, group: &'a str, username: &'a str) -> TargetFuture<'a, Outcome> {
        write_call!(self, self.inner.remove_member(group, username))
    }
}
