//! A change of a DRBD definition's replica set, in place (issue 18): the stages of
//! `blockstor_proto::drbd_stages` driven across the nodes, one group of same-role stages after
//! the other. Staying nodes get the stage's peer set (the agent re-renders and adjusts), added
//! nodes `drbd.join` (never the initial sync), removed nodes a delete with `remaining` (the
//! agent waits for an UpToDate one before `down`). Node ids, port and minors of staying nodes
//! are kept (`controller::members`).

use std::collections::{BTreeMap, BTreeSet};

use blockstor_proto::drbd_stages::{self, DrbdVersion, Role, Stage};
use blockstor_proto::wire::{DeleteOptions, DrbdJoin, NodeInfo, ObservedResource};
use blockstor_proto::NodeName;

use super::progress;
use crate::controller::desired::{DrbdAllocation, Spec};
use crate::controller::{members, Cluster};
use crate::resources::diag::{AttrPath, Diagnostics};

/// DRBD 8.4 when any node reports an 8.x kernel module, else 9.
pub fn version(infos: &BTreeMap<NodeName, NodeInfo>) -> DrbdVersion {
    let v84 = infos.values().any(|i| {
        i.versions
            .drbd_kernel
            .as_deref()
            .is_some_and(|v| v.starts_with("8."))
    });
    if v84 {
        DrbdVersion::V84
    } else {
        DrbdVersion::V9
    }
}

/// Runs the change from `alloc`'s node set to `spec.nodes`. Returns the allocation to keep
/// and what each node of the new set reported last; errors go to `diags` (the run stops at the
/// first group that failed).
pub async fn change(
    cluster: &Cluster,
    spec: &Spec,
    mut alloc: DrbdAllocation,
    infos: &BTreeMap<NodeName, NodeInfo>,
    wait_seconds: u64,
    diags: &mut Diagnostics,
) -> (DrbdAllocation, Vec<ObservedResource>) {
    let old: BTreeSet<NodeName> = alloc.node_ids.keys().cloned().collect();
    let new: BTreeSet<NodeName> = spec.nodes.iter().cloned().collect();
    let stages = match drbd_stages::stages(&old, &new, version(infos)) {
        Ok(s) => s,
        Err(e) => {
            diags.error(
                &AttrPath::attr("nodes"),
                "Cannot change the replicas",
                e.message,
            );
            return (alloc, Vec::new());
        }
    };
    let refs: BTreeMap<NodeName, &NodeInfo> = infos.iter().map(|(n, i)| (n.clone(), i)).collect();
    let union: BTreeSet<NodeName> = old.union(&new).cloned().collect();
    {
        let mut reserved = cluster.reserved.lock().expect("allocation lock");
        if let Err(e) = members::change(&mut alloc, &union, &refs, &mut reserved) {
            diags.error(&AttrPath::attr("nodes"), "Cannot add the replica", e);
            return (alloc, Vec::new());
        }
    }
    let mut observed: BTreeMap<NodeName, ObservedResource> = BTreeMap::new();
    for group in groups(&stages) {
        let results = cluster
            .fan_out(
                &group.iter().map(|s| s.node.clone()).collect::<Vec<_>>(),
                |client| {
                    let stage = group
                        .iter()
                        .find(|s| &s.node == client.node())
                        .expect("a stage per node")
                        .clone();
                    let mut part = spec.clone();
                    part.nodes = stage.replicas.iter().cloned().collect();
                    part.drbd = Some(alloc.clone());
                    let desired = part.desired_for(client.node(), cluster);
                    async move {
                        if stage.role == Role::Removed {
                            let options = DeleteOptions {
                                remaining: stage.replicas.iter().cloned().collect(),
                                wait_seconds: Some(wait_seconds),
                                ..DeleteOptions::default()
                            };
                            let since = progress::deleting(client.node(), &desired.name);
                            let r = client.delete(&desired.name, &options).await;
                            progress::deleted(client.node(), &desired.name, since, &r);
                            return r.map(|()| None);
                        }
                        let mut desired = desired;
                        if let Some(d) = desired.drbd.as_mut() {
                            d.wait_seconds = Some(wait_seconds);
                            if stage.role == Role::Added {
                                d.join = Some(DrbdJoin {
                                    until_up_to_date: stage.until_up_to_date,
                                });
                            }
                        }
                        let since = progress::started(client.node(), &desired);
                        let r = client.apply(&desired).await;
                        progress::finished(client.node(), &desired.name, since, &r);
                        r.map(Some)
                    }
                },
            )
            .await;
        for (node, r) in results {
            match r {
                Ok(Some(obs)) => {
                    observed.insert(node, obs);
                }
                Ok(None) => {
                    observed.remove(&node);
                }
                Err(e) => diags.transport("Changing replicas", &e),
            }
        }
        if diags.has_errors() {
            return (alloc, observed.into_values().collect());
        }
    }
    let mut reserved = cluster.reserved.lock().expect("allocation lock");
    if let Err(e) = members::change(&mut alloc, &new, &refs, &mut reserved) {
        diags.error(&AttrPath::attr("nodes"), "Cannot change the replicas", e);
    }
    let observed = observed
        .into_iter()
        .filter(|(n, _)| new.contains(n))
        .map(|(_, o)| o)
        .collect();
    (alloc, observed)
}

/// Consecutive stages of the same role: they run in parallel, the groups one after another.
fn groups(stages: &[Stage]) -> Vec<Vec<Stage>> {
    let mut out: Vec<Vec<Stage>> = Vec::new();
    for s in stages {
        match out.last_mut() {
            Some(g) if g[0].role == s.role && !g.iter().any(|x| x.node == s.node) => {
                g.push(s.clone())
            }
            _ => out.push(vec![s.clone()]),
        }
    }
    out
}
