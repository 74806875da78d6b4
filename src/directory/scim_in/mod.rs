//! Inbound SCIM 2.0: another identity provider (Okta, Entra ID, Keycloak, ...) pushes
//! people and groups to `/_usher/scim/v2/{idp}/`; usher stores them (`store`), serves
//! them back per RFC 7643/7644 (`server`, `wire`, `schema`, `filter`, `patch`), and
//! provisions what a push means into the targets (`apply`). `source` reads the
//! pushed people as a [`crate::directory::Directory`] for full syncs. This module
//! owns no planning rules (`provision/`) and no target I/O (`target/`).

pub mod apply;
pub mod filter;
#[cfg(test)]
mod filter_tests;
pub mod patch;
#[cfg(test)]
mod patch_tests;
pub mod render;
pub mod schema;
pub mod server;
#[cfg(test)]
mod server_tests;
pub mod source;
pub mod store;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Settings;
use crate::provision::audit::AuditLog;
use crate::provision::link_store::open_configured;

pub use apply::Pusher;
pub use server::{is_scim_path, ScimServer, PREFIX};
pub use source::ScimDirectory;
pub use store::ScimStore;

/// Why inbound SCIM could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("inbound SCIM: {0}")]
pub struct InboundError(pub String);

/// The inbound SCIM server and, when there are targets, the pusher whose worker
/// [`Pusher::run`] must be spawned.
pub struct Inbound {
    pub server: Arc<ScimServer>,
    pub pusher: Option<Arc<Pusher>>,
}

/// Builds inbound SCIM for every `[[idp]]` with a `scim_token`: the store under
/// `[state] dir`/scim, and a pusher into every `[[target]]` (none without targets:
/// pushes are then stored and served, and a full sync can read them). `Ok(None)`
/// when no IdP has a `scim_token`.
pub fn build(settings: &Arc<Settings>) -> Result<Option<Inbound>, InboundError> {
    let tokens: BTreeMap<String, crate::config::Secret> = settings
        .idps
        .iter()
        .filter_map(|i| i.scim_token.clone().map(|t| (i.name.clone(), t)))
        .collect();
    if tokens.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = tokens.keys().cloned().collect();
    let store = Arc::new(
        ScimStore::open(&settings.state.dir, &names).map_err(|e| InboundError(e.to_string()))?,
    );
    let pusher = if settings.targets.is_empty() {
        None
    } else {
        let mut targets = Vec::new();
        for t in &settings.targets {
            targets.push(
                crate::target::build(t)
                    .map_err(|e| InboundError(format!("[[target]] {}: {e}", t.name)))?,
            );
        }
        // Shared through Redis with `[state] redis_url` (several replicas).
        let links =
            open_configured(settings).map_err(|e| InboundError(format!("identity links: {e}")))?;
        let audit = AuditLog::open(&settings.state.dir)
            .map_err(|e| InboundError(format!("audit log: {e}")))?;
        Some(Arc::new(
            Pusher::new(
                settings.clone(),
                store.clone(),
                targets,
                links,
                Some(Arc::new(audit)),
            )
            .map_err(|e| InboundError(e.to_string()))?,
        ))
    };
    let server = Arc::new(ScimServer::new(
        store,
        tokens,
        &settings.server.public_url,
        pusher.clone(),
    ));
    Ok(Some(Inbound { server, pusher }))
}
