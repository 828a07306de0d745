//! `blockstor_resource_definition`: a block device, built on one or more nodes.

use crate::schema::{Attribute, Block, NestedBlock, Schema};
use crate::values::Ty;

/// The inner attributes of `resource_group`: the RG fields an RD inherits.
fn resource_group_attributes() -> Vec<Attribute> {
    vec![
        Attribute::optional(
            "name",
            Ty::String,
            "The group's name; inheritance is by value, so this is informational.",
        ),
        Attribute::optional(
            "layer_stack",
            Ty::list(Ty::String),
            "The group's layer stack, used when the definition sets none.",
        ),
        Attribute::optional(
            "passphrase",
            Ty::String,
            "The group's LUKS passphrase, used when the definition sets none.",
        )
        .sensitive(),
        Attribute::optional(
            "passphrase_file",
            Ty::String,
            "Instead of `passphrase`: a file on the machine running terraform holding the group's passphrase.",
        ),
        Attribute::optional(
            "passphrase_env",
            Ty::String,
            "Instead of `passphrase`: an environment variable of terraform holding the group's passphrase.",
        ),
        Attribute::optional(
            "place_count",
            Ty::Number,
            "How many nodes to place on when `nodes` is not set; changing it moves the definition (replacement).",
        ),
        Attribute::optional(
            "storage_pool",
            Ty::String,
            "The group's storage pool; changing it replaces the definition.",
        ),
        Attribute::optional(
            "props",
            Ty::map(Ty::String),
            "Properties merged under the definition's own `props`.",
        ),
        Attribute::optional(
            "deletion_protection",
            Ty::Bool,
            "The group's `deletion_protection`, used when the definition sets none.",
        ),
    ]
}

/// Descriptions of the fields of a `replicas` element (the resource's and the data source's).
pub const REPLICA_FIELDS: &[(&str, &str)] = &[
    ("node", "Node name."),
    (
        "device_path",
        "The device to use on that node: `/dev/drbd<minor>` with DRBD, `/dev/mapper/<rd>-<vol>-luks` with LUKS, else the backing device (volume 0).",
    ),
    ("minor", "DRBD minor of volume 0; null without DRBD."),
    ("port", "DRBD TCP port; null without DRBD."),
    ("node_id", "DRBD node id; null without DRBD."),
    (
        "diskless",
        "Whether the replica is a diskless DRBD client (it reads and writes through its peers); null without DRBD.",
    ),
    (
        "disk_state",
        "This node's DRBD disk state as last seen (`UpToDate`, `Inconsistent`, `Outdated`, `Diskless`, ...; the worst over the volumes); null without DRBD or while it is down. A replica that is not UpToDate after an apply is a warning.",
    ),
    (
        "role",
        "This node's DRBD role as last seen (`Primary`, `Secondary`); null without DRBD or while it is down.",
    ),
    (
        "backing_device",
        "The STORAGE device of volume 0 (loop device, LV or zvol).",
    ),
];

/// The type of one element of `replicas`.
pub fn replica_ty() -> Ty {
    Ty::object([
        ("node", Ty::String),
        ("device_path", Ty::String),
        ("minor", Ty::Number),
        ("port", Ty::Number),
        ("node_id", Ty::Number),
        ("backing_device", Ty::String),
        ("diskless", Ty::Bool),
        ("disk_state", Ty::String),
        ("role", Ty::String),
    ])
}

fn volume_block() -> Block {
    Block {
        description: "A volume of the definition; repeatable. Grows in place; shrinking is an error.",
        attributes: vec![
            Attribute::required(
                "number",
                Ty::Number,
                "Volume number, unique within the definition (0, 1, ...).",
            ),
            Attribute::required(
                "size",
                Ty::String,
                "Size such as \"10GiB\" or \"512MiB\", or a number of KiB; at least 4MiB, rounded up to 4MiB.",
            ),
        ],
        blocks: vec![],
    }
}

fn timeouts_block() -> Block {
    Block {
        description: "Time limits for operations, e.g. \"20m\", \"1h\", \"90s\".",
        attributes: vec![
            Attribute::optional("create", Ty::String, "Limit for create; default 20m."),
            Attribute::optional("update", Ty::String, "Limit for update; default 20m."),
            Attribute::optional("delete", Ty::String, "Limit for delete; default 10m."),
        ],
        blocks: vec![],
    }
}

/// The `blockstor_resource_definition` schema.
pub fn schema() -> Schema {
    Schema::new(
        0,
        Block {
            description: "A resource definition: a block device with a layer stack, built on each chosen node by its agent.",
            attributes: vec![
                Attribute::computed("id", Ty::String, "Same as `name`."),
                Attribute::required(
                    "name",
                    Ty::String,
                    "Definition name: `^[A-Za-z_][A-Za-z0-9_-]{1,47}$`, not `all`/`proxy`. Changing it replaces the resource.",
                )
                .forces_replacement(),
                Attribute::nested_single(
                    "resource_group",
                    resource_group_attributes(),
                    "The group to inherit from: assign a `blockstor_resource_group` resource, or `{ name = \"...\" }`. Only its `passphrase` is sensitive, so `terraform plan -generate-config-out` writes the other fields.",
                ),
                Attribute::optional(
                    "layer_stack",
                    Ty::list(Ty::String),
                    "Layers, topmost first; overrides the group's. Changing the effective stack replaces the resource.",
                )
                .forces_replacement(),
                Attribute::optional(
                    "passphrase",
                    Ty::String,
                    "LUKS passphrase; overrides the group's. Required when the effective stack has LUKS (or one of `passphrase_file`, `passphrase_env`). Terraform keeps it in state (marked sensitive); use `passphrase_file` or `passphrase_env` to keep it out. Changing it rotates the passphrase in place on every replica: the new one is added to the LUKS header, checked, then the old one is removed; the data is untouched.",
                )
                .sensitive(),
                Attribute::optional(
                    "passphrase_file",
                    Ty::String,
                    "Instead of `passphrase`: path of a file on the machine running terraform that holds the passphrase (one trailing newline is ignored). Read at plan and apply; state keeps only the path and `passphrase_fingerprint`. A change of the file's content is planned as an in-place rotation, which needs the old passphrase once: set `previous_passphrase_file` or `previous_passphrase_env` for that apply.",
                ),
                Attribute::optional(
                    "passphrase_env",
                    Ty::String,
                    "Instead of `passphrase`: name of an environment variable of the terraform process holding the passphrase. Read at plan and apply; state keeps only the name and `passphrase_fingerprint`. A change of its value is planned as an in-place rotation (see `passphrase_file`).",
                ),
                Attribute::optional(
                    "passphrase_wo",
                    Ty::String,
                    "Instead of `passphrase`: the passphrase as a write-only value (Terraform 1.11 or later): it is read from the configuration at plan and apply and never stored in state or plan; state keeps only `passphrase_fingerprint`. A new value is planned as an in-place rotation, which needs the old passphrase once (`previous_passphrase_wo`, `previous_passphrase_file` or `previous_passphrase_env`). Older Terraform cannot keep it out of state, so there setting it is an error: use `passphrase_file` or `passphrase_env`.",
                )
                .sensitive()
                .write_only(),
                Attribute::optional(
                    "previous_passphrase_wo",
                    Ty::String,
                    "While rotating away from a passphrase given by `passphrase_wo` (or a file or variable): the old passphrase as a write-only value (Terraform 1.11 or later), checked against `passphrase_fingerprint` at plan. Keep it set until an apply succeeds (after a failed one, state still holds the old `passphrase_fingerprint`), then remove it.",
                )
                .sensitive()
                .write_only(),
                Attribute::optional(
                    "previous_passphrase_file",
                    Ty::String,
                    "While rotating away from a passphrase given by `passphrase_file`/`passphrase_env`: a file holding the old one, checked against `passphrase_fingerprint` at plan. Keep it set until an apply succeeds (after a failed one, state still holds the old `passphrase_fingerprint`), then remove it.",
                ),
                Attribute::optional(
                    "previous_passphrase_env",
                    Ty::String,
                    "Like `previous_passphrase_file`, from an environment variable of terraform.",
                ),
                Attribute::optional_computed(
                    "nodes",
                    Ty::list(Ty::String),
                    "Nodes (names from the provider's `node` blocks) to place replicas on; when unset, the group's place_count picks the nodes with most free space. With DRBD in the stack a change is in place: added nodes join and sync from the others (never overwriting them), removed ones are torn down only once a staying replica is UpToDate; node ids, port and the staying nodes' minors are kept. Without DRBD there is nothing to copy from, so a change is a replacement, and the plan warns naming the nodes whose data it destroys.",
                ),
                Attribute::optional(
                    "diskless_nodes",
                    Ty::list(Ty::String),
                    "DRBD stacks only: nodes (not in `nodes`) that get a diskless DRBD client: no STORAGE or LUKS there, the device reads and writes through the diskful replicas. Counted apart from `nodes` and place_count. Adding or removing one, or moving a node between `nodes` and `diskless_nodes` (diskful to diskless and back), is a change in place.",
                ),
                Attribute::optional("description", Ty::String, "Free text for humans."),
                Attribute::optional(
                    "force_destroy",
                    Ty::Bool,
                    "Default false: an agent refuses to tear down a device that is in use (mounted, opened by a process, held by another device, or DRBD Primary) and names the node, device and user, so the destroy fails there. True tears it down anyway (sent as the delete's `force`). Read from state at destroy, so set it and apply first.",
                ),
                Attribute::optional(
                    "deletion_protection",
                    Ty::Bool,
                    "While true (here, else inherited from the group; default false), destroying the definition and any change that replaces it fail with an error naming this attribute: at plan where Terraform plans destroys (1.3 and later), and always at apply before any agent is asked. Set it to false and apply first to destroy.",
                ),
                Attribute::optional(
                    "props",
                    Ty::map(Ty::String),
                    "Properties passed to the agents, over the group's; `DrbdOptions/Encryption/passphrase` is rejected (use `passphrase`).",
                ),
                Attribute::computed(
                    "effective_layer_stack",
                    Ty::list(Ty::String),
                    "The resolved, normalised layer stack (definition, then group, then [\"DRBD\",\"STORAGE\"]).",
                ),
                Attribute::computed(
                    "effective_place_count",
                    Ty::Number,
                    "How many replicas the definition has: the number of `nodes`, else the group's `place_count`.",
                ),
                Attribute::computed(
                    "effective_storage_pool",
                    Ty::String,
                    "The pool backing the volumes: the group's `storage_pool`, else the only pool every chosen node has.",
                ),
                Attribute::computed(
                    "passphrase_fingerprint",
                    Ty::String,
                    "A salted PBKDF2 hash of the effective passphrase (salt per definition, inside the value): shows that it changed, and detects a changed `passphrase_file`/`passphrase_env` secret at plan; never the passphrase.",
                ),
                Attribute::computed(
                    "replicas",
                    Ty::list(replica_ty()),
                    "One entry per node: node, device_path, minor, port, node_id, backing_device, diskless, disk_state, role (DRBD fields are null without DRBD).",
                )
                .field_descriptions(REPLICA_FIELDS),
                Attribute::computed(
                    "planned_steps",
                    Ty::map(Ty::list(Ty::String)),
                    "Plan preview: per node name, the commands its agent will run for this create or update, one shell-quoted command line each (for reading only; the agents run argv vectors, never a shell). Secrets show as `<redacted>`, so a saved plan (`terraform show -json`) can be reviewed. Unknown when the plan cannot tell yet: nodes chosen at apply (placement by `place_count`), a new DRBD definition (ports and minors are allocated at apply), a create while the agents still hold the name (a replacement: `-replace`, taint), or an agent that did not answer (the plan warns). After apply, state keeps the previewed steps (null when there was no preview); a plan with no changes keeps them and asks no agent.",
                ),
            ],
            blocks: vec![
                NestedBlock::list("volume", volume_block()),
                NestedBlock::single("timeouts", timeouts_block()),
            ],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_definition_type_has_every_block_and_attribute() {
        let ty = schema().ty().clone();
        let Ty::Object(attrs) = ty else { panic!() };
        for k in [
            "name",
            "resource_group",
            "volume",
            "timeouts",
            "replicas",
            "passphrase_fingerprint",
        ] {
            assert!(attrs.contains_key(k), "{k}");
        }
        assert!(matches!(attrs["volume"], Ty::List(_)));
        assert!(matches!(attrs["timeouts"], Ty::Object(_)));
    }

    /// Terraform's config generation writes a sensitive nested attribute as `{}` (an import
    /// then plans a change); only the secret inside is sensitive.
    #[test]
    fn only_the_group_passphrase_is_sensitive_in_resource_group() {
        let schema = schema();
        let group = schema
            .block
            .attributes
            .iter()
            .find(|a| a.name == "resource_group")
            .unwrap();
        assert!(!group.sensitive);
        let crate::schema::AttrType::NestedSingle(inner) = &group.ty else {
            panic!("nested")
        };
        let sensitive: Vec<_> = inner
            .iter()
            .filter(|a| a.sensitive)
            .map(|a| a.name)
            .collect();
        assert_eq!(sensitive, ["passphrase"]);
    }
}
