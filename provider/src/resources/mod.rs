//! One folder per resource and data source type, each holding its schema, validation, plan,
//! apply, read and import behind the [`resource::Resource`] or [`resource::DataSource`] trait;
//! [`registry`] lists them by type name.
//!
//! * [`resource_definition`]: the block device itself, dispatched to agents.
//! * [`resource_group`]: defaults kept in state only.
//! * [`nodes_data`]: `data "blockstor_nodes"`.
//! * [`resource_definition_data`]: `data "blockstor_resource_definition"`.
//! * [`provider_config`]: the `node` blocks → transport configuration.
//! * [`diag`]: diagnostics on attribute paths.
//! * [`write_only`]: `passphrase_wo` and friends: null in state, refused on old Terraform.

pub mod diag;
pub mod nodes_data;
pub mod provider_config;
pub mod registry;
pub mod resource;
pub mod resource_definition;
pub mod resource_definition_data;
pub mod resource_group;
pub mod shared;
pub mod write_only;
