//! ReadResource (refresh, with drift) and ImportResourceState for a definition.

use blockstor_proto::wire::{ObservedResource, Origin};
use blockstor_proto::{NodeName, ResourceName, Size};

use super::private::Private;
use super::state::replica;
use crate::controller::desired::{random_secret, DrbdAllocation};
use crate::controller::Cluster;
use crate::resources::diag::{AttrPath, Diagnostics};
use crate::transport::TransportError;
use crate::values::Value;

/// Refreshes `state` from every replica's agent. A missing replica drops out of `replicas`
/// and a changed size shows in `volume`, so the next plan converges; when no node has the
/// resource any more, the state becomes null (Terraform plans a create).
///
/// A node whose agent cannot be read (down, unreachable, or answering an error) keeps its
/// replica's last known state, with a warning naming the node: one node down must not block
/// every plan and destroy. Only what was read counts as drift, and the resource is never
/// reported gone while some node was not asked.
pub async fn read(cluster: &Cluster, state: &Value) -> (Value, Diagnostics) {
    let mut diags = Diagnostics::default();
    let Some(name) = state
        .get("name")
        .as_str()
        .and_then(|n| n.parse::<ResourceName>().ok())
    else {
        return (state.clone(), diags);
    };
    // Diskful replicas and diskless clients alike.
    let mut nodes: Vec<NodeName> = ["nodes", "diskless_nodes"]
        .iter()
        .flat_map(|attr| state.get(attr).as_string_list().unwrap_or_default())
        .filter_map(|n| n.parse().ok())
        .collect();
    nodes.sort();
    nodes.dedup();
    let results = cluster
        .fan_out(&nodes, |c| {
            let name = name.clone();
            async move { c.get(&name).await }
        })
        .await;
    let mut observed = Vec::new();
    let mut unread: Vec<NodeName> = Vec::new();
    for (node, r) in results {
        match r {
            Ok(Some(obs)) => observed.push(obs),
            Ok(None) => {}
            Err(e) => {
                warn_unread(&mut diags, &name, &e);
                unread.push(node);
            }
        }
    }
    if observed.is_empty() && !nodes.is_empty() && unread.is_empty() {
        return (Value::Null, diags);
    }
    let mut new_state = state.clone();
    // A replica whose volumes are not all present is missing too, and so is one whose top
    // device is not up (no device_path: LUKS closed or DRBD down, e.g. after the node
    // rebooted): the next plan converges it instead of reporting nothing to do.
    observed.retain(|obs| obs.volumes.iter().all(|o| o.device_path.is_some()));
    observed.retain(|obs| {
        state
            .get("volume")
            .as_list()
            .unwrap_or_default()
            .iter()
            .all(|v| {
                let n = v.get("number").as_i64();
                // A diskless client has no backing volume of its own to size.
                let client = obs.drbd.as_ref().is_some_and(|d| d.diskless);
                obs.volumes
                    .iter()
                    .any(|o| Some(i64::from(o.number)) == n && (client || o.size_kib.is_some()))
            })
    });
    let mut replicas: Vec<Value> = observed.iter().map(replica).collect();
    // The unread nodes' replicas as state last recorded them (none if it recorded none).
    replicas.extend(
        state
            .get("replicas")
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.get("node")
                    .as_str()
                    .is_some_and(|n| unread.iter().any(|u| u.as_str() == n))
            })
            .cloned(),
    );
    replicas.sort_by(|a, b| a.get("node").as_str().cmp(&b.get("node").as_str()));
    new_state.set("replicas", Value::List(replicas));
    if let Some(first) = observed.first() {
        let observed_stack = Value::strings(first.layer_stack.names());
        if state
            .get("effective_layer_stack")
            .as_string_list()
            .is_some()
        {
            new_state.set("effective_layer_stack", observed_stack);
        }
    }
    new_state.set("volume", drifted_volumes(state.get("volume"), &observed));
    (new_state, diags)
}

/// The warning for a replica refresh could not read: the node, the transport error (which
/// never carries a secret), and what follows from it.
fn warn_unread(diags: &mut Diagnostics, name: &ResourceName, err: &TransportError) {
    let node = err.node();
    let why = match err.agent_error() {
        Some(agent) => format!(
            "the agent of node {node} answered {}: {}",
            agent.code, agent.message
        ),
        None => format!("cannot reach the agent of node {node}: {err}"),
    };
    diags.warning(
        &AttrPath::attr("replicas"),
        format!("Refresh of {name} skipped node {node}: its last known state is kept"),
        format!("{why}. The replica on {node} was not read, so this plan uses what state recorded for it and cannot see drift there. The other nodes were refreshed. Bring the agent back (check that it runs and that the provider's `node \"{node}\"` block points at it) to refresh it; an apply or destroy that needs {node} fails until then."),
    );
}

/// Volume sizes as observed: a size that differs from state is written back as the observed
/// size, so the plan shows it (and refuses a shrink, grows a smaller device).
fn drifted_volumes(volumes: &Value, observed: &[ObservedResource]) -> Value {
    let Some(items) = volumes.as_list() else {
        return volumes.clone();
    };
    Value::List(
        items
            .iter()
            .map(|v| {
                let mut v = v.clone();
                let want = v
                    .get("size")
                    .as_str()
                    .and_then(|s| s.parse::<Size>().ok())
                    .map(Size::kib);
                let n = v.get("number").as_i64();
                let seen = observed
                    .iter()
                    .flat_map(|o| o.volumes.iter())
                    .filter(|o| Some(i64::from(o.number)) == n)
                    .filter_map(|o| o.size_kib)
                    .find(|kib| Some(*kib) != want);
                if let Some(kib) = seen {
                    v.set("size", Value::string(size_text(kib)));
                }
                v
            })
            .collect(),
    )
}

fn size_text(kib: u64) -> String {
    match Size::from_kib(kib) {
        Ok(s) if s.kib() == kib => s.to_string(),
        _ => kib.to_string(),
    }
}

/// The pool backing an imported definition, when it cannot be another: every node holding a
/// replica has exactly one pool, and it has the same name everywhere. The agents do not report
/// a resource's pool, so with several pools it stays null and the next apply records it.
async fn sole_pool(cluster: &Cluster, observed: &[ObservedResource]) -> Option<String> {
    let nodes: Vec<NodeName> = observed.iter().map(|o| o.node.clone()).collect();
    let infos = cluster
        .fan_out(&nodes, |c| async move { c.node_info().await })
        .await;
    let mut pool: Option<String> = None;
    for (_, info) in infos {
        let info = info.ok()?;
        let [only] = info.pools.as_slice() else {
            return None;
        };
        match &pool {
            Some(p) if p != only.name.as_str() => return None,
            _ => pool = Some(only.name.as_str().to_owned()),
        }
    }
    pool
}

/// `terraform import blockstor_resource_definition.x NAME`: state from what the agents have.
/// The passphrase is not readable: it stays null until the configuration sets it, and the
/// next apply verifies it against the LUKS header.
pub async fn import(cluster: &Cluster, id: &str) -> (Value, Vec<u8>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let name = match id.parse::<ResourceName>() {
        Ok(n) => n,
        Err(e) => {
            diags.error(
                &AttrPath::attr("name"),
                "Invalid import id",
                format!("{e}. Import with the resource definition's name."),
            );
            return (Value::Null, Vec::new(), diags);
        }
    };
    let results = cluster
        .fan_out(&cluster.names(), |c| {
            let name = name.clone();
            async move { c.get(&name).await }
        })
        .await;
    let mut observed = Vec::new();
    for (_, r) in results {
        match r {
            Ok(Some(obs)) => observed.push(obs),
            Ok(None) => {}
            Err(e) => diags.transport("Import", &e),
        }
    }
    if diags.has_errors() {
        return (Value::Null, Vec::new(), diags);
    }
    let Some(first) = observed.first().cloned() else {
        diags.error_global(
            format!("Cannot import {name}: no node has it"),
            format!("None of the configured nodes ({}) reports a resource named {name}. Check the name and the provider's node blocks.", cluster.names().iter().map(NodeName::as_str).collect::<Vec<_>>().join(", ")),
        );
        return (Value::Null, Vec::new(), diags);
    };
    observed.sort_by(|a, b| a.node.cmp(&b.node));
    if observed.iter().any(|o| o.origin == Origin::Linstor) {
        linstor_warning(&mut diags, &name, &observed);
    }
    // Diskless clients (DRBD) go to `diskless_nodes`; sizes come from a replica with a disk.
    let is_client = |o: &&ObservedResource| o.drbd.as_ref().is_some_and(|d| d.diskless);
    let nodes: Vec<&str> = observed
        .iter()
        .filter(|o| !is_client(o))
        .map(|o| o.node.as_str())
        .collect();
    let clients: Vec<&str> = observed
        .iter()
        .filter(is_client)
        .map(|o| o.node.as_str())
        .collect();
    let sized = observed.iter().find(|o| !is_client(o)).unwrap_or(&first);
    let mut volumes = sized.volumes.clone();
    volumes.sort_by_key(|v| v.number);
    let volume = Value::List(
        volumes
            .iter()
            .map(|v| {
                Value::object([
                    ("number", Value::int(i64::from(v.number))),
                    (
                        "size",
                        Value::string(v.size_kib.map_or("0".to_owned(), size_text)),
                    ),
                ])
            })
            .collect(),
    );
    let diskful: Vec<ObservedResource> =
        observed.iter().filter(|o| !is_client(o)).cloned().collect();
    let pool = sole_pool(cluster, &diskful).await;
    let state = Value::object([
        ("id", Value::string(name.as_str())),
        ("name", Value::string(name.as_str())),
        // What the agents built; a configuration that writes the same stack (or pool) plans
        // no changes after the import.
        ("layer_stack", Value::strings(first.layer_stack.names())),
        (
            "effective_storage_pool",
            pool.map_or(Value::Null, Value::String),
        ),
        ("nodes", Value::strings(nodes.iter())),
        (
            "diskless_nodes",
            match clients.is_empty() {
                true => Value::Null,
                false => Value::strings(clients.iter()),
            },
        ),
        ("volume", volume),
        (
            "effective_layer_stack",
            Value::strings(first.layer_stack.names()),
        ),
        ("effective_place_count", Value::int(nodes.len() as i64)),
        (
            "replicas",
            Value::List(observed.iter().map(replica).collect()),
        ),
    ]);
    let private = Private {
        generation: observed
            .iter()
            .map(|o| o.generation)
            .max()
            .unwrap_or_default(),
        drbd: first.drbd.as_ref().map(|d| DrbdAllocation {
            port: d.port,
            minors: d.minors.clone(),
            node_ids: observed
                .iter()
                .filter_map(|o| Some((o.node.clone(), o.drbd.as_ref()?.node_id)))
                .collect(),
            // The agents never reveal the secret; a new one is set on the next apply.
            shared_secret: random_secret(),
            // A node whose minors differ keeps its own: an update never renumbers a device.
            node_minors: observed
                .iter()
                .filter_map(|o| Some((o.node.clone(), o.drbd.as_ref()?.minors.clone())))
                .filter(|(_, m)| *m != d.minors)
                .collect(),
            retired_ids: Default::default(),
        }),
    };
    (state, private.encode(), diags)
}

/// Import of a chain LINSTOR built: what adoption will and will not do, before any apply.
fn linstor_warning(diags: &mut Diagnostics, name: &ResourceName, observed: &[ObservedResource]) {
    let nodes: Vec<&str> = observed
        .iter()
        .filter(|o| o.origin == Origin::Linstor)
        .map(|o| o.node.as_str())
        .collect();
    let stack = observed
        .first()
        .map(|o| o.layer_stack.names().join(", "))
        .unwrap_or_default();
    diags.warning(
        &AttrPath::attr("name"),
        format!("{name} was built by LINSTOR"),
        format!(
            "Nodes {} hold LINSTOR's chain of {name} ({stack}); the import only read it, with \
             LINSTOR's DRBD node ids, minors and port. Run terraform plan to see what apply \
             would change: apply never reformats LUKS, never recreates DRBD metadata and never \
             shrinks a volume. LUKS: LINSTOR opens the header with a random per-volume key, \
             not with its master passphrase, so add the passphrase you configure to a free \
             keyslot on each node first (cryptsetup luksAddKey); apply verifies it and refuses \
             with luks_passphrase_mismatch otherwise. DRBD: apply refuses \
             (linstor_drbd_active) while LINSTOR's .res file for {name} is still on a node; \
             stop the LINSTOR satellite and move the file away first.",
            nodes.join(", ")
        ),
    );
}
