//! User story "adopt a volume created outside Terraform": a `["STORAGE"]` resource
//! put straight into the agent's HTTP API is imported; the next plan replaces nothing and
//! apply leaves the backing file untouched (same inode, same size).

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use acceptance_tests::{host, require, Scenario};

const RD: &str = r#"
resource "blockstor_resource_definition" "adopted" {
  name        = "acc5-adopted"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

const DESIRED: &str = r#"{"name":"acc5-adopted","layer_stack":["STORAGE"],
  "volumes":[{"number":0,"size_kib":65536}],"storage":{"pool":"files"},"generation":1}"#;

#[test]
fn imported_rd_plans_without_replacement_and_apply_leaves_disk_alone() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(RD);
    // Outside Terraform: PUT the DesiredResource with curl; the token goes in a header file,
    // never in argv.
    let header = s.ws.path().join("auth-header");
    std::fs::write(
        &header,
        format!("Authorization: Bearer {}", s.agent.token()),
    )
    .unwrap();
    let body = s.ws.path().join("desired.json");
    std::fs::write(&body, DESIRED).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-H",
        ])
        .arg(format!("@{}", header.display()))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("{}/v1/resources/acc5-adopted", s.agent.endpoint()))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "PUT through the agent API failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = s
        .agent
        .pool_files("acc5-adopted")
        .pop()
        .expect("backing file");
    let before = std::fs::metadata(&file).unwrap();

    s.tf.init().assert_success();
    s.tf.run(&[
        "import",
        "-input=false",
        "-no-color",
        "blockstor_resource_definition.adopted",
        "acc5-adopted",
    ])
    .assert_success()
    .assert_contains("Import successful");
    let plan = s.tf.plan();
    assert!(plan.code() == 0 || plan.code() == 2, "plan failed:\n{plan}");
    for bad in [
        "must be replaced",
        "forces replacement",
        "will be destroyed",
    ] {
        assert!(
            !plan.combined().contains(bad),
            "plan after import says {bad:?}:\n{plan}"
        );
    }
    s.tf.apply().assert_success();
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(after.ino(), before.ino(), "apply replaced the backing file");
    assert_eq!(after.len(), before.len(), "apply resized the backing file");
    s.tf.plan().assert_code(0).assert_contains("No changes.");
    s.tf.destroy().assert_success();
}
