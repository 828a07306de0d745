//! The resource's private state: opaque to Terraform, stored base64 in the state file.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::controller::desired::DrbdAllocation;

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
