//! The directory: where usher learns who exists and who belongs to which group.
//! Owns the [`Directory`] trait, its error type and the pure flattening of nested
//! groups; the Google Admin SDK implementation lives in [`google`]. Must not
//! decide anything about targets (that is `provision/`).

pub mod connect;
mod error;
mod flatten;
pub mod google;
pub mod google_auth;
#[cfg(test)]
mod google_tests;
mod google_wire;
pub mod retry;
pub mod scim_in;
pub mod token_store;

use std::future::Future;
use std::pin::Pin;

use futures_util::stream::BoxStream;

use crate::identity::{GroupMember, GroupRef, Person, PersonWithGroups};

pub use error::{DirectoryError, CONNECT_PATH};
pub use flatten::{flatten_memberships, snapshot, DirectorySnapshot, Nesting};

/// A boxed future, so [`Directory`] stays object-safe (`Arc<dyn Directory>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of pages as the source hands them out: every item is one page, so a
/// caller never holds more than one response in flight per stream.
pub type Pages<'a, T> = BoxStream<'a, Result<Vec<T>, DirectoryError>>;

/// A source of people and groups (Google Workspace today). Login-time
/// provisioning calls [`Directory::person`]; full sync streams the rest.
pub trait Directory: Send + Sync {
    /// The source name put into [`crate::identity::ExternalId::source`] (the `[directory] idp`).
    fn source(&self) -> &str;

    /// One person by primary email, alias or immutable id, with their groups
    /// (flattened through nested groups when the source is configured so).
    /// `Ok(None)` when the source does not know the key.
    fn person<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersonWithGroups>, DirectoryError>>;

    /// Every person in scope (the configured users query), page by page.
    /// Suspended and archived people are included with their flags set.
    fn people(&self) -> Pages<'_, Person>;

    /// Every group of the organisation, page by page.
    fn groups(&self) -> Pages<'_, GroupRef>;

    /// The direct members of one group (by id or email), page by page; nested
    /// groups appear as [`crate::identity::MemberKind::Group`] members.
    fn members(&self, group_key: &str) -> Pages<'_, GroupMember>;

    /// Whether nested group members count as members of the parent group.
    fn nested_groups(&self) -> bool;
}
