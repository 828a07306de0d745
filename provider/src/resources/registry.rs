//! Every resource and data source type of the provider, by type name. Adding a type is one
//! folder under `resources/` and one line here (see docs/design.md, "Adding a resource type
//! or an attribute").

use std::sync::OnceLock;

use super::diag::Diagnostics;
use super::resource::{DataSource, Resource};
use super::{nodes_data, resource_definition, resource_definition_data, resource_group};
use crate::schema::{self, Schema};

/// The provider's schema and types, built once per process.
pub struct Registry {
    provider: Schema,
    resources: Vec<Box<dyn Resource>>,
    data_sources: Vec<Box<dyn DataSource>>,
}

/// The registry of this provider.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        provider: schema::provider::schema(),
        resources: vec![
            Box::new(resource_group::ResourceGroup::new()),
            Box::new(resource_definition::ResourceDefinition::new()),
        ],
        data_sources: vec![
            Box::new(nodes_data::NodesData::new()),
            Box::new(resource_definition_data::ResourceDefinitionData::new()),
        ],
    })
}

impl Registry {
    /// The `provider "blockstor" {}` schema.
    pub fn provider_schema(&self) -> &Schema {
        &self.provider
    }

    /// Every resource type, in registration order.
    pub fn resources(&self) -> impl Iterator<Item = &dyn Resource> {
        self.resources.iter().map(|r| r.as_ref())
    }

    /// Every data source type, in registration order.
    pub fn data_sources(&self) -> impl Iterator<Item = &dyn DataSource> {
        self.data_sources.iter().map(|d| d.as_ref())
    }

    /// The resource type `type_name`, or an error diagnostic that lists the known types.
    pub fn resource(&self, type_name: &str) -> Result<&dyn Resource, Diagnostics> {
        self.resources()
            .find(|r| r.type_name() == type_name)
            .ok_or_else(|| self.unknown_type("resource", type_name))
    }

    /// The data source type `type_name`, or an error diagnostic that lists the known types.
    pub fn data_source(&self, type_name: &str) -> Result<&dyn DataSource, Diagnostics> {
        self.data_sources()
            .find(|d| d.type_name() == type_name)
            .ok_or_else(|| self.unknown_type("data source", type_name))
    }

    fn unknown_type(&self, kind: &str, type_name: &str) -> Diagnostics {
        let names = |it: &mut dyn Iterator<Item = &'static str>| it.collect::<Vec<_>>().join(", ");
        let resources = names(&mut self.resources().map(|r| r.type_name()));
        let data_sources = names(&mut self.data_sources().map(|d| d.type_name()));
        let mut d = Diagnostics::default();
        d.error_global(
            format!("Unknown {kind} type {type_name}"),
            format!(
                "This provider has the resources {resources}, and the data sources {data_sources}."
            ),
        );
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{AttrType, Attribute, Block, Mode};

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

    /// Every attribute of the provider block and of every registered type.
    fn all() -> Vec<(String, Attribute)> {
        let r = registry();
        let schemas = std::iter::once(r.provider_schema())
            .chain(r.resources().map(|t| t.schema()))
            .chain(r.data_sources().map(|t| t.schema()));
        let mut out = Vec::new();
        for schema in schemas {
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
            // `resource_group` is not sensitive as a whole (Terraform's generated configuration
            // would write `{}`): its `passphrase` is, like every secret at any depth.
            let secret = ["token", "private_key", "passphrase"]
                .iter()
                .any(|s| path.ends_with(s));
            if secret && a.mode != Mode::Computed {
                assert!(a.sensitive, "{path} must be sensitive");
            }
        }
    }

    #[test]
    fn an_unknown_type_is_an_error_that_lists_the_registered_types() {
        let r = registry();
        let Err(d) = r.resource("blockstor_volume") else {
            panic!("blockstor_volume is not a resource type")
        };
        assert_eq!(d.0[0].summary, "Unknown resource type blockstor_volume");
        for t in r.resources().map(|r| r.type_name()) {
            assert!(d.0[0].detail.contains(t), "{}", d.0[0].detail);
        }
        let Err(d) = r.data_source("blockstor_resource_group") else {
            panic!("blockstor_resource_group is not a data source type")
        };
        assert_eq!(
            d.0[0].summary,
            "Unknown data source type blockstor_resource_group"
        );
        assert!(
            d.0[0].detail.contains("blockstor_nodes"),
            "{}",
            d.0[0].detail
        );
    }

    #[test]
    fn type_names_are_unique_within_each_kind() {
        let r = registry();
        let mut resources: Vec<_> = r.resources().map(|r| r.type_name()).collect();
        let mut data_sources: Vec<_> = r.data_sources().map(|d| d.type_name()).collect();
        let (n, m) = (resources.len(), data_sources.len());
        resources.sort();
        resources.dedup();
        data_sources.sort();
        data_sources.dedup();
        assert_eq!((resources.len(), data_sources.len()), (n, m));
    }
}
