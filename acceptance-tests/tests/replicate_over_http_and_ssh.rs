//! User story "replicate over two nodes, one reached over HTTP and one over SSH":
//! an RG with `place_count = 2` and `["DRBD","STORAGE"]`, node `n1` through the agent's HTTP
//! API and node `n2` through a real `sshd` on a loopback port (pinned host key, the agent run
//! as `blockstor-agent stdio`). Both agents render a `.res` that `drbdadm -c FILE dump`
//! accepts and that agree on ports, minors, node ids and addresses. Bringing DRBD up needs the
//! drbd kernel module: where it is missing, apply must stop there with a diagnostic naming the
//! node and the module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use acceptance_tests::agent::{free_loopback_addr, write_config};
use acceptance_tests::drbd_res::{dump, facts, res_files, res_of};
use acceptance_tests::sshd::SshServer;
use acceptance_tests::{
    binaries, host, loops, require, AgentConfig, AgentProcess, Outcome, Requirement, Terraform,
    Workspace,
};

const PROVIDER: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

variable "ssh_port" {
  type = number
}

variable "ssh_private_key" {
  type      = string
  sensitive = true
}

variable "known_hosts" {
  type = string
}

variable "agent_command" {
  type = string
}

provider "blockstor" {
  node "n1" {
    address = "127.0.0.1"
    http {
      endpoint = var.endpoint
      token    = var.token
    }
  }
  node "n2" {
    address = "127.0.0.1"
    ssh {
      host          = "127.0.0.1"
      port          = var.ssh_port
      user          = "root"
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
}

resource "blockstor_resource_group" "replicated" {
  name         = "replicated"
  place_count  = 2
  storage_pool = "files"
  layer_stack  = ["DRBD", "STORAGE"]
}
"#;

/// Two agents (n1 over HTTP, n2 over SSH) and terraform configured for both.
struct TwoNodes {
    n1: AgentProcess,
    n2_dir: PathBuf,
    sshd: SshServer,
    tf: Terraform,
    ws: Workspace,
}

impl TwoNodes {
    fn new(resources: &str) -> Self {
        let ws = Workspace::new();
        ws.write("main.tf", &format!("{PROVIDER}\n{resources}"));
        let n1 = AgentProcess::start(&ws.path().join("n1"), AgentConfig::default());
        let n2_dir = ws.path().join("n2");
        let n2_config = write_config(
            &n2_dir,
            &AgentConfig {
                node_name: "n2".into(),
                ..AgentConfig::default()
            },
            free_loopback_addr(),
        );
        let sshd = SshServer::start(&ws.path().join("sshd"));
        let mut tf = ws.terraform();
        tf.var("endpoint", n1.endpoint())
            .var("token", n1.token())
            .var("ssh_port", sshd.port().to_string())
            .var("ssh_private_key", sshd.client_private_key())
            .var("known_hosts", sshd.known_hosts())
            .var(
                "agent_command",
                format!(
                    "{} stdio --config {}",
                    binaries::agent().display(),
                    n2_config.display()
                ),
            );
        TwoNodes {
            n1,
            n2_dir,
            sshd,
            tf,
            ws,
        }
    }

    fn state_dirs(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("n1", self.n1.state_dir()),
            ("n2", self.n2_dir.join("state")),
        ]
    }

    fn pool_dirs(&self) -> [PathBuf; 2] {
        [self.n1.pool_dir(), self.n2_dir.join("pools/files")]
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        let _ = self.tf.destroy();
        loops::detach_all_under(&self.n2_dir);
        loops::detach_all_under(self.ws.path());
        let _ = &self.sshd;
    }
}

fn needs() -> Vec<Requirement> {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Sshd);
    needs
}

fn drbd_module_loaded() -> bool {
    Path::new("/proc/drbd").exists() || Path::new("/sys/module/drbd").exists()
}

/// Apply either succeeds (drbd module present) or stops at DRBD up with a diagnostic that
/// names the module and a node.
fn check_apply(apply: &Outcome) {
    if drbd_module_loaded() {
        apply.assert_success();
        return;
    }
    apply.assert_failure();
    let text = apply.combined();
    assert!(
        text.contains("drbd kernel module"),
        "apply should stop naming the missing drbd kernel module:\n{apply}"
    );
    assert!(
        text.contains("n1") || text.contains("n2"),
        "the diagnostic should name the node:\n{apply}"
    );
    eprintln!("note: stopped at DRBD up: this kernel has no drbd module (as expected)");
}

#[test]
fn two_replicas_over_http_and_ssh_render_consistent_drbd_config() {
    if !require(&needs()) {
        return;
    }
    let t = TwoNodes::new(
        r#"
resource "blockstor_resource_definition" "pair" {
  name           = "acc5-pair"
  resource_group = blockstor_resource_group.replicated
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#,
    );
    t.tf.init().assert_success();
    t.tf.plan()
        .assert_code(2)
        .assert_contains("blockstor_resource_definition.pair will be created");
    let apply = t.tf.apply();
    check_apply(&apply);

    // Both nodes got a backing volume and a rendered .res.
    for pool in t.pool_dirs() {
        assert_eq!(
            loops::files_under(&pool).len(),
            1,
            "one backing file per node expected in {}:\n{apply}",
            pool.display()
        );
    }
    let [(_, s1), (_, s2)] = t.state_dirs();
    let f1 = facts(&dump(&res_of(&s1, "acc5-pair")));
    let f2 = facts(&dump(&res_of(&s2, "acc5-pair")));
    assert_eq!(
        f1, f2,
        "n1 and n2 disagree on node ids/addresses/ports/minors"
    );
    assert_eq!(
        f1.hosts.keys().cloned().collect::<Vec<_>>(),
        ["n1", "n2"],
        "{f1:?}"
    );
    let ids: BTreeSet<_> = f1.hosts.values().map(|h| h.0.clone()).collect();
    assert_eq!(ids.len(), 2, "node ids must differ: {f1:?}");
    for (host, (_, addr, minors)) in &f1.hosts {
        assert!(
            addr.starts_with("127.0.0.1:"),
            "{host} address {addr} should be 127.0.0.1:<port>"
        );
        assert_eq!(minors.len(), 1, "{host}: one volume, one minor: {f1:?}");
    }
    // Sanity: no leftover loop devices after destroy (best effort; the Drop also cleans).
    drop(t);
}

#[test]
fn twenty_rds_in_one_apply_get_unique_minors_and_ports() {
    if !require(&needs()) {
        return;
    }
    let t = TwoNodes::new(
        r#"
resource "blockstor_resource_definition" "many" {
  count          = 20
  name           = "acc5-many-${count.index}"
  resource_group = blockstor_resource_group.replicated
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#,
    );
    t.tf.init().assert_success();
    let apply = t.tf.apply();
    check_apply(&apply);
    assert!(
        !apply.combined().contains("minor_in_use") && !apply.combined().contains("port_in_use"),
        "an allocation collision was reported:\n{apply}"
    );

    for (node, state_dir) in t.state_dirs() {
        let files = res_files(&state_dir);
        assert_eq!(
            files.len(),
            20,
            "{node}: every RD should have a rendered .res: {files:?}\n{apply}"
        );
        let mut minors = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for file in &files {
            let f = facts(&dump(file));
            let (_, addr, m) = f
                .hosts
                .get(node)
                .unwrap_or_else(|| panic!("{}: no section for {node}", file.display()));
            for minor in m {
                assert!(
                    minors.insert(minor.clone()),
                    "{node}: minor {minor} used twice"
                );
            }
            assert!(
                ports.insert(addr.clone()),
                "{node}: address {addr} used twice"
            );
        }
    }
}
