//! Data sources: `blockstor_nodes` and `blockstor_resource_definition`.

use super::resource_definition::replica_ty;
use super::{Attribute, Block, Schema};
use crate::values::Ty;

/// The type of one element of `blockstor_nodes.nodes`.
pub fn node_ty() -> Ty {
    Ty::object([
        ("name", Ty::String),
        ("address", Ty::String),
        ("agent_version", Ty::String),
        ("cryptsetup_version", Ty::String),
        ("drbd_version", Ty::String),
        ("drbd_utils_version", Ty::String),
        (
            "pools",
            Ty::list(Ty::object([
                ("name", Ty::String),
                ("backend", Ty::String),
                ("free_kib", Ty::Number),
                ("total_kib", Ty::Number),
            ])),
        ),
    ])
}

/// `data "blockstor_nodes"`.
pub fn nodes_schema() -> Schema {
    Schema::new(
        0,
        Block {
            description: "Every node configured in the provider, as its agent reports it.",
            attributes: vec![
                Attribute::computed("id", Ty::String, "Always `nodes`."),
                Attribute::computed(
                    "nodes",
                    Ty::list(node_ty()),
                    "One entry per node, by name: address, agent/cryptsetup/DRBD versions, pools with free and total KiB.",
                ),
            ],
            blocks: vec![],
        },
    )
}

/// `data "blockstor_resource_definition"`.
pub fn resource_definition_schema() -> Schema {
    Schema::new(
        0,
        Block {
            description: "An existing resource definition, as the agents observe it.",
            attributes: vec![
                Attribute::computed("id", Ty::String, "Same as `name`."),
                Attribute::required(
                    "name",
                    Ty::String,
                    "Name of the resource definition to read.",
                ),
                Attribute::computed(
                    "layer_stack",
                    Ty::list(Ty::String),
                    "The observed layer stack, topmost first.",
                ),
                Attribute::computed("nodes", Ty::list(Ty::String), "Nodes that have a replica."),
                Attribute::computed(
                    "volumes",
                    Ty::list(Ty::object([
                        ("number", Ty::Number),
                        ("size_kib", Ty::Number),
                    ])),
                    "Volumes with their observed size in KiB.",
                ),
                Attribute::computed(
                    "replicas",
                    Ty::list(replica_ty()),
                    "One entry per node: node, device_path, minor, port, node_id, backing_device.",
                ),
            ],
            blocks: vec![],
        },
    )
}
