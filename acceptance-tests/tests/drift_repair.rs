//! User story "someone deleted my volume behind Terraform's back": the next plan
//! shows the drift, apply recreates it, and then plan is clean again.

use std::process::Command;

use acceptance_tests::{host, loops, require, Scenario};

const RD: &str = r#"
resource "blockstor_resource_definition" "drift" {
  name        = "acc5-drift"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn deleted_backing_file_shows_as_drift_and_apply_repairs_it() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(RD);
    s.tf.init().assert_success();
    s.tf.apply().assert_success();
    let file = s
        .agent
        .pool_files("acc5-drift")
        .pop()
        .expect("backing file");

    // Behind Terraform's back: detach the loop device, remove the file.
    for dev in loops::attached_under(&s.agent.pool_dir()) {
        let st = Command::new("losetup")
            .arg("-d")
            .arg(&dev)
            .status()
            .unwrap();
        assert!(st.success(), "losetup -d {}", dev.display());
    }
    std::fs::remove_file(&file).expect("remove backing file");

    let plan = s.tf.plan();
    plan.assert_code(2);
    assert!(
        !plan.combined().contains("No changes."),
        "the deleted volume must show as drift:\n{plan}"
    );
    s.tf.apply().assert_success();
    assert!(file.is_file(), "apply should recreate {}", file.display());
    assert_eq!(loops::attached_under(&s.agent.pool_dir()).len(), 1);
    s.tf.plan().assert_code(0).assert_contains("No changes.");
    s.tf.destroy().assert_success();
}
