//! Plan preview: a saved plan (`terraform plan -out`, then `terraform show -json`)
//! holds, per node, the commands the agent will run (`planned_steps`), with secrets
//! redacted; applying that saved plan keeps them in state and the next plan has no changes.

use acceptance_tests::{host, require, Requirement, Scenario};

const STORAGE_RD: &str = r#"
resource "blockstor_resource_definition" "preview" {
  name        = "acc-preview"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

const PASSPHRASE: &str = "acc-preview-passphrase-never-shown";

const LUKS_RD: &str = r#"
variable "passphrase" {
  type      = string
  sensitive = true
}

resource "blockstor_resource_definition" "preview" {
  name        = "acc-preview-luks"
  layer_stack = ["LUKS", "STORAGE"]
  passphrase  = var.passphrase
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

/// `planned_steps` of the only resource change of the saved plan `p.tfplan`.
fn saved_plan_steps(s: &Scenario) -> serde_json::Value {
    let out = s.tf.run(&["show", "-json", "-no-color", "p.tfplan"]);
    out.assert_success();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("terraform show -json is not JSON ({e}):\n{out}"));
    let changes = plan["resource_changes"]
        .as_array()
        .expect("resource_changes");
    assert_eq!(changes.len(), 1, "one change expected: {changes:?}");
    changes[0]["change"]["after"]["planned_steps"].clone()
}

fn lines(steps: &serde_json::Value, node: &str) -> Vec<String> {
    steps[node]
        .as_array()
        .unwrap_or_else(|| panic!("no steps for {node} in {steps}"))
        .iter()
        .map(|l| l.as_str().expect("a command line").to_owned())
        .collect()
}

#[test]
fn a_saved_plan_lists_the_agent_commands_and_applying_it_keeps_them() {
    if !require(host::USER_SEAT) {
        return;
    }
    let s = Scenario::new(STORAGE_RD);
    s.tf.init().assert_success();
    s.tf.run(&[
        "plan",
        "-input=false",
        "-no-color",
        "-detailed-exitcode",
        "-out=p.tfplan",
    ])
    .assert_code(2)
    .assert_contains("planned_steps");

    let steps = saved_plan_steps(&s);
    let n1 = lines(&steps, "n1");
    // The loop-file pool sizes its file and attaches it in the agent itself.
    assert!(
        n1.iter().any(|l| l.starts_with("(agent) set-size ")),
        "a set-size step expected: {n1:?}"
    );
    assert!(
        n1.iter().any(|l| l.starts_with("(agent) attach-loop ")),
        "an attach-loop step expected: {n1:?}"
    );

    // Applying the saved plan: Terraform checks that apply returns the planned steps.
    s.tf.run(&["apply", "-input=false", "-no-color", "p.tfplan"])
        .assert_success()
        .assert_contains("Apply complete! Resources: 1 added");
    let state =
        s.tf.state_resource("blockstor_resource_definition.preview")
            .expect("resource in state");
    assert_eq!(
        state["planned_steps"], steps,
        "state keeps the previewed steps"
    );

    s.tf.plan().assert_code(0).assert_contains("No changes.");
    s.tf.destroy().assert_success();
}

#[test]
fn a_saved_plan_of_a_luks_definition_never_holds_the_passphrase() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    if !require(&needs) {
        return;
    }
    let mut s = Scenario::new(LUKS_RD);
    s.tf.var("passphrase", PASSPHRASE);
    s.tf.init().assert_success();
    s.tf.run(&["plan", "-input=false", "-no-color", "-out=p.tfplan"])
        .assert_success()
        .assert_not_contains_secret(PASSPHRASE);

    let steps = saved_plan_steps(&s);
    let n1 = lines(&steps, "n1");
    assert!(
        n1.iter().any(|l| l.starts_with("cryptsetup ")),
        "a cryptsetup step expected: {n1:?}"
    );
    assert!(
        n1.iter().any(|l| l.contains("<redacted>")),
        "the secret shows as <redacted>: {n1:?}"
    );
    assert!(
        !steps.to_string().contains(PASSPHRASE),
        "the passphrase leaked into planned_steps: {steps}"
    );

    // Terraform plans again while applying and requires the same steps (the fresh LUKS UUID
    // reads as <generated>). Without device-mapper the apply then fails at `cryptsetup open`.
    let apply =
        s.tf.run(&["apply", "-input=false", "-no-color", "p.tfplan"]);
    assert!(
        !apply.combined().contains("inconsistent final plan"),
        "the re-plan during apply changed planned_steps:\n{apply}"
    );
    s.tf.destroy().assert_success();
}
