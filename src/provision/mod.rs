//! Provisioning: turning source people into target accounts. `mapping` derives the
//! desired account, `plan` diffs it against a target (pure), `apply` executes a plan,
//! `links` remembers who owns which account, `audit` records every change. The sync
//! job and login-time provisioning (owned elsewhere) call these; nothing here
//! schedules work or reads the source.
//!
//! A full sync of one target, as the sync job wires it:
//! ```text
//! let mapper = Mapper::new(idp, &settings.provisioning, &settings.groups)?;
//! let (desired, skipped) = mapper.map_all(&people);          // then drop(people)
//! let scope = mapper.managed_scope(&all_idp_groups);
//! let actual = read_actual(target.as_ref(), &scope, 4).await?;  // error => no deprovisioning
//! let links = link_store.for_target(target.name())?;
//! let policy = Policy::from_settings(&prov, &groups, &sync, target.capabilities());
//! let plan = plan_for(PlanInput { target: target.name(), desired: &desired,
//!     skipped: &skipped, actual: &actual, links: &links, scope: &scope, policy: &policy });
//! let verdict = sync::safety::check(&plan, &Limits::from_settings(&sync)); // stop: exit 3
//! let report = apply::run(target, &plan, &ApplyContext { .. }).await;
//! ```
//! Login-time provisioning uses the same calls for one person: `Mapper::map`,
//! `read_person`, `Policy { population: Population::Listed, .. }`, `plan_for`,
//! `apply::run` (with `Actor::Login`).

pub mod apply;
pub mod audit;
pub mod explain;
pub mod known_groups;
pub mod link_store;
pub mod links;
pub mod login;
pub mod login_shared;
pub mod mapping;
pub mod plan;
mod planner;
pub mod read;
pub mod redis_links;
pub mod state;

#[cfg(test)]
mod link_store_contract;
#[cfg(test)]
mod plan_props;
#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod apply_jira_tests;
#[cfg(test)]
mod apply_product_tests;
#[cfg(test)]
mod apply_tests;

pub use apply::{ApplyContext, ApplyReport};
pub use links::{decide_link, FileLinkStore, LinkDecision, LinkStore, LinkedAccount};
pub use mapping::{DesiredAccount, ManagedScope, Mapper, Skip};
pub use plan::{plan_for, Operation, Plan, PlanInput, Policy, Population};
pub use read::{read_actual, read_person};
pub use state::{apply_to_state, ActualState};
