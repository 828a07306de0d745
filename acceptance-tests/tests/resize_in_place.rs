//! User story "grow a volume without losing it": 64 MiB → 128 MiB is an in-place
//! update that grows the backing file; 128 MiB → 64 MiB is refused at plan.

use acceptance_tests::{host, require, Scenario};

const MIB: u64 = 1024 * 1024;

fn rd(size: &str) -> String {
    format!(
        r#"
resource "blockstor_resource_definition" "grow" {{
  name        = "acc5-grow"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {{
    number = 0
    size   = "{size}"
  }}
}}
"#
    )
}

#[test]
fn growing_is_in_place_and_shrinking_is_refused_at_apply() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(&rd("64MiB"));
    s.tf.init().assert_success();
    s.tf.apply().assert_success();
    let file = s.agent.pool_files("acc5-grow").pop().expect("backing file");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 64 * MIB);

    s.ws.write(
        "main.tf",
        &format!("{}\n{}", acceptance_tests::PROVIDER_HCL, rd("128MiB")),
    );
    s.tf.plan()
        .assert_code(2)
        .assert_contains("~ update in-place")
        .assert_not_contains_secret("must be replaced");
    s.tf.apply()
        .assert_success()
        .assert_contains("0 added, 1 changed, 0 destroyed");
    let files = s.agent.pool_files("acc5-grow");
    assert_eq!(
        files,
        std::slice::from_ref(&file),
        "the same backing file must be grown"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 128 * MIB);
    s.tf.plan().assert_code(0).assert_contains("No changes.");

    s.ws.write(
        "main.tf",
        &format!("{}\n{}", acceptance_tests::PROVIDER_HCL, rd("64MiB")),
    );
    // A warning at plan (an error would stop `terraform destroy`, which plans first since
    // Terraform 1.3), an error at apply before the agent is asked.
    let plan = s.tf.plan();
    plan.assert_code(2);
    assert!(
        plan.combined().to_lowercase().contains("shrink"),
        "plan should warn that shrinking will be refused, naming it:\n{plan}"
    );
    let apply = s.tf.apply();
    apply.assert_code(1);
    assert!(
        apply.combined().to_lowercase().contains("shrink"),
        "shrinking should be refused at apply, naming it:\n{apply}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 128 * MIB);

    s.ws.write(
        "main.tf",
        &format!("{}\n{}", acceptance_tests::PROVIDER_HCL, rd("128MiB")),
    );
    s.tf.destroy().assert_success();
}
