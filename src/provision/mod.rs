//! Provisioning: turning source people into target accounts. `mapping` derives the
//! desired account, `plan` diffs it against a target (pure), `apply` executes a plan,
//! `links` remembers who owns which account, `audit` records every change. The sync
//! job and login-time provisioning (owned elsewhere) call these; nothing here
//! schedules work or reads the source.

pub mod apply;
pub mod audit;
pub mod links;
pub mod mapping;
pub mod plan;
pub mod read;
pub mod state;

#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod apply_tests;

pub use apply::{ApplyContext, ApplyReport};
pub use links::{decide_link, FileLinkStore, LinkDecision, LinkStore, LinkedAccount};
pub use mapping::{DesiredAccount, ManagedScope, Mapper, Skip};
pub use plan::{plan_for, Operation, Plan, PlanInput, Policy, Population};
pub use read::read_actual;
pub use state::{apply_to_state, ActualState};
