//! User story "change where my replicas live without losing the data" (issue 18), with the real
//! terraform 1.0.3 and three real agents on loopback (n1, n2, n3 over HTTP). The replica set
//! starts here: three DRBD replicas come up with one consistent `.res` (which `drbdadm -c FILE
//! dump` accepts), exactly one of them starts the initial sync, and destroy leaves no `.res`,
//! volume or record on any node. Then the in-place changes of `nodes` ([n1,n2] -> [n1,n2,n3]
//! -> [n1,n3]) and of `place_count` (2 -> 3 -> 2), each planned as an update in place with node
//! ids, port and minors kept; the replacement warning of a STORAGE-only node change;
//! `deletion_protection` stopping `terraform destroy`; and the in-use guard, which only
//! `force_destroy` passes.
//!
//! This host's kernel has no DRBD module, so the DRBD tests run their agents with the DRBD
//! stand-in (`acceptance_tests::drbd_standin`, hence "with a stand-in DRBD module" in their
//! names): the `.res` files, their `drbdadm dump`, the volumes and the records are real, the
//! replication is not. The VM tier (tests/vm_real_kernel.rs) runs the real DRBD 8.4.

use std::collections::BTreeSet;
use std::path::PathBuf;

use acceptance_tests::drbd_res::{dump, facts, res_of, ResFacts};
use acceptance_tests::{
    host, loops, require, AgentConfig, AgentProcess, Outcome, Terraform, Workspace,
};

/// `terraform`, `provider` with nodes n1..n3 (each over HTTP with its own endpoint and token)
/// and the variables they read.
fn provider_hcl(nodes: usize) -> String {
    let mut hcl = String::from(
        r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}
"#,
    );
    for i in 1..=nodes {
        hcl.push_str(&format!(
            r#"
variable "endpoint_n{i}" {{
  type = string
}}
variable "token_n{i}" {{
  type      = string
  sensitive = true
}}
"#
        ));
    }
    hcl.push_str("\nprovider \"blockstor\" {\n");
    for i in 1..=nodes {
        hcl.push_str(&format!(
            r#"  node "n{i}" {{
    address = "127.0.0.{i}"
    http {{
      endpoint = var.endpoint_n{i}
      token    = var.token_n{i}
    }}
  }}
"#
        ));
    }
    hcl.push_str("}\n");
    hcl
}

/// Agents n1..nN on loopback and terraform wired to all of them.
struct Nodes {
    agents: Vec<AgentProcess>,
    tf: Terraform,
    ws: Workspace,
}

impl Nodes {
    fn start(count: usize, drbd_standin: bool) -> Nodes {
        let ws = Workspace::new();
        let agents: Vec<AgentProcess> = (1..=count)
            .map(|i| {
                AgentProcess::start(
                    &ws.path().join(format!("n{i}")),
                    AgentConfig {
                        node_name: format!("n{i}"),
                        drbd_standin,
                        ..AgentConfig::default()
                    },
                )
            })
            .collect();
        let mut tf = ws.terraform();
        for a in &agents {
            let n = a.node_name().to_owned();
            tf.var(&format!("endpoint_{n}"), a.endpoint())
                .var(&format!("token_{n}"), a.token());
        }
        Nodes { agents, tf, ws }
    }

    /// Writes `main.tf`: the provider for every agent plus `resources`.
    fn config(&self, resources: &str) {
        self.ws.write(
            "main.tf",
            &format!("{}\n{resources}", provider_hcl(self.agents.len())),
        );
    }

    fn agent(&self, node: &str) -> &AgentProcess {
        self.agents
            .iter()
            .find(|a| a.node_name() == node)
            .unwrap_or_else(|| panic!("no agent {node}"))
    }

    fn names(&self) -> BTreeSet<String> {
        self.agents
            .iter()
            .map(|a| a.node_name().to_owned())
            .collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = self.tf.destroy();
        loops::detach_all_under(self.ws.path());
    }
}

/// Checks every node of `expected` renders the same `.res` naming exactly `expected`, which
/// `drbdadm dump` accepts, keeping `before`'s node id, address (port) and minors for every host
/// `before` knew; every other node holds no `.res`, no volume and no record. Returns the facts.
fn assert_replicas(
    nodes: &Nodes,
    rd: &str,
    expected: &BTreeSet<String>,
    before: &ResFacts,
) -> ResFacts {
    let mut seen: Option<ResFacts> = None;
    for node in expected {
        let agent = nodes.agent(node);
        let f = facts(&dump(&res_of(&agent.state_dir(), rd)));
        let hosts: BTreeSet<String> = f.hosts.keys().cloned().collect();
        assert_eq!(
            &hosts, expected,
            "{node}'s .res names the wrong peers: {f:?}"
        );
        if let Some(other) = &seen {
            assert_eq!(&f, other, "{node}'s .res disagrees with its peers'");
        }
        for (host, facts_before) in &before.hosts {
            if let Some(now) = f.hosts.get(host) {
                assert_eq!(
                    now, facts_before,
                    "{host}'s node id, address or minors changed (seen from {node})"
                );
            }
        }
        assert_eq!(
            agent.pool_files(rd).len(),
            1,
            "{node} should hold the volume of {rd}"
        );
        seen = Some(f);
    }
    let f = seen.expect("at least one replica");
    let ids: BTreeSet<&String> = f.hosts.values().map(|h| &h.0).collect();
    assert_eq!(ids.len(), f.hosts.len(), "node ids must differ: {f:?}");
    let ports: BTreeSet<&str> = f
        .hosts
        .values()
        .map(|h| h.1.rsplit(':').next().unwrap_or(""))
        .collect();
    assert_eq!(ports.len(), 1, "one port for every replica: {f:?}");
    for node in nodes.names().difference(expected) {
        assert_holds_nothing(nodes.agent(node), rd);
    }
    f
}

/// `agent` has no `.res`, no backing file and no record of `rd`.
fn assert_holds_nothing(agent: &AgentProcess, rd: &str) {
    let node = agent.node_name();
    let res = agent.state_dir().join("drbd.d").join(format!("{rd}.res"));
    assert!(!res.exists(), "{node} still has {}", res.display());
    assert_eq!(
        agent.pool_files(rd),
        Vec::<PathBuf>::new(),
        "{node} still holds a volume of {rd}"
    );
    let (status, body) = agent
        .get(&format!("/v1/resources/{rd}"))
        .expect("GET resource");
    assert_eq!(status, 404, "{node} still has a record of {rd}: {body}");
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A `["DRBD","STORAGE"]` definition; `group` adds to the group object (`, place_count = 2`),
/// `placement` to the definition (`nodes = [...]`).
fn drbd_rd(rd: &str, group: &str, placement: &str) -> String {
    format!(
        r#"
resource "blockstor_resource_definition" "moving" {{
  name           = "{rd}"
  resource_group = {{ name = "{rd}-group", storage_pool = "files", layer_stack = ["DRBD", "STORAGE"]{group} }}
  {placement}
  volume {{
    number = 0
    size   = "64MiB"
  }}
}}
"#
    )
}

#[test]
fn drbd_three_replicas_come_up_and_go_with_a_stand_in_drbd_module() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-three";
    let nodes = Nodes::start(3, true);
    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n2", "n3"]"#));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let all = set(&["n1", "n2", "n3"]);
    assert_replicas(&nodes, rd, &all, &ResFacts::default());
    // Exactly one replica (the lowest node id) started DRBD's initial sync; the others
    // became its sync targets.
    let forced: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| {
            nodes
                .agent(n)
                .drbd_standin()
                .expect("stand-in")
                .calls()
                .iter()
                .any(|c| c.contains("primary --force"))
        })
        .collect();
    assert_eq!(forced.len(), 1, "initial sync started on {forced:?}");
    for node in &all {
        assert!(
            nodes.agent(node).drbd_standin().unwrap().is_up(rd),
            "{node} is not up"
        );
    }
    nodes.tf.plan().assert_code(0);
    nodes.tf.destroy().assert_success();
    for node in &all {
        assert_holds_nothing(nodes.agent(node), rd);
        assert!(
            !nodes.agent(node).drbd_standin().unwrap().is_up(rd),
            "{node} is still up"
        );
    }
}

/// The plan of an in-place replica change: one definition changes, nothing is destroyed or
/// replaced.
fn assert_planned_in_place(plan: &Outcome) {
    plan.assert_code(2)
        .assert_contains("blockstor_resource_definition.moving will be updated in-place")
        .assert_contains("0 to add, 1 to change, 0 to destroy");
    assert!(
        !plan.combined().contains("must be replaced"),
        "a replica change must not replace the definition:\n{plan}"
    );
}

/// No node that joined a running resource was made the initial-sync source: `primary --force`
/// ran on at most the node that created it.
fn assert_forced_only_on(nodes: &Nodes, creator: &str) {
    for agent in &nodes.agents {
        let forced = agent
            .drbd_standin()
            .expect("stand-in")
            .calls()
            .iter()
            .any(|c| c.contains("primary --force"));
        if agent.node_name() != creator {
            assert!(
                !forced,
                "{} joined with `primary --force`: it would overwrite its peers' data",
                agent.node_name()
            );
        }
    }
}

#[test]
fn drbd_nodes_change_in_place_n1_n2_then_n1_n2_n3_then_n1_n3_with_a_stand_in_drbd_module() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-move";
    let nodes = Nodes::start(3, true);
    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n2"]"#));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let two = assert_replicas(&nodes, rd, &set(&["n1", "n2"]), &ResFacts::default());

    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n2", "n3"]"#));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    let three = assert_replicas(&nodes, rd, &set(&["n1", "n2", "n3"]), &two);
    assert_forced_only_on(&nodes, "n1");
    nodes.tf.plan().assert_code(0);

    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n3"]"#));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    assert_replicas(&nodes, rd, &set(&["n1", "n3"]), &three);
    assert!(
        !nodes.agent("n2").drbd_standin().unwrap().is_up(rd),
        "n2 left the replica set but is still up"
    );
    nodes.tf.plan().assert_code(0);
    let state = nodes
        .tf
        .state_resource("blockstor_resource_definition.moving")
        .expect("in state");
    let replicas: BTreeSet<String> = state["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["node"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(replicas, set(&["n1", "n3"]), "state: {state}");
}

#[test]
fn drbd_place_count_two_three_two_changes_in_place_with_a_stand_in_drbd_module() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-count";
    let nodes = Nodes::start(3, true);
    nodes.config(&drbd_rd(rd, ", place_count = 2", ""));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let placed = |nodes: &Nodes| -> BTreeSet<String> {
        let state = nodes
            .tf
            .state_resource("blockstor_resource_definition.moving")
            .expect("in state");
        state["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let first = placed(&nodes);
    assert_eq!(first.len(), 2, "place_count 2 placed {first:?}");
    let two = assert_replicas(&nodes, rd, &first, &ResFacts::default());

    nodes.config(&drbd_rd(rd, ", place_count = 3", ""));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    let all = placed(&nodes);
    assert_eq!(all, nodes.names(), "place_count 3 on three nodes");
    let three = assert_replicas(&nodes, rd, &all, &two);
    nodes.tf.plan().assert_code(0);

    nodes.config(&drbd_rd(rd, ", place_count = 2", ""));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    let last = placed(&nodes);
    assert_eq!(last.len(), 2, "place_count 2 kept {last:?}");
    assert_replicas(&nodes, rd, &last, &three);
    nodes.tf.plan().assert_code(0);
}

#[test]
fn storage_only_node_change_plans_a_replacement_that_warns_whose_data_goes() {
    if !require(host::USER_SEAT) {
        return;
    }
    let nodes = Nodes::start(2, false);
    nodes.config(&local_rd_on("acc-local", "n1", ""));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let before = nodes.agent("n1").pool_files("acc-local");
    assert_eq!(before.len(), 1, "n1 holds the volume");

    nodes.config(&local_rd_on("acc-local", "n2", ""));
    let plan = nodes.tf.plan();
    plan.assert_code(2)
        .assert_contains("must be replaced")
        .assert_contains("1 to add, 0 to change, 1 to destroy");
    let warnings = plan.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("destroys its data on n1") && w.contains("no DRBD")),
        "the replacement must warn that n1's data is destroyed: {warnings:?}\n{plan}"
    );
    // The plan touched nothing.
    assert_eq!(nodes.agent("n1").pool_files("acc-local"), before);
}

/// `nodes = ["n1"]`, a STORAGE-only definition with `extra` attributes.
fn local_rd(rd: &str, extra: &str) -> String {
    local_rd_on(rd, "n1", extra)
}

/// A STORAGE-only definition on `node` with `extra` attributes.
fn local_rd_on(rd: &str, node: &str, extra: &str) -> String {
    format!(
        r#"
resource "blockstor_resource_definition" "local" {{
  name           = "{rd}"
  resource_group = {{ name = "{rd}-group", storage_pool = "files" }}
  layer_stack    = ["STORAGE"]
  nodes          = ["{node}"]
  {extra}
  volume {{
    number = 0
    size   = "64MiB"
  }}
}}
"#
    )
}

#[test]
fn deletion_protection_stops_terraform_destroy_and_touches_nothing() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-protected";
    let nodes = Nodes::start(1, false);
    nodes.config(&local_rd(rd, "deletion_protection = true"));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let n1 = nodes.agent("n1");
    let files = n1.pool_files(rd);
    assert_eq!(files.len(), 1);
    let (_, record_before) = n1.get(&format!("/v1/resources/{rd}")).expect("GET");

    let destroy = nodes.tf.destroy();
    destroy
        .assert_failure()
        .assert_contains("deletion_protection = true")
        .assert_contains("nothing was touched");
    assert_eq!(n1.pool_files(rd), files, "the volume must stay");
    let (status, record_after) = n1.get(&format!("/v1/resources/{rd}")).expect("GET");
    assert_eq!(status, 200, "the record must stay: {record_after}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&record_after).unwrap()["generation"],
        serde_json::from_str::<serde_json::Value>(&record_before).unwrap()["generation"],
        "nothing may be applied by a refused destroy"
    );
    assert!(
        nodes
            .tf
            .state_resource("blockstor_resource_definition.local")
            .is_some(),
        "the definition must stay in state"
    );

    // Turning it off is an ordinary in-place change; then destroy goes through.
    nodes.config(&local_rd(rd, "deletion_protection = false"));
    nodes.tf.apply().assert_success();
    nodes.tf.destroy().assert_success();
    assert_holds_nothing(n1, rd);
}

#[test]
fn a_storage_volume_held_open_is_not_torn_down_until_force_destroy() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-in-use";
    let nodes = Nodes::start(1, false);
    nodes.config(&local_rd(rd, ""));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let n1 = nodes.agent("n1");
    let state = nodes
        .tf
        .state_resource("blockstor_resource_definition.local")
        .expect("in state");
    let device = state["replicas"][0]["device_path"]
        .as_str()
        .expect("device_path")
        .to_owned();
    // This test process is the device's user, as a database holding it open would be.
    let holder = std::fs::File::open(&device).expect("open the device");

    let destroy = nodes.tf.destroy();
    destroy
        .assert_failure()
        .assert_contains(&device)
        .assert_contains("n1")
        .assert_contains("force_destroy");
    assert_eq!(n1.pool_files(rd).len(), 1, "a device in use must not go");
    let (status, _) = n1.get(&format!("/v1/resources/{rd}")).expect("GET");
    assert_eq!(status, 200, "its record must stay");

    nodes.config(&local_rd(rd, "force_destroy = true"));
    nodes.tf.apply().assert_success();
    nodes.tf.destroy().assert_success();
    assert_holds_nothing(n1, rd);
    drop(holder);
}

#[test]
fn a_diskless_client_joins_and_leaves_in_place_with_a_stand_in_drbd_module() {
    if !require(host::USER_SEAT) {
        return;
    }
    let rd = "acc-client";
    let nodes = Nodes::start(3, true);
    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n2"]"#));
    nodes.tf.init().assert_success();
    nodes.tf.apply().assert_success();
    let two = assert_replicas(&nodes, rd, &set(&["n1", "n2"]), &ResFacts::default());

    nodes.config(&drbd_rd(
        rd,
        "",
        r#"nodes = ["n1", "n2"]
  diskless_nodes = ["n3"]"#,
    ));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    let all = set(&["n1", "n2", "n3"]);
    let mut seen: Option<ResFacts> = None;
    for node in &all {
        let text = dump(&res_of(&nodes.agent(node).state_dir(), rd));
        let f = facts(&text);
        assert_eq!(
            f.hosts.keys().cloned().collect::<BTreeSet<_>>(),
            all,
            "{node}: {f:?}"
        );
        for (host, before) in &two.hosts {
            assert_eq!(&f.hosts[host], before, "{host} changed, seen from {node}");
        }
        if let Some(other) = &seen {
            assert_eq!(&f, other, "{node}'s .res disagrees with its peers'");
        }
        seen = Some(f);
        assert!(
            section_of(&text, "n3").contains("disk none;"),
            "{node} must render n3 without a disk:\n{text}"
        );
    }
    assert_eq!(
        nodes.agent("n3").pool_files(rd),
        Vec::<PathBuf>::new(),
        "a diskless client holds no volume"
    );
    assert!(nodes.agent("n3").drbd_standin().unwrap().is_up(rd));
    let state = nodes
        .tf
        .state_resource("blockstor_resource_definition.moving")
        .expect("in state");
    let client = state["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .find(|r| r["node"] == "n3")
        .unwrap_or_else(|| panic!("no replica on n3: {state}"))
        .clone();
    assert_eq!(client["diskless"], true, "{client}");
    assert_eq!(state["nodes"], serde_json::json!(["n1", "n2"]));
    // A diskless client is no drift: refresh reads it and nothing is left to do.
    nodes.tf.plan().assert_code(0);

    nodes.config(&drbd_rd(rd, "", r#"nodes = ["n1", "n2"]"#));
    assert_planned_in_place(&nodes.tf.plan());
    nodes.tf.apply().assert_success();
    assert_replicas(&nodes, rd, &set(&["n1", "n2"]), &two);
    nodes.tf.plan().assert_code(0);
}

/// The `on <host> { … }` section of a `drbdadm dump`, whitespace folded to single spaces.
fn section_of(dump: &str, host: &str) -> String {
    let lines: Vec<&str> = dump
        .lines()
        .map(str::trim)
        .skip_while(|l| !(l.starts_with("on ") && l.trim_matches(['{', ' ']).ends_with(host)))
        .skip(1)
        .take_while(|l| !l.starts_with("on ") && !l.starts_with("connection"))
        .collect();
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
