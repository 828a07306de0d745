//! Delete: top-down teardown, idempotent, and never destroying a device the agent did not make.

use super::*;

#[tokio::test]
async fn delete_tears_down_top_down_and_is_idempotent() {
    let r = rig();
    r.runner
        .once(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    r.system_has_luks_volume(MIB64, "u-1", true);
    r.runner.clear();

    let done = r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    assert!(done.deleted);
    let file = r.file();
    assert_eq!(
        r.runner.commands(),
        [
            format!("losetup -j {file}"),
            format!("cryptsetup isLuks {LOOP}"),
            format!("cryptsetup luksUUID {LOOP}"),
            "cryptsetup close db-0-luks".to_owned(),
            format!("cryptsetup erase --batch-mode {LOOP}"),
            format!("losetup -j {file}"),
        ]
    );
    // Detached in-process, after everything above was torn down.
    assert_eq!(
        r.host.steps.lock().unwrap().last(),
        Some(&format!("detach-loop {LOOP}"))
    );
    assert_eq!(r.host.after_commands("detach-loop"), Some(6));
    assert_eq!(*r.host.zeroed.lock().unwrap(), [PathBuf::from(LOOP)]);
    assert!(!r.host.exists(Path::new(&file)));
    assert!(r
        .engine
        .store
        .get(&"db".parse().unwrap())
        .unwrap()
        .is_none());

    r.runner.clear();
    let again = r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    assert!(!again.deleted);
    assert!(r.runner.calls().is_empty());
}

#[tokio::test]
async fn delete_after_a_refused_apply_never_destroys_someone_elses_device() {
    // Foreign data: apply refused, delete keeps the file.
    let r = rig();
    r.host.put(r.file(), MIB64, false);
    r.host.put(LOOP, MIB64, false);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    r.runner.clear();
    r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    let detached = |r: &Rig| {
        let steps = r.host.steps.lock().unwrap();
        steps.iter().any(|s| s.starts_with("detach-loop"))
    };
    assert!(!detached(&r), "{:?}", r.host.steps);
    assert!(r.host.exists(Path::new(&r.file())));

    // Someone else's LUKS header and a wrong passphrase: delete never erases it.
    let r = rig();
    r.system_has_luks_volume(MIB64, "theirs", false);
    r.runner.on(
        &["cryptsetup", "open", "--test-passphrase"],
        Output::fail(2, "No key available"),
    );
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    r.runner.clear();
    r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter().all(|c| !c.contains("erase")) && !detached(&r),
        "{cmds:?}"
    );
    assert!(r.host.zeroed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn delete_reattaches_a_detached_loop_file_to_erase_its_luks_header() {
    let r = rig();
    r.runner
        .once(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    // After a reboot: the file is there, attached to nothing.
    r.host.put(r.file(), MIB64, true);
    r.host.put(LOOP, MIB64, false);
    r.runner.on(&["losetup", "-j"], Output::ok(""));
    r.runner.on(&["cryptsetup", "isLuks"], Output::ok(""));
    r.runner
        .on(&["cryptsetup", "luksUUID"], Output::ok("u-1\n"));
    r.runner.clear();
    r.host.steps.lock().unwrap().clear();
    r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    let cmds = r.runner.commands();
    // The file was attached again (the agent's own step), and the erase ran on the device
    // that attach answered: nothing else knew of /dev/loop7 (`losetup -j` lists nothing).
    assert_eq!(
        *r.host.steps.lock().unwrap(),
        [
            format!("attach-loop {}", r.file()),
            format!("detach-loop {LOOP}")
        ]
    );
    position(&cmds, "cryptsetup erase --batch-mode /dev/loop7");
    assert_eq!(*r.host.zeroed.lock().unwrap(), [PathBuf::from(LOOP)]);
    assert!(
        position(&cmds, "cryptsetup erase")
            < r.host.after_commands("detach-loop /dev/loop7").unwrap()
    );
    assert!(!r.host.exists(Path::new(&r.file())));
}
