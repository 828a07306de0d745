//! User story "change where my replicas live without losing the data" (issue 18), with the real
//! terraform 1.0.3 and three real agents on loopback (n1, n2, n3 over HTTP). The replica set
//! starts here: three DRBD replicas come up with one consistent `.res` (which `drbdadm -c FILE
//! dump` accepts), exactly one of them starts the initial sync, and destroy leaves no `.res`,
//! volume or record on any node. The in-place changes of `nodes` and `place_count`, the
//! replacement warning of a STORAGE-only node change, `deletion_protection` and the in-use
//! guard with `force_destroy` join this file as the provider and agent gain them.
//!
//! This host's kernel has no DRBD module, so the DRBD tests run their agents with the DRBD
//! stand-in (`acceptance_tests::drbd_standin`, hence "with a stand-in DRBD module" in their
//! names): the `.res` files, their `drbdadm dump`, the volumes and the records are real, the
//! replication is not. The VM tier (tests/vm_real_kernel.rs) runs the real DRBD 8.4.

use std::collections::BTreeSet;
use std::path::PathBuf;

use acceptance_tests::drbd_res::{dump, facts, res_of, ResFacts};
use acceptance_tests::{host, loops, require, AgentConfig, AgentProcess, Terraform, Workspace};

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
