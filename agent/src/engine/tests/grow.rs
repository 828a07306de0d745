//! Growing a volume: file, then loop device, then LUKS mapping; never shrinking; a grow cut short
//! is finished on the next apply.

use super::*;

#[tokio::test]
async fn grow_extends_the_file_then_the_loop_device_then_the_luks_mapping() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", true);
    let observed = r
        .engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let file = r.file();
    let cmds = r.runner.commands();
    assert_eq!(
        cmds,
        [
            format!("losetup -j {file}"),
            format!("cryptsetup isLuks {LOOP}"),
            format!("cryptsetup luksUUID {LOOP}"),
            format!("cryptsetup open --test-passphrase --key-file=- {LOOP}"),
            "cryptsetup resize --key-file=- db-0-luks".to_owned(),
        ]
    );
    assert_eq!(r.runner.calls()[4].stdin.as_deref(), Some(PASS));
    // The file grew first, then the loop device learnt the size (the agent's own steps),
    // before anything above looked at it.
    assert_eq!(
        *r.host.steps.lock().unwrap(),
        [
            format!("set-size {} {file}", 2 * MIB64),
            format!("set-capacity {LOOP}")
        ]
    );
    assert_eq!(r.host.after_commands("set-capacity"), Some(1));
    assert_eq!(observed.volumes[0].size_kib, Some(131072));
    r.assert_no_secret_anywhere();
}

#[tokio::test]
async fn shrink_is_refused_and_changes_nothing() {
    let r = rig();
    r.system_has_luks_volume(2 * MIB64, "u-1", true);
    let err = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
        ("shrink_refused", Some("volumes[0].size_kib"))
    );
    assert!(r
        .runner
        .commands()
        .iter()
        .all(|c| c.starts_with("losetup -j")));
}

#[tokio::test]
async fn a_grow_cut_short_before_the_loop_device_learnt_its_size_is_finished_on_the_next_apply() {
    let r = rig();
    r.system_has_luks_volume(2 * MIB64, "u-1", true);
    r.host.put(LOOP, MIB64, false); // the kernel still sees the old size
    r.engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    let steps = r.host.steps.lock().unwrap().clone();
    assert!(
        steps.contains(&format!("set-capacity {LOOP}")),
        "{steps:#?}"
    );
    assert!(
        cmds.contains(&"cryptsetup resize --key-file=- db-0-luks".to_owned()),
        "{cmds:#?}"
    );
}

#[tokio::test]
async fn an_open_mapping_left_smaller_than_its_device_is_resized_on_the_next_apply() {
    // The agent died after `losetup -c` and before `cryptsetup resize`: file and loop device
    // are grown, the mapping is not.
    let r = rig();
    r.system_has_luks_volume(2 * MIB64, "u-1", true);
    r.host
        .put("/dev/mapper/db-0-luks", MIB64 - (16 << 20), false);
    r.runner.on(
        &["cryptsetup", "status"],
        Output::ok("  type:    LUKS2\n  offset:  32768 sectors\n  size:    98304 sectors\n"),
    );
    r.engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.contains(&"cryptsetup status db-0-luks".to_owned()),
        "{cmds:#?}"
    );
    assert_eq!(
        cmds.last().map(String::as_str),
        Some("cryptsetup resize --key-file=- db-0-luks"),
        "{cmds:#?}"
    );

    // Converged: the next apply neither asks for the status nor resizes.
    r.host
        .put("/dev/mapper/db-0-luks", 2 * MIB64 - (16 << 20), false);
    r.runner.clear();
    r.engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter()
            .all(|c| !c.contains("resize") && !c.contains("status")),
        "{cmds:#?}"
    );
}

#[tokio::test]
async fn a_failed_cryptsetup_resize_is_retried_on_the_next_apply_and_then_never_again() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", true);
    r.runner.once(
        &["cryptsetup", "resize"],
        Output::fail(
            1,
            "Command failed with code -1 (wrong or missing parameters).",
        ),
    );
    let err = r
        .engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "tool_failed", "{err:?}");

    // Apply 2, same size: file and loop device grew, the open mapping did not.
    r.host.put(r.file(), 2 * MIB64, true);
    r.host.put(LOOP, 2 * MIB64, false);
    r.runner.on(
        &["cryptsetup", "status"],
        Output::ok("  type:    LUKS2\n  offset:  32768 sectors\n"),
    );
    r.runner.clear();
    r.host.steps.lock().unwrap().clear();
    r.engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert_eq!(
        cmds.last().map(String::as_str),
        Some("cryptsetup resize --key-file=- db-0-luks"),
        "{cmds:#?}"
    );
    assert!(
        cmds.iter()
            .all(|c| !c.starts_with("truncate") && !c.contains("luksFormat")),
        "nothing but the resize is redone: {cmds:#?}"
    );
    assert!(
        r.host.steps.lock().unwrap().is_empty(),
        "the loop device is not grown again"
    );

    // Apply 3: the mapping follows its device, no resize.
    r.host
        .put("/dev/mapper/db-0-luks", 2 * MIB64 - (16 << 20), false);
    r.runner.clear();
    r.engine
        .apply(desired(luks_stack(), "131072", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert!(cmds.iter().all(|c| !c.contains("resize")), "{cmds:#?}");
    r.assert_no_secret_anywhere();
}
