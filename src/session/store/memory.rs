//! The in-process session store: a `DashMap` keyed by session id plus a sweeper task
//! that drops expired entries. Sessions vanish on restart and are not shared between
//! replicas; never hold a map guard across an `.await`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use futures_util::future::BoxFuture;

use super::{CookiePayload, SessionStore, StoreError};
use crate::session::{Session, SessionPolicy};

/// Sessions held in this process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: DashMap<String, Session>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryStore::default())
    }

    /// Number of sessions held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when a session with this id is held.
    pub fn contains(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Removes every session that `policy` says has ended at `now`; returns how many.
    pub fn sweep(&self, policy: &SessionPolicy, now: SystemTime) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.check(policy, now).is_ok());
        before.saturating_sub(self.sessions.len())
    }

    /// Spawns the sweeper: every `every`, drop ended sessions. Abort the handle to stop.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        policy: SessionPolicy,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { break };
                let removed = store.sweep(&policy, SystemTime::now());
                if removed > 0 {
                    tracing::debug!(removed, "swept ended sessions");
                }
            }
        })
    }
}

impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn shares_revocation(&self) -> bool {
        false
    }

    fn load(&self, payload: CookiePayload) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let out = match payload {
            CookiePayload::Ref { id } => self.sessions.get(&id).map(|s| s.value().clone()),
            CookiePayload::Full(_) => None,
        };
        Box::pin(std::future::ready(Ok(out)))
    }

    fn save<'a>(
        &'a self,
        session: &'a Session,
        _policy: &'a SessionPolicy,
        _now: SystemTime,
    ) -> BoxFuture<'a, Result<CookiePayload, StoreError>> {
        self.sessions.insert(session.id.clone(), session.clone());
        Box::pin(std::future::ready(Ok(CookiePayload::Ref {
            id: session.id.clone(),
        })))
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.sessions.remove(id);
        Box::pin(std::future::ready(Ok(())))
    }
}
