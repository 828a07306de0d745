//! `blockstor_resource_definition`: plan, apply, read and import of a block device that the
//! agents build on each chosen node.
//!
//! * [`validate`]: configuration checks, tolerant of unknowns.
//! * [`plan`]: computed values, in-place updates, replacements, shrink errors.
//! * [`preview`]: `planned_steps`, the commands each agent will run, asked at plan time.
//! * [`request`]: the request document, one builder for the preview and the apply.
//! * [`apply`]: placement, allocation, parallel dispatch, delete.
//! * [`read`]: refresh from the agents (drift) and import.
//! * [`schema`]: the attributes and blocks Terraform sees.
//! * `resource`: the [`crate::resources::resource::Resource`] implementation.
//! * [`progress`]: INFO log lines bracketing each agent dispatch of an apply.
//!
//! Private state (opaque to Terraform, stored base64 in the state file) holds the generation
//! counter and the DRBD allocation including its random shared secret: the secret must stay
//! the same across updates, is not a user setting, and state already holds the passphrase.

pub mod apply;
pub mod fingerprint;
pub mod plan;
pub mod preview;
pub mod progress;
pub mod read;
pub mod request;
mod resource;
pub mod schema;
pub mod validate;

use std::fmt;

use blockstor_proto::wire::ObservedResource;
use serde::{Deserialize, Serialize};

use crate::controller::desired::DrbdAllocation;
use crate::values::Value;

pub use resource::ResourceDefinition;

/// The Terraform type name.
pub const TYPE_NAME: &str = "blockstor_resource_definition";

/// The resource's private state. Its JSON form is fixed: states written by earlier versions
/// load unchanged (the shared secret is a plain string in it).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    /// Bumped on every apply; sent as `DesiredResource.generation`.
    #[serde(default)]
    pub generation: u64,
    /// Fixed at creation for DRBD stacks.
    #[serde(default)]
    pub drbd: Option<DrbdAllocation>,
}

/// The DRBD allocation's own `Debug` redacts its shared secret.
impl fmt::Debug for Private {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Private")
            .field("generation", &self.generation)
            .field("drbd", &self.drbd)
            .finish()
    }
}

impl Private {
    /// Reads private bytes; empty or unreadable bytes give the default.
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("private state serialises")
    }
}

/// One `replicas` element from what a node observed; DRBD fields are null without DRBD.
pub fn replica(obs: &ObservedResource) -> Value {
    let first = obs.volumes.iter().min_by_key(|v| v.number);
    let opt_str = |s: Option<&String>| s.map_or(Value::Null, Value::string);
    Value::object([
        ("node", Value::string(obs.node.as_str())),
        (
            "device_path",
            opt_str(first.and_then(|v| v.device_path.as_ref())),
        ),
        (
            "backing_device",
            opt_str(first.and_then(|v| v.backing_device.as_ref())),
        ),
        (
            "minor",
            obs.drbd
                .as_ref()
                .and_then(|d| d.minors.first())
                .map_or(Value::Null, |m| Value::int(i64::from(*m))),
        ),
        (
            "port",
            obs.drbd
                .as_ref()
                .map_or(Value::Null, |d| Value::int(i64::from(d.port))),
        ),
        (
            "node_id",
            obs.drbd
                .as_ref()
                .map_or(Value::Null, |d| Value::int(i64::from(d.node_id))),
        ),
    ])
}

/// Replaces every unknown with null: what Terraform does to a failed apply's result.
pub fn unknown_as_null(v: Value) -> Value {
    match v {
        Value::Unknown => Value::Null,
        Value::List(items) => Value::List(items.into_iter().map(unknown_as_null).collect()),
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (k, unknown_as_null(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
