//! The `data "blockstor_resource_definition"` schema.

use crate::resources::resource_definition::schema::{replica_ty, REPLICA_FIELDS};
use crate::schema::{Attribute, Block, Schema};
use crate::values::Ty;

/// `data "blockstor_resource_definition"`.
pub fn schema() -> Schema {
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
                )
                .field_descriptions(&[
                    ("number", "Volume number."),
                    ("size_kib", "Observed size in KiB."),
                ]),
                Attribute::computed(
                    "replicas",
                    Ty::list(replica_ty()),
                    "One entry per node: node, device_path, minor, port, node_id, backing_device.",
                )
                .field_descriptions(REPLICA_FIELDS),
            ],
            blocks: vec![],
        },
    )
}
