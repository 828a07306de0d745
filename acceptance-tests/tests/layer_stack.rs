//! Mistakes in the layer stack or the passphrase are caught by `terraform plan`, before any
//! device is touched.

use acceptance_tests::{host, require, Scenario};

#[test]
fn invalid_layer_stack_fails_plan_naming_layer_stack() {
    if !require(host::USER_SEAT) {
        return;
    }
    // LUKS above DRBD would replicate ciphertext per node with different keys: never valid.
    let s = Scenario::new(
        r#"
resource "blockstor_resource_definition" "bad" {
  name        = "acc-bad-stack"
  layer_stack = ["LUKS", "DRBD", "STORAGE"]
  passphrase  = "not-used-because-plan-fails"
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#,
    );
    s.tf.init().assert_success();
    let plan = s.tf.plan();
    plan.assert_code(1).assert_contains("layer_stack");
    assert!(
        plan.combined().contains("DRBD") && plan.combined().contains("STORAGE"),
        "the error should list the valid stacks:\n{plan}"
    );
    assert!(
        s.agent.pool_files("").is_empty(),
        "a failed plan must not create anything"
    );
}

#[test]
fn luks_rd_without_passphrase_fails_plan_naming_passphrase() {
    if !require(host::USER_SEAT) {
        return;
    }
    // Never an unencrypted volume where LUKS was asked for.
    let s = Scenario::new(
        r#"
resource "blockstor_resource_definition" "nokey" {
  name        = "acc-no-key"
  layer_stack = ["LUKS", "STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#,
    );
    s.tf.init().assert_success();
    s.tf.plan().assert_code(1).assert_contains("passphrase");
    assert!(
        s.agent.pool_files("").is_empty(),
        "a failed plan must not create anything"
    );
}
