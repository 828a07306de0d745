//! `blockstor_resource_definition`: plan, apply, read and import of a block device that the
//! agents build on each chosen node.
//!
//! * [`validate`]: configuration checks, tolerant of unknowns.
//! * [`guard`]: `deletion_protection`, checked at plan and at apply.
//! * [`plan`]: computed values, in-place updates, replacements, shrink errors.
//! * [`preview`]: `planned_steps`, the commands each agent will run, asked at plan time.
//! * [`request`]: the request document, one builder for the preview and the apply.
//! * [`apply`]: placement, allocation, parallel dispatch, delete.
//! * [`read`]: refresh from the agents (drift) and import.
//! * [`schema`]: the attributes and blocks Terraform sees.
//! * `resource`: the [`crate::resources::resource::Resource`] implementation.
//! * [`progress`]: INFO log lines bracketing each agent dispatch of an apply.
//! * `private`: the private state; `state`: state values from what agents observed.
//!
//! Private state (opaque to Terraform, stored base64 in the state file) holds the generation
//! counter and the DRBD allocation including its random shared secret: the secret must stay
//! the same across updates, is not a user setting, and state already holds the passphrase.

pub mod apply;
pub mod fingerprint;
pub mod guard;
pub mod membership;
pub mod plan;
pub mod preview;
mod private;
pub mod progress;
pub mod read;
pub mod request;
mod resource;
pub mod schema;
mod state;
pub mod validate;

pub use private::Private;
pub use resource::{ResourceDefinition, TYPE_NAME};
pub use state::{replica, unknown_as_null};

#[cfg(test)]
mod tests;
