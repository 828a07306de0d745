//! The `data "blockstor_nodes"` schema.

use crate::schema::{Attribute, Block, Schema};
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
pub fn schema() -> Schema {
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
