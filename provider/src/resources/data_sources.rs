//! Data sources: `blockstor_nodes` (every agent's `node()`) and `blockstor_resource_definition`
//! (one definition as the agents observe it).

use blockstor_proto::wire::NodeInfo;
use blockstor_proto::ResourceName;

use super::diag::{AttrPath, Diagnostics};
use super::resource_definition::replica;
use crate::controller::Cluster;
use crate::values::Value;

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
