//! `planned_steps`: at plan time, ask each chosen node's agent which commands the apply will
//! run there (`plan` route, secrets already `<redacted>` by the agent), so a saved plan shows
//! them to its reviewer.
//!
//! Runs only when [`super::plan`] left `planned_steps` unknown, i.e. when the apply will
//! dispatch to the agents: a plan with no changes never calls an agent. When the plan cannot
//! build the same `DesiredResource` the apply will send (nodes placed by count at apply, DRBD
//! numbers not allocated yet) or an agent does not answer, the value stays unknown: the plan
//! still succeeds, with a warning for the agent that failed.

use std::collections::{BTreeMap, BTreeSet};

use blockstor_proto::drbd_stages::DrbdVersion;
use blockstor_proto::wire::{NodeInfo, PlannedSteps};
use blockstor_proto::{Layer, NodeName, StoragePoolName};

use super::private::Private;
use super::request::Request;
use crate::controller::desired::Spec;
use crate::controller::place::choose_pool;
use crate::controller::resolve;
use crate::controller::secret::Passphrases;
use crate::controller::Cluster;
use crate::resources::diag::{AttrPath, Diagnostics};
use crate::transport::TransportError;
use crate::values::Value;

/// Fills in `planned_steps` of `planned` when it is unknown and the steps can be known now.
/// `secrets` are `config`'s passphrases as the plan read them (once per call).
pub async fn fill(
    cluster: &Cluster,
    prior: &Value,
    planned: &mut Value,
    config: &Value,
    secrets: &Passphrases,
    private: &[u8],
    diags: &mut Diagnostics,
) {
    if !planned.get("planned_steps").is_unknown() {
        return;
    }
    let Some(nodes) = planned_nodes(planned) else {
        return; // placement by count happens at apply
    };
    let pool = match planned.get("effective_storage_pool").as_str() {
        Some(p) => p.parse().ok(),
        None => sole_pool(cluster, &nodes, diags).await,
    };
    let diskless = planned_diskless(planned);
    let Some(spec) = pool.and_then(|pool| spec(prior, config, secrets, private, nodes, pool))
    else {
        return;
    };
    let spec = with_diskless(spec, &diskless);
    if prior.is_null() && !holds_nothing(cluster, &spec, diags).await {
        return;
    }
    // A change of the DRBD replica set runs in stages with ids allocated at apply
    // (`membership`): one document per node cannot show it, so the steps stay unknown.
    if let Some(alloc) = &spec.drbd {
        let mut sorted = spec.nodes.clone();
        sorted.sort();
        if !alloc.node_ids.keys().eq(sorted.iter()) {
            let old: BTreeSet<NodeName> = alloc.node_ids.keys().cloned().collect();
            warn_if_a_move_drops_redundancy(cluster, &old, &sorted, diags).await;
            return;
        }
    }
    let results = cluster
        .fan_out(&spec.nodes, |client| {
            let desired = spec.desired_for(client.node(), cluster);
            async move { client.plan(&desired).await }
        })
        .await;
    let mut steps = BTreeMap::new();
    for (node, result) in results {
        match result {
            Ok(planned_steps) => {
                steps.insert(node.as_str().to_owned(), render(&planned_steps));
            }
            Err(e) => {
                unknown_warning(diags, &e);
                return;
            }
        }
    }
    planned.set("planned_steps", Value::Map(steps));
}

/// Whether no chosen agent holds anything of this name, so the steps of a create are those of
/// a create from nothing and cannot change before apply.
///
/// A create whose name the agents still hold is a replacement in progress (`-replace`, taint:
/// Terraform plans the create while the old object exists, destroys it, plans the create again
/// and requires every value the first plan knew), or leftovers; its steps depend on what is
/// there at apply, so they stay unknown. `get` is answered from one list per process.
async fn holds_nothing(cluster: &Cluster, spec: &Spec, diags: &mut Diagnostics) -> bool {
    let name = &spec.name;
    let held = cluster
        .fan_out(&spec.nodes, |client| async move { client.get(name).await })
        .await;
    for (_, result) in held {
        match result {
            Ok(None) => {}
            Ok(Some(_)) => return false,
            Err(e) => {
                unknown_warning(diags, &e);
                return false;
            }
        }
    }
    true
}

/// The planned diskless clients (none when unset or not known yet).
fn planned_diskless(planned: &Value) -> Vec<NodeName> {
    planned
        .get("diskless_nodes")
        .as_string_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `spec` with the diskless clients among its replicas, as the apply builds it.
fn with_diskless(mut spec: Spec, diskless: &[NodeName]) -> Spec {
    for n in diskless {
        if !spec.nodes.contains(n) {
            spec.nodes.push(n.clone());
        }
    }
    spec.diskless = diskless.iter().cloned().collect();
    spec
}

/// DRBD 8.4 holds two replicas, so a move (one node out, one in) removes first: until the
/// new replica has synced, the data has one copy. The plan says so, naming the nodes.
async fn warn_if_a_move_drops_redundancy(
    cluster: &Cluster,
    old: &BTreeSet<NodeName>,
    new: &[NodeName],
    diags: &mut Diagnostics,
) {
    let new: BTreeSet<NodeName> = new.iter().cloned().collect();
    let leaving: Vec<&str> = old.difference(&new).map(NodeName::as_str).collect();
    let joining: Vec<&str> = new.difference(old).map(NodeName::as_str).collect();
    if leaving.is_empty() || joining.is_empty() {
        return;
    }
    let union: Vec<NodeName> = old.union(&new).cloned().collect();
    let mut infos = BTreeMap::new();
    for (node, info) in union
        .iter()
        .zip(futures::future::join_all(union.iter().map(|n| cluster.pools_of(n))).await)
    {
        if let Ok(info) = info {
            infos.insert(node.clone(), info);
        }
    }
    if super::membership::version(&infos) == DrbdVersion::V84 {
        diags.warning(
            &AttrPath::attr("nodes"),
            "Redundancy drops to one copy during this move",
            format!("DRBD 8.4 holds at most two replicas, so {leave} is torn down before {join} joins: until {join} is UpToDate (it syncs from {stay}), the data exists as a single copy on {stay}. Check that {stay} is UpToDate (replicas[].disk_state) and back up first if one copy is too few; on DRBD 9 a move adds first and keeps two copies throughout.", leave = leaving.join(", "), join = joining.join(", "), stay = old.intersection(&new).map(NodeName::as_str).collect::<Vec<_>>().join(", ")),
        );
    }
}

/// The planned nodes, when known.
fn planned_nodes(planned: &Value) -> Option<Vec<NodeName>> {
    planned
        .get("nodes")
        .as_string_list()?
        .iter()
        .map(|n| n.parse().ok())
        .collect()
}

/// The pool the apply will pick when no group names one: the only pool all `nodes` have
/// (the same rule and the same agent answers as the apply's). Each agent is asked once per
/// provider process ([`Cluster::pools_of`]), not once per definition.
async fn sole_pool(
    cluster: &Cluster,
    nodes: &[NodeName],
    diags: &mut Diagnostics,
) -> Option<StoragePoolName> {
    let mut infos: Vec<NodeInfo> = Vec::new();
    let asked = nodes.iter().map(|n| cluster.pools_of(n));
    for result in futures::future::join_all(asked).await {
        match result {
            Ok(info) => infos.push(info),
            Err(e) => {
                unknown_warning(diags, &e);
                return None;
            }
        }
    }
    choose_pool(&infos.iter().collect::<Vec<_>>(), None).ok()
}

fn unknown_warning(diags: &mut Diagnostics, e: &TransportError) {
    diags.warning(
        &AttrPath::attr("planned_steps"),
        "Planned steps unknown",
        format!("planned_steps stays unknown in this plan: {e}. The apply is not affected; check that the agent is reachable to see its steps in the plan."),
    );
}

/// The spec the apply will build ([`Request`], the same builder), when everything it needs is
/// known at plan time.
fn spec(
    prior: &Value,
    config: &Value,
    secrets: &Passphrases,
    private: &[u8],
    nodes: Vec<NodeName>,
    pool: StoragePoolName,
) -> Option<Spec> {
    let eff = resolve::effective(config, secrets);
    let request = Request::of(prior, config, &eff, secrets).ok()?;
    if !request.is_complete() {
        return None;
    }
    let state = Private::decode(private);
    // The apply keeps the DRBD allocation of private state; a new one is made only at apply.
    let drbd = if request.layer_stack.has(Layer::Drbd) {
        Some(state.drbd.clone()?)
    } else {
        None
    };
    Some(request.spec(pool, nodes, state.generation + 1, drbd))
}

/// One display line per step; a list of strings shows well in `terraform plan`.
fn render(steps: &PlannedSteps) -> Value {
    Value::strings(steps.steps.iter().map(|s| command_line(&s.argv)))
}

/// An argv as a shell-quoted line, for reading only: nothing ever runs it through a shell.
///
/// Values the agent generates afresh on every call (the UUID of a new LUKS header) read as
/// `<generated>`: Terraform plans again during apply and requires the same known value.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| match a.strip_prefix("--uuid=") {
            Some(_) => "--uuid=<generated>".to_owned(),
            // A step the agent does itself is named, not a program: `(agent) set-size`.
            None if i == 0 && a.starts_with("(agent) ") => a.clone(),
            None => quote(a),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c);
    if arg == "<redacted>" || (!arg.is_empty() && arg.chars().all(plain)) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_arguments_stay_unquoted() {
        let line = command_line(&argv(&["truncate", "-s", "65536K", "/var/lib/x/db_0.img"]));
        assert_eq!(line, "truncate -s 65536K /var/lib/x/db_0.img");
    }

    #[test]
    fn spaces_and_quotes_are_single_quoted() {
        let line = command_line(&argv(&["echo", "a b", "it's", ""]));
        assert_eq!(line, r"echo 'a b' 'it'\''s' ''");
    }

    #[test]
    fn a_fresh_luks_uuid_reads_as_generated_so_a_replan_shows_the_same_line() {
        let line = command_line(&argv(&["cryptsetup", "luksFormat", "--uuid=1234-abcd"]));
        assert_eq!(line, "cryptsetup luksFormat --uuid=<generated>");
    }

    #[test]
    fn a_step_the_agent_does_itself_reads_by_its_name() {
        let line = command_line(&argv(&["(agent) attach-loop", "/var/lib/x/db 0.img"]));
        assert_eq!(line, "(agent) attach-loop '/var/lib/x/db 0.img'");
    }

    #[test]
    fn the_redaction_marker_reads_as_is() {
        assert_eq!(
            command_line(&argv(&["cryptsetup", "<redacted>"])),
            "cryptsetup <redacted>"
        );
    }
}
