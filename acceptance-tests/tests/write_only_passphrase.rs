//! `passphrase_wo` on Terraform 1.0.3: a write-only attribute needs
//! Terraform ≥ 1.11 (older clients would store its value in clear), so `terraform validate`
//! and `terraform plan` refuse it with an error that names the attribute and the ways that do
//! work (`passphrase_file`, `passphrase_env`), over protocol 6 and 5 alike; nothing is stored.
//! A group refuses `passphrase_wo` with any Terraform: no definition could inherit it.

use acceptance_tests::{require, Requirement, Workspace, PROVIDER_HCL};

const SECRET: &str = "write-only secret that must never be stored";

const RESOURCES: &str = r#"
variable "pw" {
  type      = string
  sensitive = true
}

resource "blockstor_resource_definition" "wo" {
  name          = "acc-wo"
  layer_stack   = ["LUKS", "STORAGE"]
  nodes         = ["n1"]
  passphrase_wo = var.pw
  volume {
    number = 0
    size   = "64MiB"
  }
}

resource "blockstor_resource_group" "wo" {
  name          = "acc-wo-group"
  passphrase_wo = var.pw
}
"#;

fn refused(protocol: Option<&str>) {
    let ws = Workspace::new();
    ws.write("main.tf", &format!("{PROVIDER_HCL}\n{RESOURCES}"));
    let mut tf = ws.terraform();
    tf.var("endpoint", "http://127.0.0.1:9")
        .var("token", "not-used-validate-fails-first")
        .var("pw", SECRET);
    if let Some(p) = protocol {
        tf.env("BLOCKSTOR_PROTOCOL_VERSIONS", p);
    }
    tf.init().assert_success();
    for outcome in [tf.run(&["validate", "-no-color"]), tf.plan()] {
        outcome
            .assert_failure()
            .assert_contains("passphrase_wo needs Terraform 1.11 or later")
            .assert_contains("passphrase_file")
            .assert_contains("passphrase_env")
            .assert_contains("A resource group cannot take passphrase_wo")
            .assert_not_contains_secret(SECRET);
    }
    let state = tf.dir().join("terraform.tfstate");
    if let Ok(text) = std::fs::read_to_string(&state) {
        assert!(
            !text.contains(SECRET),
            "the secret reached {}",
            state.display()
        );
    }
}

#[test]
fn terraform_1_0_is_refused_passphrase_wo_and_told_to_use_a_file_or_variable() {
    if !require(&[Requirement::Terraform, Requirement::ProviderBinary]) {
        return;
    }
    refused(None);
}

#[test]
fn terraform_1_0_over_protocol_5_is_refused_passphrase_wo_too() {
    if !require(&[Requirement::Terraform, Requirement::ProviderBinary]) {
        return;
    }
    refused(Some("5"));
}
