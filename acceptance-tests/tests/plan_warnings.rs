//! Issue #8 part 5, seen by a user: `terraform plan` warns about risky choices (a public DRBD
//! address, a short passphrase) on the attribute concerned and never shows the secret, and with
//! `TF_LOG=INFO` the log shows each node's apply and teardown with its duration.

use acceptance_tests::{host, require, Scenario, Workspace};

const SHORT_PASSPHRASE: &str = "tiny-pw";

const CONFIG: &str = r#"
terraform {
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

variable "passphrase" {
  type      = string
  sensitive = true
}

provider "blockstor" {
  node "n1" {
    address = "198.51.100.7"
    http {
      endpoint = var.endpoint
      token    = var.token
    }
  }
}

resource "blockstor_resource_group" "encrypted" {
  name        = "acc-warn-group"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
}

resource "blockstor_resource_definition" "plain" {
  name        = "acc-warn-plain"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn plan_warns_about_public_address_and_short_passphrase_and_apply_logs_progress() {
    if !require(host::USER_SEAT) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", CONFIG);
    let mut s = Scenario::with_workspace(ws);
    s.tf.var("passphrase", SHORT_PASSPHRASE);
    s.tf.init().assert_success();

    let plan = s.tf.plan();
    plan.assert_code(2)
        .assert_contains("Warning: Short passphrase")
        .assert_contains("shorter than 12 characters")
        .assert_contains("Warning: node \"n1\": DRBD address 198.51.100.7 is public")
        .assert_not_contains_secret(SHORT_PASSPHRASE);
    for warning in [
        "Warning: Short passphrase",
        "DRBD address 198.51.100.7 is public",
    ] {
        assert_eq!(
            plan.combined().matches(warning).count(),
            1,
            "{warning:?} is shown once, not at validate and again at plan:\n{}",
            plan.combined()
        );
    }
    assert!(
        plan.combined()
            .contains("blockstor_resource_group.encrypted"),
        "the passphrase warning names the resource:\n{}",
        plan.combined()
    );

    let log = s.ws.path().join("tf-info.log");
    s.tf.env("TF_LOG", "INFO")
        .env("TF_LOG_PATH", log.display().to_string());
    s.tf.apply()
        .assert_success()
        .assert_not_contains_secret(SHORT_PASSPHRASE);
    s.tf.destroy().assert_success();

    let log = std::fs::read_to_string(&log).expect("terraform log");
    for needle in [
        "n1: applying acc-warn-plain: STORAGE volume 0 (",
        "n1: acc-warn-plain applied in ",
        "volume 0 at /dev/loop",
        "n1: deleting acc-warn-plain",
        "n1: acc-warn-plain deleted in ",
    ] {
        let line = log.lines().find(|l| l.contains(needle));
        let line = line.unwrap_or_else(|| panic!("no log line with {needle:?}"));
        assert!(line.contains("[INFO]"), "not at INFO: {line}");
    }
    assert!(
        !log.contains(SHORT_PASSPHRASE),
        "the passphrase reached the Terraform log"
    );
}
