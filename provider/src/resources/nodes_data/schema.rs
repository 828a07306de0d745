//! The `data "blockstor_nodes"` schema.

use crate::schema::{Attribute, Block, Schema};
use crate::values::Ty;

/// Descriptions of the fields of a `nodes` element.
const NODE_FIELDS: &[(&str, &str)] = &[
    ("name", "Node name (the provider's `node` block label)."),
    ("address", "DRBD replication address."),
    ("agent_version", "Version of `blockstor-agent`."),
    (
        "cryptsetup_version",
        "`cryptsetup --version`; null when absent.",
    ),
    (
        "drbd_version",
        "DRBD kernel module version; null when not loaded.",
    ),
    ("drbd_utils_version", "`drbdadm` version; null when absent."),
    ("pools", "The agent's storage pools."),
    ("pools.name", "Pool name from the agent's config."),
    ("pools.backend", "`loopfile`, `lvm`, `lvm-thin` or `zfs`."),
    ("pools.free_kib", "Free space in KiB."),
    ("pools.total_kib", "Total space in KiB."),
];

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
                )
                .field_descriptions(NODE_FIELDS),
            ],
            blocks: vec![],
        },
    )
}
