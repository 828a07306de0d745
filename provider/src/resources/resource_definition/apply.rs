//! ApplyResourceChange for a definition: place, allocate, dispatch to every node in parallel,
//! and return exactly the planned values with the unknowns filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use blockstor_proto::wire::{DeleteOptions, NodeInfo, ObservedResource};
use blockstor_proto::{Layer, NodeName, ResourceName, StoragePoolName};

use super::private::Private;
use super::request::{Invalid, Request};
use super::state::{replica, unknown_as_null};
use super::validate::timeout;
use super::{fingerprint, guard, membership, progress};
use crate::controller::desired::{node_ids, random_secret, DrbdAllocation};
use crate::controller::place::{choose_pool, place, recount, Held};
use crate::controller::resolve;
use crate::controller::secret::Passphrases;
use crate::controller::{allocate, Cluster};
use crate::resources::diag::{AttrPath, Diagnostics};
use crate::transport::TransportError;
use crate::values::Value;

/// The reply to ApplyResourceChange.
#[derive(Default)]
pub struct Applied {
    pub state: Value,
    pub private: Vec<u8>,
    pub diags: Diagnostics,
}

/// Private state holds the DRBD shared secret: shown by its length only.
impl fmt::Debug for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applied")
            .field("state", &self.state)
            .field(
                "private",
                &format_args!("[{} bytes, redacted]", self.private.len()),
            )
            .field("diags", &self.diags)
            .finish()
    }
}

/// Applies a planned change (create, update, or delete when `planned` is null).
pub async fn apply(
    cluster: &Cluster,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
) -> Applied {
    if planned.is_null() {
        let mut diags = Diagnostics::default();
        if guard::refuse_destroy(prior, &mut diags) {
            // Before any agent call: the destroy (or the destroy half of a replacement)
            // touches nothing.
            return fail(prior, private, diags);
        }
        return delete(cluster, prior, private).await;
    }
    // Read once for this call: the refusal check and the request use the same secrets.
    let secrets = Passphrases::read(config);
    if !prior.is_null() {
        // Plan only warned about these (see `plan::update_refusals`); no agent is asked.
        let refused = super::plan::update_refusals(prior, config, &secrets);
        if refused.has_errors() {
            return fail(prior, private, refused);
        }
    }
    // Plan decided no agent has anything to do (e.g. only `description` changed).
    if planned.is_wholly_known() {
        return Applied {
            state: planned.clone(),
            private: private.to_vec(),
            diags: Diagnostics::default(),
        };
    }
    let op = if prior.is_null() { "create" } else { "update" };
    let limit = timeout(config, op);
    match tokio::time::timeout(
        limit,
        converge(cluster, prior, planned, config, private, &secrets),
    )
    .await
    {
        Ok(applied) => applied,
        Err(_) => {
            let mut diags = Diagnostics::default();
            diags.error_global(
                format!("{op} timed out after {}", human(limit)),
                format!("The agents did not finish within timeouts.{op}. Raise it in the timeouts block, or check the agents' logs; the next apply resumes where this one stopped."),
            );
            Applied {
                state: if prior.is_null() {
                    unknown_as_null(planned.clone())
                } else {
                    prior.clone()
                },
                private: private.to_vec(),
                diags,
            }
        }
    }
}

fn human(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Nothing was dispatched: keep what was there (nothing, on create).
fn fail(prior: &Value, private: &[u8], diags: Diagnostics) -> Applied {
    Applied {
        state: if prior.is_null() {
            Value::Null
        } else {
            prior.clone()
        },
        private: if prior.is_null() {
            Vec::new()
        } else {
            private.to_vec()
        },
        diags,
    }
}

async fn converge(
    cluster: &Cluster,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
    secrets: &Passphrases,
) -> Applied {
    let mut diags = Diagnostics::default();
    let eff = resolve::effective(config, secrets);
    let request = match Request::of(prior, config, &eff, secrets) {
        Ok(r) => r,
        Err(Invalid::NameOrStack) => {
            diags.error_global(
                "Invalid configuration at apply",
                "name and layer_stack must be known and valid at apply time.",
            );
            return fail(prior, private, diags);
        }
        Err(Invalid::Volume(path)) => {
            diags.error(
                &path,
                "Invalid volume",
                "Every volume needs a valid number and size.",
            );
            return fail(prior, private, diags);
        }
    };
    let (name, stack) = (&request.name, &request.layer_stack);

    // Ask the agents what they have: the chosen nodes, or every node when placement is open.
    let planned_nodes: Option<Vec<NodeName>> = planned
        .get("nodes")
        .as_string_list()
        .map(|ns| ns.iter().filter_map(|n| n.parse().ok()).collect());
    let diskless: Vec<NodeName> = planned
        .get("diskless_nodes")
        .as_string_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let ask = match &planned_nodes {
        Some(n) => sorted(&[n.as_slice(), &diskless].concat()),
        None => cluster.names(),
    };
    let mut infos: BTreeMap<NodeName, NodeInfo> = BTreeMap::new();
    for (node, result) in cluster
        .fan_out(&ask, |c| async move { c.node_info().await })
        .await
    {
        match result {
            Ok(info) => {
                infos.insert(node, info);
            }
            // An unreachable node only matters when it was chosen.
            Err(e) if planned_nodes.is_some() => diags.transport("Reading node", &e),
            Err(_) => {}
        }
    }
    if diags.has_errors() {
        return fail(prior, private, diags);
    }

    let all: Vec<&NodeInfo> = infos.values().collect();
    let wanted_pool = planned
        .get("effective_storage_pool")
        .as_str()
        .map(str::to_owned)
        .or(eff.storage_pool.clone().known());
    // With open placement a named pool need only exist on the nodes chosen for it; a
    // diskless client needs none.
    let diskful: Vec<&NodeInfo> = all
        .iter()
        .copied()
        .filter(|i| !diskless.contains(&i.name))
        .collect();
    let pool_check: &[&NodeInfo] = match (&planned_nodes, &wanted_pool) {
        (None, Some(_)) => &[],
        _ => &diskful,
    };
    let pool: StoragePoolName = match choose_pool(pool_check, wanted_pool.as_deref()) {
        Ok(p) => p,
        Err(e) => return placement_error(prior, private, diags, e),
    };
    let nodes = match planned_nodes {
        Some(n) => n,
        None => {
            let count = eff.place_count.clone().known().unwrap_or(1).max(1) as usize;
            // A placed DRBD definition whose count changes keeps its replicas (in place);
            // anything else is placed afresh.
            let held = held_replicas(prior);
            let placed = if stack.has(Layer::Drbd) && !held.is_empty() {
                recount(&diskful, &pool, &held, count)
            } else {
                place(&diskful, &pool, count)
            };
            match placed {
                Ok(n) => n,
                Err(e) => return placement_error(prior, private, diags, e),
            }
        }
    };

    // Every replica: the diskful `nodes` and the diskless clients.
    let replicas = sorted(&[nodes.as_slice(), &diskless].concat());
    let mut state = Private::decode(private);
    state.generation += 1;
    // A DRBD definition whose replica set changes: the stages run node by node, in place.
    let moving = state.drbd.clone().filter(|alloc| {
        stack.has(Layer::Drbd) && !prior.is_null() && !alloc.node_ids.keys().eq(replicas.iter())
    });
    if let Some(alloc) = moving {
        let mut spec = request.spec(pool.clone(), replicas.clone(), state.generation, None);
        spec.diskless = diskless.iter().cloned().collect();
        let wait = timeout(config, "update").as_secs();
        let (alloc, obs) =
            membership::change(cluster, &spec, alloc, &infos, wait, &mut diags).await;
        state.drbd = Some(alloc);
        return finish(
            planned, prior, name, stack, &nodes, &pool, &spec, obs, state, diags,
        );
    }
    if stack.has(Layer::Drbd) {
        let chosen: Vec<&NodeInfo> = replicas.iter().filter_map(|n| infos.get(n)).collect();
        state.drbd = Some(drbd_allocation(
            &mut cluster.reserved.lock().expect("allocation lock"),
            state.drbd.take(),
            &replicas,
            &chosen,
            request.volumes.len(),
        ));
    } else {
        state.drbd = None;
    }
    let mut spec = request.spec(
        pool.clone(),
        replicas.clone(),
        state.generation,
        state.drbd.clone(),
    );
    spec.diskless = diskless.iter().cloned().collect();

    let results = cluster
        .fan_out(&replicas, |client| {
            let desired = spec.desired_for(client.node(), cluster);
            async move {
                let since = progress::started(client.node(), &desired);
                let result = client.apply(&desired).await;
                progress::finished(client.node(), &desired.name, since, &result);
                result
            }
        })
        .await;
    let mut observed: Vec<ObservedResource> = Vec::new();
    for (_, result) in results {
        match result {
            Ok(obs) => observed.push(obs),
            Err(e) => diags.transport("Apply", &e),
        }
    }

    finish(
        planned, prior, name, stack, &nodes, &pool, &spec, observed, state, diags,
    )
}

/// The state after the agents answered: planned values with the unknowns filled in.
#[allow(clippy::too_many_arguments)]
fn finish(
    planned: &Value,
    prior: &Value,
    name: &ResourceName,
    stack: &blockstor_proto::LayerStack,
    nodes: &[NodeName],
    pool: &StoragePoolName,
    spec: &crate::controller::desired::Spec,
    mut observed: Vec<ObservedResource>,
    state: Private,
    mut diags: Diagnostics,
) -> Applied {
    let mut new_state = planned.clone();
    if new_state.get("planned_steps").is_unknown() {
        // Plan could not preview the steps (nodes or pool chosen only now); they ran.
        new_state.set("planned_steps", Value::Null);
    }
    new_state.set("id", Value::string(name.as_str()));
    new_state.set("nodes", Value::strings(nodes.iter().map(NodeName::as_str)));
    new_state.set("effective_place_count", Value::int(nodes.len() as i64));
    new_state.set("effective_storage_pool", Value::string(pool.as_str()));
    new_state.set("effective_layer_stack", Value::strings(stack.names()));
    if new_state.get("passphrase_fingerprint").is_unknown() {
        let fp = match (&spec.passphrase, stack.has(Layer::Luks)) {
            (Some(p), true) => Value::string(fingerprint::fingerprint(p.expose())),
            _ => Value::Null,
        };
        new_state.set("passphrase_fingerprint", fp);
    }
    observed.sort_by(|a, b| a.node.cmp(&b.node));
    warn_not_up_to_date(&observed, &mut diags);
    new_state.set(
        "replicas",
        Value::List(observed.iter().map(replica).collect()),
    );
    if diags.has_errors() && spec.previous_passphrase.is_some() {
        // Some replica may still hold only the prior passphrase: keep it in state so the next
        // plan shows the rotation again and the next apply resends both (replicas already
        // rotated skip it).
        keep_prior_passphrase(&mut new_state, prior);
    }
    Applied {
        state: if diags.has_errors() {
            unknown_as_null(new_state)
        } else {
            new_state
        },
        private: state.encode(),
        diags,
    }
}

/// A DRBD replica with a disk that is not UpToDate after the apply (still syncing, or
/// Outdated) holds no full copy yet: the warning names the node, so nobody fails over to it.
pub(super) fn warn_not_up_to_date(observed: &[ObservedResource], diags: &mut Diagnostics) {
    for obs in observed {
        let Some(drbd) = &obs.drbd else { continue };
        match drbd.disk_state.as_deref() {
            Some(state) if !drbd.diskless && state != "UpToDate" => diags.warning(
                &AttrPath::attr("replicas"),
                format!("The replica on {} is {state}, not UpToDate", obs.node),
                format!("After this apply the DRBD disk of {} is {state}: it does not hold a full copy yet (a new replica syncs from its peers in the background). Until it is UpToDate, do not fail over to {} and do not remove the other replicas; `terraform refresh` shows its disk_state.", obs.node, obs.node),
            ),
            _ => {}
        }
    }
}

/// Puts the prior passphrase (own or inherited) and its fingerprint back into `state`.
fn keep_prior_passphrase(state: &mut Value, prior: &Value) {
    state.set("passphrase", prior.get("passphrase").clone());
    state.set(
        "passphrase_fingerprint",
        prior.get("passphrase_fingerprint").clone(),
    );
    if let Value::Map(_) = state.get("resource_group") {
        let mut group = state.get("resource_group").clone();
        group.set(
            "passphrase",
            prior.get("resource_group").get("passphrase").clone(),
        );
        state.set("resource_group", group);
    }
}

fn placement_error(
    prior: &Value,
    private: &[u8],
    mut diags: Diagnostics,
    e: crate::controller::place::PlaceError,
) -> Applied {
    let path = match e.field {
        "nodes" => AttrPath::attr("nodes"),
        f => AttrPath::attr("resource_group").then(f),
    };
    diags.error(
        &path,
        format!("Cannot place the resource: {}", e.field),
        e.message,
    );
    fail(prior, private, diags)
}

/// Keeps an existing allocation (adding minors for new volumes), or makes a fresh one.
fn drbd_allocation(
    reserved: &mut allocate::Reserved,
    existing: Option<DrbdAllocation>,
    nodes: &[NodeName],
    infos: &[&NodeInfo],
    volumes: usize,
) -> DrbdAllocation {
    match existing {
        Some(mut alloc) if alloc.node_ids.keys().eq(sorted(nodes).iter()) => {
            if alloc.minors.len() < volumes {
                let more = reserved.minors(infos, &alloc.minors, volumes - alloc.minors.len());
                alloc.minors.extend(more);
            }
            alloc
        }
        _ => DrbdAllocation {
            port: reserved.port(infos),
            minors: reserved.minors(infos, &[], volumes),
            node_ids: node_ids(nodes),
            shared_secret: random_secret(),
            node_minors: Default::default(),
            retired_ids: Default::default(),
        },
    }
}

/// The replicas `prior` state holds, with what its last read saw of their data (a node
/// without a replica entry counts as not UpToDate).
fn held_replicas(prior: &Value) -> Vec<Held> {
    let replicas = prior.get("replicas").as_list().unwrap_or_default();
    prior
        .get("nodes")
        .as_string_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse::<NodeName>().ok())
        .map(|node| {
            let seen = replicas
                .iter()
                .find(|r| r.get("node").as_str() == Some(node.as_str()));
            Held {
                diskless: seen.is_some_and(|r| r.get("diskless").as_bool() == Some(true)),
                up_to_date: seen.is_some_and(|r| r.get("disk_state").as_str() == Some("UpToDate")),
                node,
            }
        })
        .collect()
}

fn sorted(nodes: &[NodeName]) -> Vec<NodeName> {
    let mut v = nodes.to_vec();
    v.sort();
    v
}

/// Tears down every replica; the resource leaves state only when every node succeeded.
async fn delete(cluster: &Cluster, prior: &Value, private: &[u8]) -> Applied {
    let mut diags = Diagnostics::default();
    let Some(name) = prior
        .get("name")
        .as_str()
        .and_then(|n| n.parse::<ResourceName>().ok())
    else {
        return Applied::default();
    };
    let mut nodes: Vec<NodeName> = ["nodes", "diskless_nodes"]
        .iter()
        .flat_map(|attr| prior.get(attr).as_string_list().unwrap_or_default())
        .collect::<Vec<_>>()
        .iter()
        .chain(
            prior
                .get("replicas")
                .as_list()
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.get("node").as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .iter(),
        )
        .filter_map(|n| n.parse().ok())
        .collect();
    nodes.sort();
    nodes.dedup();
    let limit = timeout(prior, "delete");
    // `force_destroy` is the one way past the agents' refusal to tear down a device in use.
    let options = DeleteOptions {
        force: prior.get("force_destroy").as_bool() == Some(true),
        ..DeleteOptions::default()
    };
    let work = cluster.fan_out(&nodes, |c| {
        let name = name.clone();
        let options = options.clone();
        async move {
            let since = progress::deleting(c.node(), &name);
            let result = c.delete(&name, &options).await;
            progress::deleted(c.node(), &name, since, &result);
            result
        }
    });
    let mut left: Vec<NodeName> = Vec::new();
    match tokio::time::timeout(limit, work).await {
        Ok(results) => {
            for (node, r) in results {
                match r {
                    Ok(()) => {}
                    Err(e) if e.agent_error().is_none() => {
                        unreachable_on_delete(&mut diags, &name, &e);
                        left.push(node);
                    }
                    Err(e) => {
                        diags.transport("Delete", &e);
                        left.push(node);
                    }
                }
            }
        }
        Err(_) => diags.error_global(
            format!("delete timed out after {}", human(limit)),
            "The agents did not finish tearing down within timeouts.delete; run destroy again.",
        ),
    }
    if !diags.has_errors() {
        return Applied {
            state: Value::Null,
            private: Vec::new(),
            diags,
        };
    }
    // The resource stays in state; `replicas` keeps only what is left (all of them after a
    // timeout, when nothing says which nodes finished), so a plan shows the rest as gone.
    let mut state = prior.clone();
    if !left.is_empty() {
        let kept: Vec<Value> = prior
            .get("replicas")
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.get("node")
                    .as_str()
                    .is_some_and(|n| left.iter().any(|l| l.as_str() == n))
            })
            .cloned()
            .collect();
        state.set("replicas", Value::List(kept));
    }
    Applied {
        state,
        private: private.to_vec(),
        diags,
    }
}

/// A node whose agent cannot be reached still holds its replica: the destroy fails for it
/// (never reporting deleted what was not), and says the two ways out.
fn unreachable_on_delete(diags: &mut Diagnostics, name: &ResourceName, err: &TransportError) {
    let node = err.node();
    diags.error_global(
        format!("Cannot destroy {name} on node {node}: its agent cannot be reached"),
        format!("{err}. The replica on {node} was not torn down, so {name} stays in state (the replicas on the other nodes are gone). Either bring the agent of {node} back and run the destroy again, or, if {node} is gone for good, drop the resource from state with `terraform state rm` on its address; its storage on {node} is then left as it is."),
    );
}
