//! A node whose agent is down must not block every plan: refresh keeps that replica's last
//! known state with a warning naming the node, so a plan with no changes still says so. A
//! destroy, though, fails for that node (its replica was not torn down), names it and says the
//! ways out; once the agent is back, the destroy completes.

use acceptance_tests::{host, require, AgentConfig, AgentProcess, Workspace, PROVIDER_HCL};

const RESOURCES: &str = r#"
resource "blockstor_resource_definition" "down" {
  name        = "acc-node-down"
  layer_stack = ["STORAGE"]
  nodes       = ["n1"]
  volume {
    number = 0
    size   = "64MiB"
  }
}
"#;

#[test]
fn plan_survives_a_stopped_agent_and_destroy_fails_for_it_until_it_is_back() {
    if !require(host::USER_SEAT) {
        return;
    }
    let ws = Workspace::new();
    ws.write("main.tf", &format!("{PROVIDER_HCL}\n{RESOURCES}"));
    let agent_dir = ws.path().join("agent");
    let config = AgentConfig::default();
    let agent = AgentProcess::start(&agent_dir, config.clone());
    let mut tf = ws.terraform();
    tf.var("endpoint", agent.endpoint())
        .var("token", agent.token());
    tf.init().assert_success();
    tf.apply().assert_success();

    drop(agent); // the node goes down
    tf.plan()
        .assert_code(0)
        .assert_contains("Warning: Refresh of acc-node-down skipped node n1")
        .assert_contains("No changes");

    tf.destroy()
        .assert_failure()
        .assert_contains("Cannot destroy acc-node-down on node n1")
        .assert_contains("terraform state rm");
    assert!(
        tf.state_resource("blockstor_resource_definition.down")
            .is_some(),
        "still in state: its replica on n1 was not torn down"
    );

    let agent = AgentProcess::start(&agent_dir, config);
    tf.var("endpoint", agent.endpoint());
    tf.destroy().assert_success();
    assert!(tf
        .state_resource("blockstor_resource_definition.down")
        .is_none());
    assert!(
        agent.pool_files("").is_empty(),
        "the backing file is gone: {:?}",
        agent.pool_files("")
    );
}
