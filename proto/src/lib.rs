//! Contracts shared by the blockstor provider and agent, and nothing else.
//!
//! * [`names`], [`size`], [`layer_stack`]: validated value types. A value that exists is valid
//!   (parse, don't validate), so an unchecked name can never reach a path, a device name or argv.
//! * [`drbd_stages`]: the order of a DRBD replica-set change, driven by the provider and run
//!   node by node by the agents.
//! * [`wire`]: the JSON documents exchanged between provider and agent (docs/design.md §4);
//!   [`contract`]: the table of operations both sides follow; [`error_code`]: the agent's
//!   stable error codes.
//! * [`secret_rules`]: what may not carry a secret (props, DRBD options the agent manages) and
//!   what a new passphrase may not hold; both sides apply the same rules.
//! * `tfplugin6`, `tfplugin5`, `goplugin` (feature `tfplugin`): the generated Terraform plugin protocol.

pub mod contract;
pub mod drbd_stages;
pub mod error_code;
pub mod layer_stack;
pub mod names;
pub mod secret_rules;
pub mod size;
pub mod wire;

/// Terraform plugin protocol 6.8 (package `tfplugin6`): messages and the `Provider` service.
/// Generated from `proto/tfplugin6.proto`; 6.8 is a wire superset of the 6.0 Terraform 1.0.3 speaks.
#[cfg(feature = "tfplugin")]
#[allow(clippy::all, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Terraform plugin protocol 5.2 (package `tfplugin5`), served to clients that do not offer 6.
/// Generated from `proto/tfplugin5.proto`.
#[cfg(feature = "tfplugin")]
#[allow(clippy::all, missing_docs)]
pub mod tfplugin5 {
    tonic::include_proto!("tfplugin5");
}

/// go-plugin's own gRPC services (package `plugin`): `GRPCController` (Shutdown) and
/// `GRPCStdio` (StreamStdio), served next to the provider in the same plugin process.
#[cfg(feature = "tfplugin")]
#[allow(clippy::all, missing_docs)]
pub mod goplugin {
    tonic::include_proto!("plugin");
}

/// The protobuf runtime of the generated code, for callers that encode or transcode messages.
#[cfg(feature = "tfplugin")]
pub use prost;

pub use error_code::ErrorCode;
pub use layer_stack::{Layer, LayerStack, LayerStackError};
pub use names::{
    parse_volume_name, resource_of_volume, volume_name, NameError, NodeName, ResourceName,
    StoragePoolName,
};
pub use size::{Size, SizeError};
