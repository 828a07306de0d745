//! The registry documentation (`docs/`), rendered from the schema Terraform receives. A test,
//! not part of the provider: it needs nothing at run time.
//!
//! Every attribute line (name, type, required/optional/read-only, sensitive, forces
//! replacement, description, fields of object types) comes from the schemas of the provider's
//! registry, the same values `GetProviderSchema` returns; hand-written prose (examples,
//! security model, import) lives in `provider/docs-src/` and is spliced in. The test
//! `docs_are_generated_from_schema` renders every page and compares it with the committed
//! file, so a schema change without regenerated docs fails CI. Regenerate with:
//!
//! ```text
//! BLOCKSTOR_UPDATE_DOCS=1 cargo test -p terraform-provider-blockstor --test docs
//! ```
//!
//! The layout is the one the Terraform registry reads: `docs/index.md`,
//! `docs/resources/<name>.md`, `docs/data-sources/<name>.md`, each with YAML front matter.

use std::collections::VecDeque;
use std::fmt::Write as _;

use std::path::{Path, PathBuf};

use terraform_provider_blockstor::resources::registry::registry;
use terraform_provider_blockstor::schema::{
    AttrType, Attribute, Block, Mode, NestedBlock, Nesting, Schema,
};
use terraform_provider_blockstor::values::Ty;

/// The command that rewrites `docs/` from the schema.
const REGENERATE: &str =
    "BLOCKSTOR_UPDATE_DOCS=1 cargo test -p terraform-provider-blockstor --test docs";

/// One rendered file, its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Page {
    path: String,
    text: String,
}

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

/// The hand-written parts of one type's page.
struct Prose {
    example: &'static str,
    /// Import example label and id, and the notes after it; resources only.
    import: Option<(&'static str, &'static str, &'static str)>,
}

/// The prose of each registered type. A type registered without prose here fails the docs
/// test with its name.
fn prose_of(kind: Kind, type_name: &str) -> Prose {
    let import = |label, id, notes| Some((label, id, notes));
    match (kind, type_name) {
        (Kind::Resource, "blockstor_resource_group") => Prose {
            example: prose::RG_EXAMPLE,
            import: import("encrypted", "encrypted", prose::RG_NOTES),
        },
        (Kind::Resource, "blockstor_resource_definition") => Prose {
            example: prose::RD_EXAMPLE,
            import: import("db", "db-data", prose::RD_NOTES),
        },
        (Kind::DataSource, "blockstor_nodes") => Prose {
            example: prose::NODES_EXAMPLE,
            import: None,
        },
        (Kind::DataSource, "blockstor_resource_definition") => Prose {
            example: prose::RD_DATA_EXAMPLE,
            import: None,
        },
        (_, other) => panic!("{other} has no docs prose: add provider/docs-src/ files and a line in provider/tests/docs.rs"),
    }
}

/// `docs/resources/<name>.md` or `docs/data-sources/<name>.md`, `<name>` without `blockstor_`.
fn page_path(kind: Kind, type_name: &str) -> String {
    let dir = match kind {
        Kind::Resource => "resources",
        Kind::DataSource => "data-sources",
    };
    let name = type_name.strip_prefix("blockstor_").unwrap_or(type_name);
    format!("docs/{dir}/{name}.md")
}

fn type_page(kind: Kind, type_name: &'static str, schema: &Schema) -> Page {
    let prose = prose_of(kind, type_name);
    let tail = prose
        .import
        .map(|(label, id, notes)| import_section(type_name, label, id, notes));
    Page {
        path: page_path(kind, type_name),
        text: render_type(kind, type_name, schema, prose.example, tail),
    }
}

/// Every page of `docs/`: the index, then each registered resource and data source.
fn pages() -> Vec<Page> {
    let r = registry();
    let mut pages = vec![Page {
        path: "docs/index.md".into(),
        text: render_index(r.provider_schema()),
    }];
    for t in r.resources() {
        pages.push(type_page(Kind::Resource, t.type_name(), t.schema()));
    }
    for t in r.data_sources() {
        pages.push(type_page(Kind::DataSource, t.type_name(), t.schema()));
    }
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
        "---\npage_title: \"{title}\"\nsubcategory: \"\"\ndescription: |-\n  {description}\n---\n\n<!-- Generated by provider/tests/docs.rs from the provider schema; do not edit. Regenerate: {REGENERATE} -->\n\n"
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
    let mut ctx = Ctx {
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
    /// A field of an object-typed attribute: its anchor path, its type, the attribute (which
    /// describes its fields) and the path below the attribute.
    Object(String, &'a Ty, &'a Attribute, String),
}

struct Ctx<'a> {
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
                Pending::Object(path, ty, owner, below) => {
                    let _ = write!(out, "\n<a id=\"nestedatt--{}\"></a>\n### Nested Schema for `{path}`\n\nRead-Only:\n\n", anchor(&path));
                    let Ty::Object(fields) = element(ty) else {
                        unreachable!()
                    };
                    for (name, fty) in fields {
                        let full = format!("{path}.{name}");
                        let field = field_path(&below, name);
                        let _ = write!(out, "- `{name}` ({})", type_name(fty));
                        let note = owner.field_description(&field);
                        if !note.is_empty() {
                            let _ = write!(out, " {note}");
                        }
                        if matches!(element(fty), Ty::Object(_)) {
                            let _ = write!(
                                out,
                                " (see [below for nested schema](#nestedatt--{}))",
                                anchor(&full)
                            );
                            self.nested
                                .push_back(Pending::Object(full, fty, owner, field));
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
        if top && a.forces_replacement {
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
                self.nested
                    .push_back(Pending::Object(path, ty, a, String::new()));
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

/// The path of a field below its attribute: `pools`, then `pools.name`.
fn field_path(below: &str, name: &str) -> String {
    if below.is_empty() {
        name.to_owned()
    } else {
        format!("{below}.{name}")
    }
}

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
        let path = repo_root().join(&page.path);
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
    let r = registry();
    let pages = pages();
    let text = |p: &str| &pages.iter().find(|x| x.path == p).unwrap().text;
    let resources = r
        .resources()
        .map(|t| (page_path(Kind::Resource, t.type_name()), t.schema()));
    let data_sources = r
        .data_sources()
        .map(|t| (page_path(Kind::DataSource, t.type_name()), t.schema()));
    let typed: Vec<_> = resources.chain(data_sources).collect();
    for page in [
        "docs/resources/resource_group.md",
        "docs/resources/resource_definition.md",
        "docs/data-sources/nodes.md",
        "docs/data-sources/resource_definition.md",
    ] {
        assert!(typed.iter().any(|(p, _)| p == page), "{page} has no type");
    }
    for (page, schema) in &typed {
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

/// The flag and the descriptions say the same: an attribute is marked `forces_replacement`
/// exactly when its description says that changing it replaces the object. When a plan
/// changes what replaces, fix the description and the flag together.
#[test]
fn forces_replacement_agrees_with_the_descriptions() {
    let mut flagged = Vec::new();
    for t in registry().resources() {
        let ty = t.type_name();
        for a in &t.schema().block.attributes {
            if a.forces_replacement {
                flagged.push(format!("{ty}.{}", a.name));
                assert!(
                    a.description.contains("replaces the"),
                    "{ty}.{} is marked forces_replacement but its description does not say \
                     that changing it replaces the resource: update one or the other",
                    a.name
                );
            }
            if a.description.contains("Changing it replaces") {
                assert!(
                    a.forces_replacement,
                    "{ty}.{} says changing it replaces the resource: mark it .forces_replacement() in its schema.rs",
                    a.name
                );
            }
        }
    }
    assert_eq!(
        flagged,
        [
            "blockstor_resource_group.name",
            "blockstor_resource_definition.name",
            "blockstor_resource_definition.layer_stack",
            // `nodes` replaces only without DRBD (plan decides); with DRBD it changes in place.
        ]
    );
}

#[test]
fn every_field_of_a_computed_object_has_a_description() {
    fn walk(owner: &Attribute, below: &str, ty: &Ty, missing: &mut Vec<String>) {
        if let Ty::Object(fields) = element(ty) {
            for (name, fty) in fields {
                let p = field_path(below, name);
                if owner.field_description(&p).is_empty() {
                    missing.push(format!("{}.{p}", owner.name));
                }
                walk(owner, &p, fty, missing);
            }
        }
    }
    let r = registry();
    let mut missing = Vec::new();
    let schemas = r
        .resources()
        .map(|t| t.schema())
        .chain(r.data_sources().map(|t| t.schema()));
    for schema in schemas {
        for a in &schema.block.attributes {
            if let AttrType::Plain(ty) = &a.ty {
                walk(a, "", ty, &mut missing);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "describe these fields with .field_descriptions() in the schema.rs of their type: {missing:?}"
    );
}
