//! The per-node `DesiredResource` built from one resolved, placed definition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use blockstor_proto::wire::{
    DesiredResource, DrbdPeer, DrbdSpec, LuksSpec, Passphrase, StorageSpec, VolumeSpec,
};
use blockstor_proto::{Layer, LayerStack, NodeName, ResourceName, StoragePoolName};
use serde::{Deserialize, Serialize};

use super::Cluster;

/// Prefix of props that are DRBD options (`DrbdOptions/Net/protocol` …).
const DRBD_PREFIX: &str = "DrbdOptions/";

/// The DRBD numbers of a definition, fixed at creation and kept in the resource's private
/// state (never recomputed, so an update never renumbers a running device).
#[derive(Clone, Serialize, Deserialize)]
pub struct DrbdAllocation {
    pub port: u16,
    /// One minor per volume, in volume order.
    pub minors: Vec<u32>,
    pub node_ids: BTreeMap<NodeName, u32>,
    /// `shared-secret` of the `.res` file: random, generated once. Serialised as the plain
    /// string it always was, so private state written before it had a type still loads.
    pub shared_secret: Passphrase,
    /// Minors of replicas added after creation where `minors` were taken on their node
    /// (absent: the node uses `minors`). Left out of the JSON when empty, so private state
    /// keeps its earlier form.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_minors: BTreeMap<NodeName, Vec<u32>>,
    /// Node ids of replicas removed before: never handed out again, since the remaining
    /// peers' metadata still holds a bitmap slot for them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired_ids: BTreeSet<u32>,
}

impl DrbdAllocation {
    /// The minors `node` uses, one per volume.
    pub fn minors_of(&self, node: &NodeName) -> &[u32] {
        self.node_minors.get(node).unwrap_or(&self.minors)
    }
}

impl fmt::Debug for DrbdAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrbdAllocation")
            .field("port", &self.port)
            .field("minors", &self.minors)
            .field("node_ids", &self.node_ids)
            .field("node_minors", &self.node_minors)
            .field("retired_ids", &self.retired_ids)
            .field("shared_secret", &format_args!("[redacted]"))
            .finish()
    }
}

impl PartialEq for DrbdAllocation {
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port
            && self.minors == other.minors
            && self.node_ids == other.node_ids
            && self.node_minors == other.node_minors
            && self.retired_ids == other.retired_ids
            && self.shared_secret.expose() == other.shared_secret.expose()
    }
}

impl Eq for DrbdAllocation {}

/// Everything needed to build each node's `DesiredResource`: resolved, validated, placed.
#[derive(Clone)]
pub struct Spec {
    pub name: ResourceName,
    pub layer_stack: LayerStack,
    pub volumes: Vec<VolumeSpec>,
    pub pool: StoragePoolName,
    pub passphrase: Option<Passphrase>,
    /// The passphrase the LUKS headers hold now, while rotating to `passphrase`.
    pub previous_passphrase: Option<Passphrase>,
    pub props: BTreeMap<String, String>,
    pub generation: u64,
    /// Every replica, diskful and diskless.
    pub nodes: Vec<NodeName>,
    /// The replicas of `nodes` that are diskless DRBD clients (no STORAGE, no LUKS there).
    pub diskless: BTreeSet<NodeName>,
    pub drbd: Option<DrbdAllocation>,
}

/// The fields in order; the passphrases through `Passphrase`'s own redacting `Debug`.
impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("layer_stack", &self.layer_stack)
            .field("volumes", &self.volumes)
            .field("pool", &self.pool)
            .field("passphrase", &self.passphrase)
            .field("previous_passphrase", &self.previous_passphrase)
            .field("props", &self.props)
            .field("generation", &self.generation)
            .field("nodes", &self.nodes)
            .field("diskless", &self.diskless)
            .field("drbd", &self.drbd)
            .finish()
    }
}

impl Spec {
    /// The document sent to `node`'s agent.
    pub fn desired_for(&self, node: &NodeName, cluster: &Cluster) -> DesiredResource {
        let diskless = self.diskless.contains(node);
        // A diskless client has no header to open: it never gets the passphrase.
        let luks = if self.layer_stack.has(Layer::Luks) && !diskless {
            self.passphrase.clone().map(|passphrase| LuksSpec {
                passphrase,
                previous_passphrase: self.previous_passphrase.clone(),
            })
        } else {
            None
        };
        let drbd = match (&self.drbd, self.layer_stack.has(Layer::Drbd)) {
            (Some(alloc), true) => Some(self.drbd_spec(alloc, node, cluster)),
            _ => None,
        };
        DesiredResource {
            name: self.name.clone(),
            layer_stack: self.layer_stack.clone(),
            volumes: self.volumes.clone(),
            storage: StorageSpec {
                pool: self.pool.clone(),
            },
            luks,
            drbd,
            props: self.props.clone(),
            generation: self.generation,
        }
    }

    fn drbd_spec(&self, alloc: &DrbdAllocation, node: &NodeName, cluster: &Cluster) -> DrbdSpec {
        let address = |n: &NodeName| {
            cluster
                .node(n)
                .map(|c| c.address.clone())
                .unwrap_or_default()
        };
        let peers = self
            .nodes
            .iter()
            .filter(|n| *n != node)
            .map(|n| DrbdPeer {
                name: n.clone(),
                node_id: alloc.node_ids.get(n).copied().unwrap_or_default(),
                address: address(n),
                port: alloc.port,
                diskless: self.diskless.contains(n),
            })
            .collect();
        let options: BTreeMap<String, String> = self
            .props
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(DRBD_PREFIX)?.to_owned(), v.clone())))
            .filter(|(k, _)| k != "Net/protocol")
            .collect();
        DrbdSpec {
            node_id: alloc.node_ids.get(node).copied().unwrap_or_default(),
            port: alloc.port,
            minors: alloc.minors_of(node).to_vec(),
            peers,
            protocol: self
                .props
                .get("DrbdOptions/Net/protocol")
                .cloned()
                .unwrap_or_else(|| "C".to_owned()),
            shared_secret: alloc.shared_secret.clone(),
            options,
            address: address(node),
            diskless: self.diskless.contains(node),
            join: None,
            wait_seconds: None,
        }
    }
}

/// A fresh random DRBD shared secret (32 alphanumeric characters).
pub fn random_secret() -> Passphrase {
    use rand::distr::{Alphanumeric, SampleString};
    Passphrase::new(Alphanumeric.sample_string(&mut rand::rng(), 32))
}

/// Node ids 0.. in name order.
pub fn node_ids(nodes: &[NodeName]) -> BTreeMap<NodeName, u32> {
    let mut sorted = nodes.to_vec();
    sorted.sort();
    sorted.into_iter().zip(0..).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fake::FakeAgent;

    fn spec(stack: &[&str], nodes: &[&str]) -> Spec {
        let nodes: Vec<NodeName> = nodes.iter().map(|n| n.parse().unwrap()).collect();
        Spec {
            name: "db".parse().unwrap(),
            layer_stack: LayerStack::parse(stack).unwrap(),
            volumes: vec![VolumeSpec {
                number: 0,
                size_kib: "64MiB".parse().unwrap(),
            }],
            pool: "files".parse().unwrap(),
            passphrase: Some(Passphrase::new("pw")),
            previous_passphrase: None,
            props: [("DrbdOptions/Net/protocol".to_owned(), "A".to_owned())].into(),
            generation: 1,
            diskless: BTreeSet::new(),
            drbd: Some(DrbdAllocation {
                port: 7000,
                minors: vec![1000],
                node_ids: node_ids(&nodes),
                shared_secret: Passphrase::new("s"),
                node_minors: BTreeMap::new(),
                retired_ids: BTreeSet::new(),
            }),
            nodes,
        }
    }

    #[test]
    fn storage_only_stack_sends_no_luks_and_no_drbd() {
        let cluster = FakeAgent::cluster(&["n1"], &[]);
        let d = spec(&["STORAGE"], &["n1"]).desired_for(&"n1".parse().unwrap(), &cluster);
        assert!(d.luks.is_none() && d.drbd.is_none());
    }

    #[test]
    fn drbd_stack_lists_the_other_nodes_as_peers() {
        let cluster = FakeAgent::cluster(&["n1", "n2"], &[]);
        let d =
            spec(&["DRBD", "LUKS"], &["n1", "n2"]).desired_for(&"n2".parse().unwrap(), &cluster);
        let drbd = d.drbd.unwrap();
        assert_eq!(drbd.node_id, 1);
        assert_eq!(drbd.protocol, "A");
        assert_eq!(drbd.peers.len(), 1);
        assert_eq!(drbd.peers[0].name.as_str(), "n1");
        assert_eq!(drbd.peers[0].node_id, 0);
        assert!(d.luks.is_some());
    }

    #[test]
    fn a_diskless_node_is_flagged_to_itself_and_its_peers_and_gets_no_passphrase() {
        let cluster = FakeAgent::cluster(&["n1", "n2"], &[]);
        let mut spec = spec(&["DRBD", "LUKS", "STORAGE"], &["n1", "n2"]);
        spec.diskless = ["n2".parse().unwrap()].into();
        let client = spec.desired_for(&"n2".parse().unwrap(), &cluster);
        assert!(client.drbd.as_ref().unwrap().diskless);
        assert!(client.luks.is_none());
        let diskful = spec.desired_for(&"n1".parse().unwrap(), &cluster);
        let drbd = diskful.drbd.unwrap();
        assert!(!drbd.diskless && drbd.peers[0].diskless);
        assert!(diskful.luks.is_some());
    }
}
