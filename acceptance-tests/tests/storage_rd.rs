//! A plain `["STORAGE"]` resource definition on a loop-file pool, through the whole lifecycle
//! a user runs: init, plan, apply, plan again (no changes), destroy.

use std::path::Path;

use acceptance_tests::{host, loops, require, Scenario};

const RD: &str = r#"
resource "blockstor_resource_definition" "plain" {
  name        = "acc-plain"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

const MIB: u64 = 1024 * 1024;

#[test]
fn storage_rd_apply_replan_no_changes_destroy() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(RD);

    s.tf.init()
        .assert_success()
        .assert_contains("Terraform has been successfully initialized");

    // Plan exits 2 with -detailed-exitcode: there are changes to make.
    s.tf.plan()
        .assert_code(2)
        .assert_contains("blockstor_resource_definition.plain will be created");

    s.tf.apply()
        .assert_success()
        .assert_contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.");

    // The backing volume exists: a 64 MiB file in the pool, attached to a loop device.
    let files = s.agent.pool_files("acc-plain");
    assert_eq!(files.len(), 1, "one backing file expected, found {files:?}");
    let size = std::fs::metadata(&files[0])
        .expect("stat backing file")
        .len();
    assert!(
        size >= 64 * MIB,
        "backing file is {size} bytes, want at least 64 MiB"
    );
    let attached = loops::attached_under(&s.agent.pool_dir());
    assert_eq!(
        attached.len(),
        1,
        "one loop device expected, found {attached:?}"
    );

    // State tells the user where the device is.
    let state =
        s.tf.state_resource("blockstor_resource_definition.plain")
            .expect("resource in state after apply");
    assert_eq!(
        state["effective_layer_stack"],
        serde_json::json!(["STORAGE"])
    );
    let replicas = state["replicas"].as_array().expect("replicas is a list");
    assert_eq!(replicas.len(), 1, "one replica on n1: {state:#}");
    assert_eq!(replicas[0]["node"], "n1");
    let device = replicas[0]["device_path"]
        .as_str()
        .expect("device_path set");
    assert!(
        Path::new(device).exists(),
        "device_path {device} does not exist"
    );
    assert_eq!(
        Path::new(device),
        attached[0],
        "device_path should be the loop device backing the volume"
    );

    // Nothing drifted: the second plan is empty (exit 0).
    s.tf.plan().assert_code(0).assert_contains("No changes.");

    s.tf.destroy()
        .assert_success()
        .assert_contains("Destroy complete! Resources: 1 destroyed.");
    assert!(
        loops::attached_under(&s.agent.pool_dir()).is_empty(),
        "destroy left a loop device attached"
    );
    assert!(
        s.agent.pool_files("acc-plain").is_empty(),
        "destroy left the backing file behind"
    );
}
