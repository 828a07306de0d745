//! `blockstor_resource_group`: defaults inherited by resource definitions, kept in state only.

use crate::schema::{Attribute, Block, Schema};
use crate::values::Ty;

/// The `blockstor_resource_group` schema.
pub fn schema() -> Schema {
    Schema::new(
        0,
        Block {
            description: "A resource group: shared defaults (stack, pool, place count, passphrase) that resource definitions inherit. It lives in Terraform state only.",
            attributes: vec![
                Attribute::computed("id", Ty::String, "Same as `name`."),
                Attribute::required(
                    "name",
                    Ty::String,
                    "Group name: `^[A-Za-z_][A-Za-z0-9_-]{1,47}$`. Changing it replaces the group.",
                )
                .forces_replacement(),
                Attribute::optional("description", Ty::String, "Free text for humans."),
                Attribute::optional(
                    "place_count",
                    Ty::Number,
                    "How many nodes a definition without `nodes` is placed on.",
                ),
                Attribute::optional(
                    "storage_pool",
                    Ty::String,
                    "Pool (from the agents' config) backing volumes; default: the only pool every node has.",
                ),
                Attribute::optional(
                    "layer_stack",
                    Ty::list(Ty::String),
                    "Layers, topmost first: [\"DRBD\",\"STORAGE\"], [\"LUKS\",\"STORAGE\"], [\"DRBD\",\"LUKS\",\"STORAGE\"] or [\"STORAGE\"].",
                ),
                Attribute::optional(
                    "passphrase",
                    Ty::String,
                    "LUKS passphrase inherited by definitions that set none.",
                )
                .sensitive(),
                Attribute::optional(
                    "passphrase_file",
                    Ty::String,
                    "Instead of `passphrase`: a file on the machine running terraform holding the passphrase definitions inherit; state keeps only the path.",
                ),
                Attribute::optional(
                    "passphrase_env",
                    Ty::String,
                    "Instead of `passphrase`: an environment variable of terraform holding the passphrase definitions inherit; state keeps only the name.",
                ),
                Attribute::optional(
                    "passphrase_wo",
                    Ty::String,
                    "Not supported on a group: setting it is an error. Definitions read a group through its Terraform state, and Terraform never stores a write-only value, so no definition could inherit it. Use `passphrase_file` or `passphrase_env` here, or `passphrase_wo` on each definition.",
                )
                .sensitive()
                .write_only(),
                Attribute::optional(
                    "props",
                    Ty::map(Ty::String),
                    "Properties inherited by definitions, e.g. `DrbdOptions/Net/protocol`.",
                ),
                Attribute::optional(
                    "deletion_protection",
                    Ty::Bool,
                    "Inherited by definitions that set none: while true, destroying them or replacing them fails.",
                ),
            ],
            blocks: vec![],
        },
    )
}
