//! The controller: what the provider decides before it talks to agents, and the fan-out.
//!
//! * [`known`]: a configuration value that may be null or not known yet.
//! * [`secret`]: where the passphrase comes from (literal, file or environment variable), read
//!   once per call.
//! * [`resolve`]: the effective stack, passphrase, place count, pool and props of a definition.
//! * [`place`]: which nodes get a replica, and which pool backs it.
//! * [`allocate`]: DRBD node ids, minors and ports.
//! * [`members`]: DRBD numbers kept across a change of the replica set.
//! * [`desired`]: the per-node `DesiredResource`.
//!
//! There is no controller database: everything the controller needs is in the Terraform
//! configuration, the state, and what the agents report.

pub mod allocate;
pub mod desired;
#[cfg(test)]
pub mod fake;
pub mod known;
pub mod members;
pub mod place;
pub mod resolve;
pub mod secret;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use blockstor_proto::wire::NodeInfo;
use blockstor_proto::NodeName;

use crate::transport::{AgentClient, TransportError};

/// One configured node: its DRBD address and the client of its agent.
#[derive(Clone)]
pub struct ClusterNode {
    pub address: String,
    pub client: Arc<dyn AgentClient>,
}

/// Every node of the provider configuration, by name.
#[derive(Clone, Default)]
pub struct Cluster {
    pub nodes: BTreeMap<NodeName, ClusterNode>,
    /// DRBD minors and ports handed out by concurrent applies of this process.
    pub reserved: Arc<std::sync::Mutex<allocate::Reserved>>,
    /// Each agent's `node_info` as the plan preview first saw it; see [`Cluster::pools_of`].
    pools_seen: Arc<std::sync::Mutex<BTreeMap<NodeName, PoolsOnce>>>,
}

/// One node's `node_info`, fetched at most once per provider process.
type PoolsOnce = Arc<tokio::sync::OnceCell<NodeInfo>>;

impl Cluster {
    /// The node called `name`, if configured.
    pub fn node(&self, name: &NodeName) -> Option<&ClusterNode> {
        self.nodes.get(name)
    }

    /// `node_info` of `node`, asked once per provider process and then answered from memory.
    ///
    /// For the plan preview only, which needs the node's pool names: a fresh plan of N
    /// definitions would otherwise ask each agent N times, and each answer costs the agent a
    /// look at every pool's free space and its tool versions (three processes). Pools are the
    /// agent's configuration and do not change during one Terraform command (Terraform starts a
    /// new provider process for each). Apply always asks the agent live: free space and DRBD
    /// minors change. A failed call is not remembered.
    pub async fn pools_of(&self, node: &NodeName) -> Result<NodeInfo, TransportError> {
        let Some(client) = self.nodes.get(node).map(|n| n.client.clone()) else {
            return Err(TransportError::Unreachable {
                node: node.clone(),
                message: format!(
                    "node {node} is not configured: add a `node \"{node}\"` block to the provider"
                ),
            });
        };
        let once = self
            .pools_seen
            .lock()
            .expect("pools cache poisoned")
            .entry(node.clone())
            .or_default()
            .clone();
        once.get_or_try_init(|| async move { client.node_info().await })
            .await
            .cloned()
    }

    /// Runs `call` on the agents of `names` in parallel; results in the order of `names`.
    pub async fn fan_out<T, F, Fut>(
        &self,
        names: &[NodeName],
        call: F,
    ) -> Vec<(NodeName, Result<T, TransportError>)>
    where
        F: Fn(Arc<dyn AgentClient>) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let calls = names.iter().map(|name| {
            let client = self.nodes.get(name).map(|n| n.client.clone());
            let fut = client.map(&call);
            async move {
                let result = match fut {
                    Some(f) => f.await,
                    None => Err(TransportError::Unreachable {
                        node: name.clone(),
                        message: format!(
                            "node {name} is not configured: add a `node \"{name}\"` block to the provider"
                        ),
                    }),
                };
                (name.clone(), result)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Names of every configured node, sorted.
    pub fn names(&self) -> Vec<NodeName> {
        self.nodes.keys().cloned().collect()
    }
}
