//! The registry documentation (`docs/`), rendered from the schema Terraform receives.
//!
//! Every attribute line (name, type, required/optional/read-only, sensitive, forces
//! replacement, description) comes from [`crate::schema`], the same values `GetProviderSchema`
//! returns; hand-written prose (examples, security model, import) lives in
//! `provider/docs-src/` and is spliced in. The test `docs_are_generated_from_schema` renders
//! every page and compares it with the committed file, so a schema change without regenerated
//! docs fails CI. Regenerate with:
//!
//! ```text
//! BLOCKSTOR_UPDATE_DOCS=1 cargo test -p terraform-provider-blockstor docs
//! ```
//!
//! The layout is the one the Terraform registry reads: `docs/index.md`,
//! `docs/resources/<name>.md`, `docs/data-sources/<name>.md`, each with YAML front matter.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::schema::{self, AttrType, Attribute, Block, Mode, NestedBlock, Nesting, Schema};
use crate::values::Ty;

/// The command that rewrites `docs/` from the schema.
pub const REGENERATE: &str =
    "BLOCKSTOR_UPDATE_DOCS=1 cargo test -p terraform-provider-blockstor docs";

/// One rendered file, its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub path: &'static str,
    pub text: String,
}

/// Attributes whose change makes Terraform destroy and re-create the object (the plan's
/// `RequiresReplace`), by schema type name. Kept next to the renderer, and checked against the
/// schema by a test, because the schema itself carries no such flag: replacement is decided in
/// `resources/*/plan.rs`.
const FORCES_REPLACEMENT: &[(&str, &str)] = &[
    (schema::RESOURCE_GROUP, "name"),
    (schema::RESOURCE_DEFINITION, "name"),
    (schema::RESOURCE_DEFINITION, "layer_stack"),
    (schema::RESOURCE_DEFINITION, "nodes"),
];

/// Descriptions of the fields of computed object types (`replicas`, `nodes`, `volumes`),
/// which the schema types as plain cty objects without per-field descriptions. Keyed by the
/// path below the attribute; a test fails when a field has none.
const OBJECT_FIELDS: &[(&str, &str)] = &[
    ("replicas.node", "Node name."),
    (
        "replicas.device_path",
        "The device to use on that node: `/dev/drbd<minor>` with DRBD, `/dev/mapper/<rd>-<vol>-luks` with LUKS, else the backing device (volume 0).",
    ),
    ("replicas.minor", "DRBD minor of volume 0; null without DRBD."),
    ("replicas.port", "DRBD TCP port; null without DRBD."),
    ("replicas.node_id", "DRBD node id; null without DRBD."),
    (
        "replicas.backing_device",
        "The STORAGE device of volume 0 (loop device, LV or zvol).",
    ),
    ("volumes.number", "Volume number."),
    ("volumes.size_kib", "Observed size in KiB."),
    ("nodes.name", "Node name (the provider's `node` block label)."),
    ("nodes.address", "DRBD replication address."),
    ("nodes.agent_version", "Version of `blockstor-agent`."),
    ("nodes.cryptsetup_version", "`cryptsetup --version`; null when absent."),
    ("nodes.drbd_version", "DRBD kernel module version; null when not loaded."),
    ("nodes.drbd_utils_version", "`drbdadm` version; null when absent."),
    ("nodes.pools", "The agent's storage pools."),
    ("nodes.pools.name", "Pool name from the agent's config."),
    (
        "nodes.pools.backend",
        "`loopfile`, `lvm`, `lvm-thin` or `zfs`.",
    ),
    ("nodes.pools.free_kib", "Free space in KiB."),
    ("nodes.pools.total_kib", "Total space in KiB."),
];

/// Hand-written fragments, by page.
mod prose {
    pub const INDEX_INTRO: &str = include_str!("../docs-src/index.intro.md");
    pub const INDEX_EXAMPLE: &str = include_str!("../docs-src/index.example.tf");
    pub const INDEX_GUIDE: &str = include_str!("../docs-src/index.guide.md");
    pub const RG_EXAMPLE: &str = include_str!("../docs-src/resource_group.example.tf");
    pub const RG_NOTES: &str = include_str!("../docs-src/resource_group.notes.md");
    pub const RD_EXAMPLE: &str = include_str!("../docs-src/resource_definition.example.tf");
    pub const RD_NOTES: &str = include_str!("../docs-src/resource_definition.notes.md");
    pub const NODES_EXAMPLE: &str = include_str!("../docs-src/nodes.example.tf");
    pub const RD_DATA_EXAMPLE: &str =
        include_str!("../docs-src/resource_definition_data.example.tf");
}

/// Every page of `docs/`.
pub fn pages() -> Vec<Page> {
    let s = schema::schemas();
    let mut pages = vec![
        Page {
            path: "docs/index.md",
            text: render_index(&s.provider),
        },
        Page {
            path: "docs/resources/resource_group.md",
            text: render_type(
                Kind::Resource,
                schema::RESOURCE_GROUP,
                &s.resource_group,
                prose::RG_EXAMPLE,
                Some(import_section(
                    schema::RESOURCE_GROUP,
                    "encrypted",
                    "encrypted",
                    prose::RG_NOTES,
                )),
            ),
        },
        Page {
            path: "docs/resources/resource_definition.md",
            text: render_type(
                Kind::Resource,
                schema::RESOURCE_DEFINITION,
                &s.resource_definition,
                prose::RD_EXAMPLE,
                Some(import_section(
                    schema::RESOURCE_DEFINITION,
                    "db",
                    "db-data",
                    prose::RD_NOTES,
                )),
            ),
        },
        Page {
            path: "docs/data-sources/nodes.md",
            text: render_type(
                Kind::DataSource,
                schema::NODES_DATA,
                &s.nodes_data,
                prose::NODES_EXAMPLE,
                None,
            ),
        },
        Page {
            path: "docs/data-sources/resource_definition.md",
            text: render_type(
                Kind::DataSource,
                schema::RESOURCE_DEFINITION_DATA,
                &s.resource_definition_data,
                prose::RD_DATA_EXAMPLE,
                None,
            ),
        },
    ];
    for page in &mut pages {
        page.text = tidy(&page.text);
    }
    pages
}

/// One blank line between blocks of text, never two, and one newline at the end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.trim_end().lines() {
        if line.is_empty() && out.ends_with("\n\n") {
            continue;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Resource,
    DataSource,
}

fn front_matter(title: &str, description: &str) -> String {
    format!(
        "---\npage_title: \"{title}\"\nsubcategory: \"\"\ndescription: |-\n  {description}\n---\n\n<!-- Generated by provider/src/docs.rs from the provider schema; do not edit. Regenerate: {REGENERATE} -->\n\n"
    )
}

fn render_index(provider: &Schema) -> String {
    let mut out = front_matter("blockstor Provider", provider.block.description);
    out.push_str("# blockstor Provider\n\n");
    out.push_str(provider.block.description);
    out.push_str("\n\n");
    out.push_str(prose::INDEX_INTRO.trim_end());
    out.push_str("\n\n## Example Usage\n\n```terraform\n");
    out.push_str(prose::INDEX_EXAMPLE.trim_end());
    out.push_str("\n```\n\n");
    Ctx {
        replaced: &[],
        nested: VecDeque::new(),
    }
    .top(&mut out, &provider.block);
    out.push('\n');
    out.push_str(prose::INDEX_GUIDE.trim_end());
    out.push('\n');
    out
}

fn render_type(
    kind: Kind,
    type_name: &str,
    schema: &Schema,
    example: &str,
    tail: Option<String>,
) -> String {
    let label = match kind {
        Kind::Resource => "Resource",
        Kind::DataSource => "Data Source",
    };
    let mut out = front_matter(
        &format!("{type_name} {label} - terraform-provider-blockstor"),
        schema.block.description,
    );
    let _ = write!(
        out,
        "# {type_name} ({label})\n\n{}\n\n",
        schema.block.description
    );
    out.push_str("## Example Usage\n\n```terraform\n");
    out.push_str(example.trim_end());
    out.push_str("\n```\n\n");
    let replaced: Vec<&str> = match kind {
        Kind::Resource => FORCES_REPLACEMENT
            .iter()
            .filter(|(t, _)| *t == type_name)
            .map(|(_, a)| *a)
            .collect(),
        Kind::DataSource => Vec::new(),
    };
    let mut ctx = Ctx {
        replaced: &replaced,
        nested: VecDeque::new(),
    };
    ctx.top(&mut out, &schema.block);
    if let Some(tail) = tail {
        out.push('\n');
        out.push_str(tail.trim_end());
        out.push('\n');
    }
    out
}

fn import_section(type_name: &str, label: &str, id: &str, notes: &str) -> String {
    format!(
        "## Import\n\nImport by name:\n\n```shell\nterraform import {type_name}.{label} {id}\n```\n\n{}\n",
        notes.trim_end()
    )
}

/// A section still to render: the anchor path and what it holds.
enum Pending<'a> {
    Block(String, &'a NestedBlock),
    Attributes(String, &'a [Attribute], bool),
    Object(String, &'a Ty),
}

struct Ctx<'a> {
    replaced: &'a [&'a str],
    nested: VecDeque<Pending<'a>>,
}

impl<'a> Ctx<'a> {
    /// `## Schema` of a top-level block, then every nested section, breadth first.
    fn top(&mut self, out: &mut String, block: &'a Block) {
        out.push_str("## Schema\n\n");
        self.block_body(out, "", block, true);
        while let Some(pending) = self.nested.pop_front() {
            match pending {
                Pending::Block(path, b) => {
                    let _ = write!(
                        out,
                        "\n<a id=\"nestedblock--{}\"></a>\n### Nested Schema for `{path}`\n\n",
                        anchor(&path)
                    );
                    let _ = writeln!(out, "{}\n", b.block.description);
                    let _ = writeln!(out, "{}\n", nesting_note(b));
                    self.block_body(out, &format!("{path}."), &b.block, false);
                }
                Pending::Attributes(path, attrs, sensitive) => {
                    let _ = write!(
                        out,
                        "\n<a id=\"nestedatt--{}\"></a>\n### Nested Schema for `{path}`\n\n",
                        anchor(&path)
                    );
                    if sensitive {
                        out.push_str("The whole object is sensitive.\n\n");
                    }
                    self.attribute_groups(out, &format!("{path}."), attrs, false);
                }
                Pending::Object(path, ty) => {
                    let _ = write!(out, "\n<a id=\"nestedatt--{}\"></a>\n### Nested Schema for `{path}`\n\nRead-Only:\n\n", anchor(&path));
                    let Ty::Object(fields) = element(ty) else {
                        unreachable!()
                    };
                    for (name, fty) in fields {
                        let full = format!("{path}.{name}");
                        let _ = write!(out, "- `{name}` ({})", type_name(fty));
                        let note = object_field_note(&full);
                        if !note.is_empty() {
                            let _ = write!(out, " {note}");
                        }
                        if matches!(element(fty), Ty::Object(_)) {
                            let _ = write!(
                                out,
                                " (see [below for nested schema](#nestedatt--{}))",
                                anchor(&full)
                            );
                            self.nested.push_back(Pending::Object(full, fty));
                        }
                        out.push('\n');
                    }
                }
            }
        }
    }

    fn block_body(&mut self, out: &mut String, prefix: &str, block: &'a Block, top: bool) {
        self.attribute_groups(out, prefix, &block.attributes, top);
        if !block.blocks.is_empty() {
            out.push_str("Blocks:\n\n");
            for b in &block.blocks {
                let path = format!("{prefix}{}", b.name);
                let _ = writeln!(
                    out,
                    "- `{}` (Block {}) {} (see [below for nested schema](#nestedblock--{}))",
                    b.name,
                    block_kind(b),
                    b.block.description,
                    anchor(&path)
                );
                self.nested.push_back(Pending::Block(path, b));
            }
            out.push('\n');
        }
    }

    fn attribute_groups(
        &mut self,
        out: &mut String,
        prefix: &str,
        attrs: &'a [Attribute],
        top: bool,
    ) {
        for (title, modes) in [
            ("Required", &[Mode::Required][..]),
            ("Optional", &[Mode::Optional, Mode::OptionalComputed][..]),
            ("Read-Only", &[Mode::Computed][..]),
        ] {
            let group: Vec<&Attribute> = attrs.iter().filter(|a| modes.contains(&a.mode)).collect();
            if group.is_empty() {
                continue;
            }
            let _ = write!(out, "{title}:\n\n");
            for a in group {
                self.attribute(out, prefix, a, top);
            }
            out.push('\n');
        }
    }

    fn attribute(&mut self, out: &mut String, prefix: &str, a: &'a Attribute, top: bool) {
        let path = format!("{prefix}{}", a.name);
        let mut flags = vec![match &a.ty {
            AttrType::Plain(ty) => type_name(ty),
            AttrType::NestedSingle(_) => "Attributes".to_owned(),
        }];
        if a.sensitive {
            flags.push("Sensitive".into());
        }
        if a.write_only {
            flags.push("Write-only".into());
        }
        if top && self.replaced.contains(&a.name) {
            flags.push("Forces replacement".into());
        }
        let _ = write!(
            out,
            "- `{}` ({}) {}",
            a.name,
            flags.join(", "),
            a.description
        );
        match &a.ty {
            AttrType::NestedSingle(inner) => {
                let _ = write!(
                    out,
                    " (see [below for nested schema](#nestedatt--{}))",
                    anchor(&path)
                );
                self.nested
                    .push_back(Pending::Attributes(path, inner, a.sensitive));
            }
            AttrType::Plain(ty) if matches!(element(ty), Ty::Object(_)) => {
                let _ = write!(
                    out,
                    " (see [below for nested schema](#nestedatt--{}))",
                    anchor(&path)
                );
                self.nested.push_back(Pending::Object(path, ty));
            }
            AttrType::Plain(_) => {}
        }
        out.push('\n');
    }
}

fn nesting_note(b: &NestedBlock) -> String {
    match (b.nesting, b.max_items) {
        (Nesting::Map, _) => format!(
            "Repeatable, one per label: `{} \"<label>\" {{ ... }}`.",
            b.name
        ),
        (Nesting::List, 1) => "At most one.".into(),
        (Nesting::List, _) => "Repeatable.".into(),
        (Nesting::Single, _) => "At most one.".into(),
    }
}

fn block_kind(b: &NestedBlock) -> &'static str {
    match (b.nesting, b.max_items) {
        (Nesting::Map, _) => "Map",
        (Nesting::List, 1) => "List, Max: 1",
        (Nesting::List, _) => "List",
        (Nesting::Single, _) => "Single",
    }
}

/// The object type inside a list/map/set, or the type itself.
fn element(ty: &Ty) -> &Ty {
    match ty {
        Ty::List(e) | Ty::Set(e) | Ty::Map(e) => element(e),
        other => other,
    }
}

fn type_name(ty: &Ty) -> String {
    match ty {
        Ty::Bool => "Boolean".into(),
        Ty::Number => "Number".into(),
        Ty::String => "String".into(),
        Ty::Dynamic => "Dynamic".into(),
        Ty::Object(_) => "Object".into(),
        Ty::List(e) => format!("List of {}", type_name(e)),
        Ty::Set(e) => format!("Set of {}", type_name(e)),
        Ty::Map(e) => format!("Map of {}", type_name(e)),
    }
}

fn anchor(path: &str) -> String {
    path.replace('.', "--")
}

/// The description of a field of a computed object type, by its path below the top attribute
/// (`nodes.pools.free_kib`); nested objects of data sources share the resource's notes.
fn object_field_note(path: &str) -> &'static str {
    OBJECT_FIELDS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("", |(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Renders `docs/` and compares it with the committed files; with `BLOCKSTOR_UPDATE_DOCS=1`
    /// writes them instead.
    #[test]
    fn docs_are_generated_from_schema() {
        let update = std::env::var("BLOCKSTOR_UPDATE_DOCS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for page in pages() {
            let path = repo_root().join(page.path);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &page.text).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(committed) if committed == page.text => {}
                Ok(committed) => stale.push(format!(
                    "{}: {}",
                    page.path,
                    first_difference(&committed, &page.text)
                )),
                Err(e) => stale.push(format!("{}: {e}", page.path)),
            }
        }
        assert!(
            stale.is_empty(),
            "these docs differ from the schema:\n  {}\nregenerate them with:\n  {REGENERATE}",
            stale.join("\n  ")
        );
    }

    /// The first line where the committed page and the rendered one differ.
    fn first_difference(committed: &str, rendered: &str) -> String {
        let mut old = committed.lines();
        let mut new = rendered.lines();
        for n in 1.. {
            match (old.next(), new.next()) {
                (None, None) => break,
                (a, b) if a == b => continue,
                (a, b) => {
                    return format!(
                        "line {n}: committed {:?}, schema renders {:?}",
                        a.unwrap_or("<end>"),
                        b.unwrap_or("<end>")
                    )
                }
            }
        }
        "trailing whitespace or newline".into()
    }

    #[test]
    fn every_page_lists_every_attribute_of_its_schema() {
        let s = schema::schemas();
        let pages = pages();
        let text = |p: &str| &pages.iter().find(|x| x.path == p).unwrap().text;
        for (page, schema) in [
            ("docs/resources/resource_group.md", &s.resource_group),
            (
                "docs/resources/resource_definition.md",
                &s.resource_definition,
            ),
            ("docs/data-sources/nodes.md", &s.nodes_data),
            (
                "docs/data-sources/resource_definition.md",
                &s.resource_definition_data,
            ),
        ] {
            for a in &schema.block.attributes {
                assert!(
                    text(page).contains(&format!("- `{}` (", a.name)),
                    "{page}: {}",
                    a.name
                );
            }
        }
        assert!(text("docs/resources/resource_definition.md")
            .contains("- `name` (String, Forces replacement)"));
    }

    /// The table and the descriptions say the same: an attribute is in FORCES_REPLACEMENT
    /// exactly when its description says that changing it replaces the object. When plan.rs
    /// changes what replaces, fix the description and the table together.
    #[test]
    fn forces_replacement_agrees_with_the_descriptions() {
        let s = schema::schemas();
        for (ty, attr) in FORCES_REPLACEMENT {
            let schema = s.resource(ty).expect("a resource type");
            let a = schema.block.attribute(attr).unwrap_or_else(|| {
                panic!("FORCES_REPLACEMENT names {ty}.{attr}, which does not exist")
            });
            assert!(
                a.description.contains("replaces the"),
                "{ty}.{attr} is in FORCES_REPLACEMENT (docs.rs) but its description does not say \
                 that changing it replaces the resource: update one or the other"
            );
        }
        for (ty, schema) in [
            (schema::RESOURCE_GROUP, &s.resource_group),
            (schema::RESOURCE_DEFINITION, &s.resource_definition),
        ] {
            for a in &schema.block.attributes {
                if a.description.contains("Changing it replaces") {
                    assert!(
                        FORCES_REPLACEMENT.contains(&(ty, a.name)),
                        "{ty}.{} says changing it replaces the resource: add it to FORCES_REPLACEMENT in docs.rs",
                        a.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_field_of_a_computed_object_has_a_description() {
        fn walk(path: &str, ty: &Ty, missing: &mut Vec<String>) {
            if let Ty::Object(fields) = element(ty) {
                for (name, fty) in fields {
                    let p = format!("{path}.{name}");
                    if object_field_note(&p).is_empty() {
                        missing.push(p.clone());
                    }
                    walk(&p, fty, missing);
                }
            }
        }
        let s = schema::schemas();
        let mut missing = Vec::new();
        for schema in [
            &s.resource_definition,
            &s.nodes_data,
            &s.resource_definition_data,
        ] {
            for a in &schema.block.attributes {
                if let AttrType::Plain(ty) = &a.ty {
                    walk(a.name, ty, &mut missing);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to OBJECT_FIELDS in docs.rs: {missing:?}"
        );
    }
}
