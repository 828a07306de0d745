//! User story "never talk to an impostor node over SSH": a host key that does not
//! match the pinned one is refused with an error naming the node and the offered key's
//! fingerprint; an `ssh` block without `known_hosts`/`host_key` is a configuration error at plan.

use std::path::Path;
use std::process::Command;

use acceptance_tests::agent::{free_loopback_addr, write_config};
use acceptance_tests::sshd::SshServer;
use acceptance_tests::{binaries, host, loops, require, AgentConfig, Requirement, Workspace};

fn config(known_hosts: bool) -> String {
    let pin = if known_hosts {
        "known_hosts   = var.known_hosts"
    } else {
        ""
    };
    format!(
        r#"terraform {{
  required_providers {{
    blockstor = {{ source = "cozystack/blockstor" }}
  }}
}}

variable "ssh_port" {{
  type = number
}}

variable "ssh_private_key" {{
  type      = string
  sensitive = true
}}

variable "known_hosts" {{
  type    = string
  default = ""
}}

variable "agent_command" {{
  type = string
}}

provider "blockstor" {{
  node "edge7" {{
    address = "127.0.0.1"
    ssh {{
      host          = "127.0.0.1"
      port          = var.ssh_port
      user          = "root"
      private_key   = var.ssh_private_key
      {pin}
      agent_command = var.agent_command
    }}
  }}
}}

resource "blockstor_resource_definition" "pinned" {{
  name        = "acc5-pinned"
  layer_stack = ["STORAGE"]
  nodes       = ["edge7"]
  volume {{
    number = 0
    size   = "64MiB"
  }}
}}
"#
    )
}

fn needs() -> Vec<Requirement> {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Sshd);
    needs
}

/// `SHA256:…` of a public key file, as `ssh-keygen -lf` prints it.
fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("run ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

#[test]
fn wrong_host_key_is_refused_naming_node_and_fingerprint() {
    if !require(&needs()) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", &config(true));
    let agent_dir = ws.path().join("agent");
    let agent_config = write_config(
        &agent_dir,
        &AgentConfig {
            node_name: "edge7".into(),
            ..AgentConfig::default()
        },
        free_loopback_addr(),
    );
    let sshd = SshServer::start(&ws.path().join("sshd"));
    let impostor = SshServer::start(&ws.path().join("impostor"));
    // Pin the impostor's key for the real server's port: the offered key will not match.
    let wrong = impostor.known_hosts().replace(
        &format!(":{}]", impostor.port()),
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
    // With `nodes` given, plan needs no connection; apply is the first to connect.
    let apply = tf.apply();
    apply.assert_failure();
    let text = apply.combined();
    assert!(
        text.contains("edge7"),
        "the error should name the node:\n{apply}"
    );
    let offered = fingerprint(&ws.path().join("sshd/host_ed25519.pub"));
    assert!(
        text.contains(&offered),
        "the error should show the offered key's fingerprint {offered}:\n{apply}"
    );
    assert!(
        loops::files_under(&agent_dir.join("pools/files")).is_empty(),
        "nothing may be created through an unverified host"
    );
}

#[test]
fn ssh_without_known_hosts_is_a_config_error_at_plan() {
    if !require(&needs()) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", &config(false));
    let sshd = SshServer::start(&ws.path().join("sshd"));
    let mut tf = ws.terraform();
    tf.var("ssh_port", sshd.port().to_string())
        .var("ssh_private_key", sshd.client_private_key())
        .var("agent_command", "blockstor-agent stdio");
    tf.init().assert_success();
    let plan = tf.plan();
    plan.assert_code(1);
    let text = plan.combined();
    assert!(
        text.contains("known_hosts") && text.contains("host_key"),
        "the error should say to set known_hosts or host_key:\n{plan}"
    );
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "no SSH session may be opened without a pinned host key:\n{}",
        sshd.log()
    );
}
