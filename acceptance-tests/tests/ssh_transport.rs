//! The same `["STORAGE"]` lifecycle with the node reached over SSH instead of HTTP: a private
//! sshd on a loopback port, a pinned host key (known_hosts), and `blockstor-agent stdio` as the
//! remote command, so no agent port is open at all.

use acceptance_tests::agent::{free_loopback_addr, write_config, AgentProcess};
use acceptance_tests::sshd::SshServer;
use acceptance_tests::{binaries, host, loops, require, AgentConfig, Requirement, Workspace};

const CONFIG: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
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

resource "blockstor_resource_definition" "plain" {
  name        = "acc-ssh"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn storage_rd_over_ssh_apply_replan_no_changes_destroy() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Sshd);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", CONFIG);
    let agent_dir = ws.path().join("agent");
    let agent_config = write_config(&agent_dir, &AgentConfig::default(), free_loopback_addr());
    let pool_dir = agent_dir.join("pools/files");
    let sshd = SshServer::start(&ws.path().join("sshd"));

    let mut tf = ws.terraform();
    tf.var("ssh_port", sshd.port().to_string())
        .var("ssh_private_key", sshd.client_private_key())
        .var("known_hosts", sshd.known_hosts())
        .var(
            "agent_command",
            format!(
                "{} stdio --config {}",
                binaries::agent().display(),
                agent_config.display()
            ),
        );

    tf.init().assert_success();
    tf.plan().assert_code(2);
    let apply = tf.apply();
    assert!(
        apply.status.success(),
        "apply over SSH failed:\n{apply}\n--- sshd log ---\n{}",
        sshd.log()
    );
    assert_eq!(
        loops::attached_under(&pool_dir).len(),
        1,
        "one loop device expected after apply over SSH"
    );
    tf.plan().assert_code(0).assert_contains("No changes.");
    tf.destroy().assert_success();
    assert!(
        loops::attached_under(&pool_dir).is_empty(),
        "destroy over SSH left a loop device attached"
    );
    assert!(
        loops::files_under(&pool_dir).is_empty(),
        "destroy over SSH left a backing file"
    );
}

#[test]
fn unknown_ssh_host_key_is_refused() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Sshd);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", CONFIG);
    let agent_dir = ws.path().join("agent");
    let agent_config = write_config(&agent_dir, &AgentConfig::default(), free_loopback_addr());
    let sshd = SshServer::start(&ws.path().join("sshd"));
    // A known_hosts entry for a different key: the provider must not connect.
    let other = SshServer::start(&ws.path().join("other-sshd"));
    let wrong = other.known_hosts().replace(
        &format!(":{}]", other.port()),
        &format!(":{}]", sshd.port()),
    );

    let mut tf = ws.terraform();
    tf.var("ssh_port", sshd.port().to_string())
        .var("ssh_private_key", sshd.client_private_key())
        .var("known_hosts", wrong)
        .var(
            "agent_command",
            format!(
                "{} stdio --config {}",
                binaries::agent().display(),
                agent_config.display()
            ),
        );
    tf.init().assert_success();
    let apply = tf.apply();
    apply.assert_failure();
    let text = apply.combined();
    assert!(
        text.contains("known_hosts") && text.contains("SHA256:"),
        "the error should name known_hosts and the offered key's fingerprint:\n{apply}"
    );
    assert!(
        loops::files_under(&agent_dir.join("pools/files")).is_empty(),
        "nothing may be created through an unverified host"
    );
}

/// Issue 16, defect 11: the node runs the agent as its service (`serve`) and is also reached
/// over SSH (`stdio`, the same config). Before, every SSH request waited (up to 30 min, without
/// a word) for the store the service holds; now `stdio` hands it to the service over its local
/// socket. The whole lifecycle runs over SSH, and the service sees what SSH built.
#[test]
fn storage_rd_over_ssh_while_the_agent_service_runs_on_the_same_config() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Sshd);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", CONFIG);
    let agent_dir = ws.path().join("agent");
    let service = AgentProcess::start(&agent_dir, AgentConfig::default());
    let pool_dir = service.pool_dir();
    let sshd = SshServer::start(&ws.path().join("sshd"));

    let mut tf = ws.terraform();
    tf.var("ssh_port", sshd.port().to_string())
        .var("ssh_private_key", sshd.client_private_key())
        .var("known_hosts", sshd.known_hosts())
        .var(
            "agent_command",
            format!(
                "{} stdio --config {}",
                binaries::agent().display(),
                agent_dir.join("agent.toml").display()
            ),
        );

    tf.init().assert_success();
    let started = std::time::Instant::now();
    let apply = tf.apply();
    assert!(
        apply.status.success(),
        "apply over SSH beside the service failed:\n{apply}\n--- agent log ---\n{}",
        service.log()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "apply took {:?}: stdio waited for the service's store",
        started.elapsed()
    );
    assert_eq!(loops::attached_under(&pool_dir).len(), 1);
    let (status, body) = service.get("/v1/resources/acc-ssh").unwrap();
    assert_eq!(
        status, 200,
        "the service answers for what SSH built: {body}"
    );
    tf.plan().assert_code(0).assert_contains("No changes.");
    tf.destroy().assert_success();
    assert!(loops::attached_under(&pool_dir).is_empty());
    assert!(loops::files_under(&pool_dir).is_empty());
}
