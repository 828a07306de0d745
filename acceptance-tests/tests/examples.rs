//! The examples in `examples/` apply as their READMEs say.

use acceptance_tests::{binaries, host, loops, require, Requirement, Scenario, Workspace};

#[test]
fn quickstart_example_applies_shows_and_destroys() {
    let mut needs = host::USER_SEAT.to_vec();
    needs.push(Requirement::Cryptsetup);
    if !require(&needs) {
        return;
    }
    let ws = Workspace::new();
    ws.copy_tf_files_from(&binaries::workspace_root().join("examples/quickstart"));
    let mut s = Scenario::with_workspace(ws);
    s.tf.var("passphrase", "quickstart-example-passphrase");
    s.tf.init().assert_success();

    let apply = s.tf.apply();
    if host::has_device_mapper() {
        apply.assert_success();
    } else {
        // The STORAGE volume is made; the LUKS one stops at dm-crypt open, with a message.
        apply.assert_failure();
        assert!(
            apply.combined().to_lowercase().contains("device-mapper"),
            "apply should name the missing kernel feature:\n{apply}"
        );
    }
    let plain =
        s.tf.state_resource("blockstor_resource_definition.plain")
            .expect("the STORAGE volume is in state");
    let device = plain["replicas"][0]["device_path"]
        .as_str()
        .expect("device_path");
    assert!(std::path::Path::new(device).exists(), "{device} missing");

    s.tf.destroy().assert_success();
    assert!(
        loops::attached_under(&s.agent.pool_dir()).is_empty(),
        "destroy left a loop device attached"
    );
    assert!(
        s.agent.pool_files("quickstart-plain").is_empty(),
        "destroy left the plain backing file"
    );
}
