//! The desired state of an environment as declarative [`Resource`]s, and the [`Plan`] that moves the recorded
//! state to it: steps ordered by dependency, each with its inverse.
//!
//! Creating an environment is the plan from nothing, deleting it the plan to nothing: there is no other path.
//! This crate does no I/O; it knows nothing of stores, runtimes or how a step is carried out.

mod desired;
mod diff;
mod render;
mod resource;

pub use desired::{SecretVersions, desired_state, secret_name, secret_versions_of};
pub use diff::{Action, Plan, Step, plan_deployment};
pub use render::render_plan;
pub use resource::{Resource, ResourceKind};
