//! The provider's Terraform schema, defined once (docs/design.md §3).
//!
//! Each resource's schema is a [`Block`]; from it come both the `tfplugin6::Schema` Terraform
//! sees ([`Schema::to_proto`]) and the cty type the value codec decodes against
//! ([`Block::ty`]), so the two cannot drift apart.

pub mod provider;

use std::sync::OnceLock;

use blockstor_proto::tfplugin6 as tf;

use crate::resources::{nodes_data, resource_definition, resource_definition_data, resource_group};
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

/// Every schema of the provider, built once per process.
pub struct Schemas {
    pub provider: Schema,
    pub resource_group: Schema,
    pub resource_definition: Schema,
    pub nodes_data: Schema,
    pub resource_definition_data: Schema,
}

/// Resource type names.
pub const RESOURCE_GROUP: &str = "blockstor_resource_group";
pub const RESOURCE_DEFINITION: &str = "blockstor_resource_definition";
/// Data source type names.
pub const NODES_DATA: &str = "blockstor_nodes";
pub const RESOURCE_DEFINITION_DATA: &str = "blockstor_resource_definition";

/// The provider's schemas.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        provider: provider::schema(),
        resource_group: resource_group::schema::schema(),
        resource_definition: resource_definition::schema::schema(),
        nodes_data: nodes_data::schema::schema(),
        resource_definition_data: resource_definition_data::schema::schema(),
    })
}

impl Schemas {
    /// The schema of a managed resource type.
    pub fn resource(&self, type_name: &str) -> Option<&Schema> {
        match type_name {
            RESOURCE_GROUP => Some(&self.resource_group),
            RESOURCE_DEFINITION => Some(&self.resource_definition),
            _ => None,
        }
    }

    /// The schema of a data source type.
    pub fn data_source(&self, type_name: &str) -> Option<&Schema> {
        match type_name {
            NODES_DATA => Some(&self.nodes_data),
            RESOURCE_DEFINITION_DATA => Some(&self.resource_definition_data),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_attribute(block: &Block, out: &mut Vec<(String, Attribute)>, prefix: &str) {
        for a in &block.attributes {
            out.push((format!("{prefix}{}", a.name), a.clone()));
            if let AttrType::NestedSingle(inner) = &a.ty {
                for i in inner {
                    out.push((format!("{prefix}{}.{}", a.name, i.name), i.clone()));
                }
            }
        }
        for b in &block.blocks {
            every_attribute(&b.block, out, &format!("{prefix}{}.", b.name));
        }
    }

    fn all() -> Vec<(String, Attribute)> {
        let s = schemas();
        let mut out = Vec::new();
        for schema in [
            &s.provider,
            &s.resource_group,
            &s.resource_definition,
            &s.nodes_data,
            &s.resource_definition_data,
        ] {
            every_attribute(&schema.block, &mut out, "");
        }
        out
    }

    #[test]
    fn every_attribute_has_a_description() {
        for (path, a) in all() {
            assert!(a.description.len() > 10, "{path} lacks a description");
        }
    }

    #[test]
    fn every_secret_is_sensitive() {
        for (path, a) in all() {
            let secret = ["token", "private_key", "passphrase", "resource_group"]
                .iter()
                .any(|s| path.ends_with(s));
            let inside_sensitive = path.starts_with("resource_group.");
            if secret && !inside_sensitive && a.mode != Mode::Computed {
                assert!(a.sensitive, "{path} must be sensitive");
            }
        }
    }

    #[test]
    fn resource_definition_type_has_every_block_and_attribute() {
        let ty = schemas().resource_definition.ty().clone();
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

    #[test]
    fn provider_node_block_is_a_map_with_http_and_ssh_at_most_once() {
        let p = schemas().provider.to_proto();
        let node = &p.block.unwrap().block_types[0];
        assert_eq!(node.type_name, "node");
        assert_eq!(
            node.nesting,
            tf::schema::nested_block::NestingMode::Map as i32
        );
        let inner = node.block.as_ref().unwrap();
        for b in &inner.block_types {
            assert_eq!(b.max_items, 1, "{}", b.type_name);
        }
    }
}
