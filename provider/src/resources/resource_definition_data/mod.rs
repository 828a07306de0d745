//! `data "blockstor_resource_definition"`: one definition as the agents observe it.

pub mod schema;

use blockstor_proto::ResourceName;

use super::diag::{AttrPath, Diagnostics};
use super::resource::{Cx, DataSource};
use super::resource_definition::replica;
use crate::controller::Cluster;
use crate::schema::Schema;
use crate::values::Value;

/// The Terraform type name (the same as the resource's; Terraform keeps the kinds apart).
pub const TYPE_NAME: &str = "blockstor_resource_definition";

/// `data "blockstor_resource_definition"`.
pub struct ResourceDefinitionData {
    schema: Schema,
}

impl ResourceDefinitionData {
    pub fn new() -> Self {
        ResourceDefinitionData {
            schema: schema::schema(),
        }
    }
}

impl Default for ResourceDefinitionData {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl DataSource for ResourceDefinitionData {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, cx: &Cx, config: &Value) -> (Value, Diagnostics) {
        read_resource_definition(&cx.cluster, config).await
    }
}

/// `data "blockstor_resource_definition"`.
pub async fn read_resource_definition(cluster: &Cluster, config: &Value) -> (Value, Diagnostics) {
    let mut diags = Diagnostics::default();
    let name = match config.get("name").as_str().map(str::parse::<ResourceName>) {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            diags.error(&AttrPath::attr("name"), "Invalid name", e.to_string());
            return (Value::Null, diags);
        }
        None => {
            diags.error(
                &AttrPath::attr("name"),
                "name is required",
                "Set name to the definition to read.",
            );
            return (Value::Null, diags);
        }
    };
    let mut observed = Vec::new();
    let results = cluster
        .fan_out(&cluster.names(), |c| {
            let name = name.clone();
            async move { c.get(&name).await }
        })
        .await;
    for (_, r) in results {
        match r {
            Ok(Some(o)) => observed.push(o),
            Ok(None) => {}
            Err(e) => diags.transport("Reading resource", &e),
        }
    }
    let Some(first) = observed.first().cloned() else {
        if !diags.has_errors() {
            diags.error(
                &AttrPath::attr("name"),
                format!("Resource definition {name} not found"),
                "No configured node has a resource of this name.",
            );
        }
        return (Value::Null, diags);
    };
    let mut volumes = first.volumes.clone();
    volumes.sort_by_key(|v| v.number);
    let state = Value::object([
        ("id", Value::string(name.as_str())),
        ("name", Value::string(name.as_str())),
        ("layer_stack", Value::strings(first.layer_stack.names())),
        (
            "nodes",
            Value::strings(observed.iter().map(|o| o.node.as_str())),
        ),
        (
            "volumes",
            Value::List(
                volumes
                    .iter()
                    .map(|v| {
                        Value::object([
                            ("number", Value::int(i64::from(v.number))),
                            (
                                "size_kib",
                                v.size_kib.map_or(Value::Null, |k| Value::int(k as i64)),
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "replicas",
            Value::List(observed.iter().map(replica).collect()),
        ),
    ]);
    (state, diags)
}
