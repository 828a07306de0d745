//! The schema types every resource, data source and the provider block are described with
//! (docs/design.md §3); each type's own schema lives in its folder under `resources/`.
//!
//! Each resource's schema is a [`Block`]; from it come both the `tfplugin6::Schema` Terraform
//! sees ([`Schema::to_proto`]) and the cty type the value codec decodes against
//! ([`Block::ty`]), so the two cannot drift apart.

pub mod provider;

use blockstor_proto::tfplugin6 as tf;

use crate::values::Ty;

/// Whether the user sets an attribute, the provider does, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Required,
    Optional,
    Computed,
    /// Set by the user, or by the provider when the user leaves it null.
    OptionalComputed,
}

/// An attribute's type: a plain cty type, or a protocol-6 nested object (NestedType SINGLE).
#[derive(Debug, Clone)]
pub enum AttrType {
    Plain(Ty),
    NestedSingle(Vec<Attribute>),
}

/// One schema attribute.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: AttrType,
    pub mode: Mode,
    pub sensitive: bool,
    /// Terraform ≥ 1.11 sends the value in config only and never stores it (see
    /// [`crate::resources::write_only`]).
    pub write_only: bool,
    pub description: &'static str,
    /// Changing the value destroys and re-creates the object. The resource's plan decides;
    /// this flag is what the docs show, and a test holds it to the description.
    pub forces_replacement: bool,
    /// Descriptions of the fields of an object-typed attribute (`replicas`, `nodes`), keyed by
    /// the path below the attribute (`pools.free_kib`): a cty object type has no field
    /// descriptions of its own.
    pub field_descriptions: &'static [(&'static str, &'static str)],
}

impl Attribute {
    fn new(name: &'static str, ty: Ty, mode: Mode, description: &'static str) -> Self {
        Attribute {
            name,
            ty: AttrType::Plain(ty),
            mode,
            sensitive: false,
            write_only: false,
            description,
            forces_replacement: false,
            field_descriptions: &[],
        }
    }

    pub fn required(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Required, description)
    }

    pub fn optional(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Optional, description)
    }

    pub fn computed(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Computed, description)
    }

    pub fn optional_computed(name: &'static str, ty: Ty, description: &'static str) -> Self {
        Self::new(name, ty, Mode::OptionalComputed, description)
    }

    /// An optional NestedType SINGLE attribute. It is also *computed*: Terraform 1.0.3
    /// panics building the proposed state of a non-computed nested attribute left null in
    /// config (objchange.proposedNewNestedType calls GetAttr on the null object); for a
    /// computed one with null config it takes the prior value instead. The provider never
    /// sets it, so it stays what the configuration says.
    pub fn nested_single(
        name: &'static str,
        attributes: Vec<Attribute>,
        description: &'static str,
    ) -> Self {
        Attribute {
            name,
            ty: AttrType::NestedSingle(attributes),
            mode: Mode::OptionalComputed,
            sensitive: false,
            write_only: false,
            description,
            forces_replacement: false,
            field_descriptions: &[],
        }
    }

    /// Marks the attribute sensitive: Terraform hides it in plans and output.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Marks the attribute write-only (Terraform ≥ 1.11): its value reaches the provider in
    /// config at plan and apply, and planned state, apply result and read result hold null.
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// Marks the attribute as one whose change replaces the object (the docs say so).
    pub fn forces_replacement(mut self) -> Self {
        self.forces_replacement = true;
        self
    }

    /// Describes the fields of an object-typed attribute, by path below it.
    pub fn field_descriptions(mut self, fields: &'static [(&'static str, &'static str)]) -> Self {
        self.field_descriptions = fields;
        self
    }

    /// The description of a field of an object-typed attribute, by path below it; empty when
    /// it has none.
    pub fn field_description(&self, path: &str) -> &'static str {
        self.field_descriptions
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("", |(_, d)| *d)
    }

    /// The cty type of the attribute's value.
    pub fn value_ty(&self) -> Ty {
        match &self.ty {
            AttrType::Plain(ty) => ty.clone(),
            AttrType::NestedSingle(attrs) => Ty::Object(
                attrs
                    .iter()
                    .map(|a| (a.name.to_owned(), a.value_ty()))
                    .collect(),
            ),
        }
    }

    fn to_proto(&self) -> tf::schema::Attribute {
        let (r#type, nested_type) = match &self.ty {
            AttrType::Plain(ty) => (ty.to_json().to_string().into_bytes(), None),
            AttrType::NestedSingle(attrs) => (
                Vec::new(),
                Some(tf::schema::Object {
                    attributes: attrs.iter().map(Attribute::to_proto).collect(),
                    nesting: tf::schema::object::NestingMode::Single as i32,
                    ..Default::default()
                }),
            ),
        };
        tf::schema::Attribute {
            name: self.name.to_owned(),
            r#type,
            nested_type,
            description: self.description.to_owned(),
            required: self.mode == Mode::Required,
            optional: matches!(self.mode, Mode::Optional | Mode::OptionalComputed),
            computed: matches!(self.mode, Mode::Computed | Mode::OptionalComputed),
            sensitive: self.sensitive,
            description_kind: 0,
            deprecated: false,
            write_only: self.write_only,
        }
    }
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one; null when absent.
    Single,
    /// A list; empty when absent.
    List,
    /// A map keyed by the block label (`node "n1" {}`).
    Map,
}

/// A nested block type.
#[derive(Debug, Clone)]
pub struct NestedBlock {
    pub name: &'static str,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
}

impl NestedBlock {
    pub fn single(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::Single,
            block,
            min_items: 0,
            max_items: 0,
        }
    }

    pub fn list(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::List,
            block,
            min_items: 0,
            max_items: 0,
        }
    }

    /// A LIST block allowed at most once (`http {}`, `ssh {}`).
    pub fn at_most_one(name: &'static str, block: Block) -> Self {
        NestedBlock {
            max_items: 1,
            ..Self::list(name, block)
        }
    }

    pub fn map(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::Map,
            block,
            min_items: 0,
            max_items: 0,
        }
    }

    fn value_ty(&self) -> Ty {
        let object = self.block.ty();
        match self.nesting {
            Nesting::Single => object,
            Nesting::List => Ty::list(object),
            Nesting::Map => Ty::map(object),
        }
    }

    fn to_proto(&self) -> tf::schema::NestedBlock {
        use tf::schema::nested_block::NestingMode;
        tf::schema::NestedBlock {
            type_name: self.name.to_owned(),
            block: Some(self.block.to_proto()),
            nesting: match self.nesting {
                Nesting::Single => NestingMode::Single,
                Nesting::List => NestingMode::List,
                Nesting::Map => NestingMode::Map,
            } as i32,
            min_items: self.min_items,
            max_items: self.max_items,
        }
    }
}

/// A block: attributes plus nested block types.
#[derive(Debug, Clone)]
pub struct Block {
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
}

impl Block {
    /// The cty object type of this block's value: every attribute and block type.
    pub fn ty(&self) -> Ty {
        let attrs = self
            .attributes
            .iter()
            .map(|a| (a.name.to_owned(), a.value_ty()));
        let blocks = self
            .blocks
            .iter()
            .map(|b| (b.name.to_owned(), b.value_ty()));
        Ty::Object(attrs.chain(blocks).collect())
    }

    /// Looks up an attribute by name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    fn to_proto(&self) -> tf::schema::Block {
        tf::schema::Block {
            version: 0,
            attributes: self.attributes.iter().map(Attribute::to_proto).collect(),
            block_types: self.blocks.iter().map(NestedBlock::to_proto).collect(),
            description: self.description.to_owned(),
            description_kind: 0,
            deprecated: false,
        }
    }
}

/// A versioned top-level schema, with its value type computed once.
#[derive(Debug, Clone)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
    ty: Ty,
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        let ty = block.ty();
        Schema { version, block, ty }
    }

    /// The cty object type of a value of this schema.
    pub fn ty(&self) -> &Ty {
        &self.ty
    }

    pub fn to_proto(&self) -> tf::Schema {
        tf::Schema {
            version: self.version,
            block: Some(self.block.to_proto()),
        }
    }
}
