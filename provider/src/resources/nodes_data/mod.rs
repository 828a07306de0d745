//! `data "blockstor_nodes"`: every configured node as its agent's `node()` reports it.

pub mod schema;

use blockstor_proto::wire::NodeInfo;

use super::diag::Diagnostics;
use super::resource::{Cx, DataSource};
use crate::controller::Cluster;
use crate::schema::Schema;
use crate::values::Value;

/// The Terraform type name.
pub const TYPE_NAME: &str = "blockstor_nodes";

/// `data "blockstor_nodes"`.
pub struct NodesData {
    schema: Schema,
}

impl NodesData {
    pub fn new() -> Self {
        NodesData {
            schema: schema::schema(),
        }
    }
}

impl Default for NodesData {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl DataSource for NodesData {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, cx: &Cx, _config: &Value) -> (Value, Diagnostics) {
        read_nodes(&cx.cluster).await
    }
}

fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, Value::string)
}

fn node_value(info: &NodeInfo, address: &str) -> Value {
    Value::object([
        ("name", Value::string(info.name.as_str())),
        ("address", Value::string(address)),
        ("agent_version", Value::string(&info.versions.agent)),
        ("cryptsetup_version", opt(&info.versions.cryptsetup)),
        ("drbd_version", opt(&info.versions.drbd_kernel)),
        ("drbd_utils_version", opt(&info.versions.drbd_utils)),
        (
            "pools",
            Value::List(
                info.pools
                    .iter()
                    .map(|p| {
                        Value::object([
                            ("name", Value::string(p.name.as_str())),
                            ("backend", Value::string(&p.backend)),
                            ("free_kib", Value::int(p.free_kib as i64)),
                            ("total_kib", Value::int(p.total_kib as i64)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// `data "blockstor_nodes"`.
pub async fn read_nodes(cluster: &Cluster) -> (Value, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut nodes = Vec::new();
    for (name, r) in cluster
        .fan_out(&cluster.names(), |c| async move { c.node_info().await })
        .await
    {
        match r {
            Ok(info) => {
                let address = cluster
                    .node(&name)
                    .map(|n| n.address.clone())
                    .unwrap_or_default();
                nodes.push(node_value(&info, &address));
            }
            Err(e) => diags.transport("Reading node", &e),
        }
    }
    let state = Value::object([
        ("id", Value::string("nodes")),
        ("nodes", Value::List(nodes)),
    ]);
    (state, diags)
}
