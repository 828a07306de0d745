//! An in-memory agent for tests: applies `DesiredResource`s to a map and reports them back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use blockstor_proto::wire::{
    AgentError, DeleteOptions, DesiredResource, NodeInfo, ObservedDrbd, ObservedResource,
    ObservedVolume, PlannedStep, PlannedSteps, PoolInfo, Versions,
};
use blockstor_proto::{Layer, NodeName, ResourceName};

use super::{Cluster, ClusterNode};
use crate::transport::{AgentClient, TransportError};

/// A fake agent with one pool `files` (or the pools given) and a resource map.
pub struct FakeAgent {
    pub name: NodeName,
    pub pools: Vec<(String, u64)>,
    pub resources: Mutex<BTreeMap<ResourceName, ObservedResource>>,
    /// Every request, as `op name`.
    pub calls: Mutex<Vec<String>>,
    /// When set, every apply fails with this agent error code (e.g. `kernel_feature_missing`).
    pub fail_apply: Mutex<Option<&'static str>>,
    /// The LUKS passphrase each apply carried, in clear (only tests read it).
    pub passphrases: Mutex<Vec<String>>,
    /// When set, every call fails as if the agent could not be reached (node down).
    pub unreachable: Mutex<bool>,
    /// The DRBD kernel module version `node_info` reports (none: no module).
    pub drbd_kernel: Mutex<Option<String>>,
}

impl FakeAgent {
    pub fn new(name: &str, pools: &[(&str, u64)]) -> Arc<Self> {
        Arc::new(FakeAgent {
            name: name.parse().unwrap(),
            pools: pools.iter().map(|(p, f)| (p.to_string(), *f)).collect(),
            resources: Mutex::default(),
            calls: Mutex::default(),
            fail_apply: Mutex::default(),
            passphrases: Mutex::default(),
            unreachable: Mutex::default(),
            drbd_kernel: Mutex::default(),
        })
    }

    /// A cluster of fake agents named `names`, each with `pools` (default: `files`).
    pub fn cluster(names: &[&str], pools: &[(&str, u64)]) -> Cluster {
        Self::cluster_of(names.iter().map(|n| {
            Self::new(
                n,
                if pools.is_empty() {
                    &[("files", 1 << 20)]
                } else {
                    pools
                },
            )
        }))
    }

    pub fn cluster_of(agents: impl IntoIterator<Item = Arc<FakeAgent>>) -> Cluster {
        Cluster {
            nodes: agents
                .into_iter()
                .map(|a| {
                    let node = ClusterNode {
                        address: format!("10.0.0.{}", a.name.as_str().len()),
                        client: a.clone() as Arc<dyn AgentClient>,
                    };
                    (a.name.clone(), node)
                })
                .collect(),
            ..Cluster::default()
        }
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// The transport error of a node that is down, when [`FakeAgent::unreachable`] is set.
    fn reachable(&self) -> Result<(), TransportError> {
        if *self.unreachable.lock().unwrap() {
            return Err(TransportError::Unreachable {
                node: self.name.clone(),
                message: "connection refused (os error 111)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl AgentClient for FakeAgent {
    fn node(&self) -> &NodeName {
        &self.name
    }

    async fn node_info(&self) -> Result<NodeInfo, TransportError> {
        self.record("node".into());
        self.reachable()?;
        let resources = self.resources.lock().unwrap();
        Ok(NodeInfo {
            name: self.name.clone(),
            versions: Versions {
                agent: "fake".into(),
                drbd_kernel: self.drbd_kernel.lock().unwrap().clone(),
                ..Versions::default()
            },
            pools: self
                .pools
                .iter()
                .map(|(p, free)| PoolInfo {
                    name: p.parse().unwrap(),
                    backend: "loopfile".into(),
                    free_kib: *free,
                    total_kib: *free * 2,
                })
                .collect(),
            used_minors: resources
                .values()
                .flat_map(|r| r.drbd.iter().flat_map(|d| d.minors.clone()))
                .collect(),
            used_ports: resources
                .values()
                .filter_map(|r| r.drbd.as_ref().map(|d| d.port))
                .collect(),
        })
    }

    async fn apply(&self, desired: &DesiredResource) -> Result<ObservedResource, TransportError> {
        self.record(format!("apply {}", desired.name));
        self.reachable()?;
        if let Some(luks) = &desired.luks {
            let clear = luks.passphrase.expose().to_owned();
            self.passphrases.lock().unwrap().push(clear);
        }
        if let Some(old) = desired
            .luks
            .as_ref()
            .and_then(|l| l.previous_passphrase.as_ref())
        {
            // Only tests read this: which rotation was asked for.
            let new = desired.luks.as_ref().map(|l| l.passphrase.expose());
            self.record(format!(
                "rotate {} {} -> {}",
                desired.name,
                old.expose(),
                new.unwrap_or_default()
            ));
        }
        if let Some(code) = *self.fail_apply.lock().unwrap() {
            return Err(TransportError::Agent {
                node: self.name.clone(),
                error: AgentError {
                    code: code.into(),
                    message: "failed as told".into(),
                    field: None,
                },
            });
        }
        let diskless = desired.drbd.as_ref().is_some_and(|d| d.diskless);
        if desired.layer_stack.has(Layer::Luks) && desired.luks.is_none() && !diskless {
            return Err(TransportError::Agent {
                node: self.name.clone(),
                error: AgentError {
                    code: "luks_passphrase_missing".into(),
                    message: "set passphrase".into(),
                    field: Some("luks.passphrase".into()),
                },
            });
        }
        let volumes = desired
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let backing = format!("/dev/loop{}", v.number);
                let device = match (&desired.drbd, desired.layer_stack.has(Layer::Luks)) {
                    (Some(d), _) => format!("/dev/drbd{}", d.minors[i]),
                    (None, true) => format!("/dev/mapper/{}-{}-luks", desired.name, v.number),
                    (None, false) => backing.clone(),
                };
                ObservedVolume {
                    number: v.number,
                    size_kib: Some(v.size_kib.kib()),
                    backing_device: Some(backing),
                    device_path: Some(device),
                    luks: None,
                }
            })
            .collect();
        let observed = ObservedResource {
            name: desired.name.clone(),
            node: self.name.clone(),
            layer_stack: desired.layer_stack.clone(),
            volumes,
            drbd: desired.drbd.as_ref().map(|d| ObservedDrbd {
                node_id: d.node_id,
                port: d.port,
                minors: d.minors.clone(),
                res_file: format!("/var/lib/blockstor/drbd.d/{}.res", desired.name),
                up: true,
                role: Some("Secondary".to_owned()),
                disk_state: Some(if d.diskless { "Diskless" } else { "UpToDate" }.to_owned()),
                diskless: d.diskless,
            }),
            generation: desired.generation,
            origin: Default::default(),
        };
        self.resources
            .lock()
            .unwrap()
            .insert(desired.name.clone(), observed.clone());
        Ok(observed)
    }

    /// One STORAGE step per volume it does not hold at that size yet, with a redacted LUKS
    /// step when it formats (nothing held) or rotates: idempotent, like the real agent, so a
    /// resource it holds already plans no steps.
    async fn plan(&self, desired: &DesiredResource) -> Result<PlannedSteps, TransportError> {
        self.record(format!("plan {}", desired.name));
        self.reachable()?;
        let held = self.resources.lock().unwrap().get(&desired.name).cloned();
        let has = |number: u32, kib: u64| {
            held.as_ref().is_some_and(|r| {
                r.volumes
                    .iter()
                    .any(|o| o.number == number && o.size_kib.is_some_and(|s| s >= kib))
            })
        };
        let mut steps: Vec<PlannedStep> = desired
            .volumes
            .iter()
            .filter(|v| !has(v.number, v.size_kib.kib()))
            .map(|v| PlannedStep {
                layer: "STORAGE".to_owned(),
                argv: vec![
                    "truncate".to_owned(),
                    "-s".to_owned(),
                    format!("{}K", v.size_kib.kib()),
                    format!("/fake/{}_{}.img", desired.name, v.number),
                ],
            })
            .collect();
        let formats_or_rotates = desired
            .luks
            .as_ref()
            .is_some_and(|l| held.is_none() || l.previous_passphrase.is_some());
        if formats_or_rotates {
            steps.push(PlannedStep {
                layer: "LUKS".to_owned(),
                argv: vec!["cryptsetup".to_owned(), "<redacted>".to_owned()],
            });
        }
        Ok(PlannedSteps { steps })
    }

    async fn get(&self, name: &ResourceName) -> Result<Option<ObservedResource>, TransportError> {
        self.record(format!("get {name}"));
        self.reachable()?;
        Ok(self.resources.lock().unwrap().get(name).cloned())
    }

    async fn delete(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<(), TransportError> {
        self.record(if options.is_default() {
            format!("delete {name}")
        } else {
            format!("delete {name} {}", serde_json::to_string(options).unwrap())
        });
        self.reachable()?;
        self.resources.lock().unwrap().remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
        self.reachable()?;
        Ok(self.resources.lock().unwrap().values().cloned().collect())
    }
}
