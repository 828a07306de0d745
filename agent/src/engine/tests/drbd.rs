//! The DRBD layer: render, create metadata once, adjust, force the lowest node primary, go down
//! before the storage goes, and replicate a LUKS mapping when stacked on one.

use super::*;

#[tokio::test]
async fn drbd_first_creation_renders_creates_metadata_adjusts_and_forces_the_lowest_node_primary() {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    let o = r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    let cmds = r.runner.commands();
    let res = r.state.join("drbd.d/db.res").display().to_string();
    let order = [
        format!("drbdmeta --force 1000 v09 {LOOP} internal dump-md"),
        format!("drbdadm -c {res} --max-peers=7 -- --force create-md db/0"),
        format!("drbdadm -c {res} adjust db"),
        format!("drbdadm -c {res} primary --force db"),
        format!("drbdadm -c {res} secondary db"),
    ];
    let at: Vec<usize> = order.iter().map(|p| position(&cmds, p)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{cmds:#?}");
    assert!(cmds
        .iter()
        .all(|c| !c.contains(SHARED) && !c.starts_with("cryptsetup")));
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    assert!(
        text.contains(&format!("shared-secret \"{SHARED}\";"))
            && text.contains(&format!("disk {LOOP};"))
    );
    assert_eq!(o.volumes[0].device_path.as_deref(), Some("/dev/drbd1000"));
    assert_eq!(
        o.drbd.as_ref().map(|d| (d.minors.clone(), d.up)),
        Some((vec![1000], true))
    );
    let bytes = std::fs::read(r.state.join("agent.redb")).unwrap();
    assert!(
        !bytes.windows(SHARED.len()).any(|w| w == SHARED.as_bytes()),
        "no shared secret in the store"
    );
}

#[tokio::test]
async fn drbd_reapply_when_up_only_adjusts_and_a_higher_node_id_never_forces_primary() {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::ok("Secondary"),
    );
    r.runner.on(&["drbdmeta"], Output::ok(""));
    r.engine.apply(drbd_desired(1, 0)).await.unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter()
            .all(|c| !c.contains("create-md") && !c.contains("primary")),
        "{cmds:#?}"
    );
    position(&cmds, "drbdadm -c");
}

#[tokio::test]
async fn drbd_without_the_kernel_module_stops_before_adjust_with_a_clear_error() {
    let r = drbd_rig(false);
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    let err = r.engine.apply(drbd_desired(0, 1)).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status()),
        ("kernel_feature_missing", 422)
    );
    assert!(err.message.contains("modprobe drbd"), "{}", err.message);
    let cmds = r.runner.commands();
    position(&cmds, "drbdadm -c");
    assert!(cmds.iter().all(|c| !c.contains(" adjust ")), "{cmds:#?}");
}

#[tokio::test]
async fn drbd_delete_goes_down_before_the_storage_goes() {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::ok("Secondary"),
    );
    r.runner.on(&["drbdmeta"], Output::ok(""));
    r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    r.host.put(r.file(), MIB64, true);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.clear();
    r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    let cmds = r.runner.commands();
    let detached = r.host.after_commands("detach-loop").expect("detached");
    assert!(
        position(&cmds, &format!("drbdadm -c {} down db", res_path(&r))) < detached,
        "{cmds:#?}"
    );
    assert!(!r.host.exists(&r.state.join("drbd.d/db.res")));
}

#[tokio::test]
async fn plan_of_drbd_over_luks_over_storage_walks_all_three_layers_without_secrets() {
    let r = drbd_rig(true);
    let mut d = drbd_desired(0, 1);
    d.layer_stack = blockstor_proto::LayerStack::parse(&["DRBD", "LUKS", "STORAGE"]).unwrap();
    d.luks = Some(serde_json::from_str(&format!(r#"{{"passphrase":"{PASS}"}}"#)).unwrap());
    let plan = r.engine.plan(d).await.unwrap();
    let layers: Vec<&str> = plan.steps.iter().map(|s| s.layer.as_str()).collect();
    assert_eq!(
        layers,
        ["STORAGE", "STORAGE", "LUKS", "LUKS", "DRBD", "DRBD", "DRBD", "DRBD", "DRBD"],
        "{plan:#?}"
    );
    let text = serde_json::to_string(&plan).unwrap();
    assert!(!text.contains(PASS) && !text.contains(SHARED), "{text}");
    let res = r.state.join("drbd.d/db.res");
    assert!(!r.host.exists(&res), "plan writes nothing");
    assert!(plan.steps[5].argv.iter().any(|a| a.contains("create-md")));
    let read_only = |c: &String| c == "drbdadm --version";
    assert!(
        r.runner.commands().iter().all(read_only),
        "{:?}",
        r.runner.commands()
    );
}

#[tokio::test]
async fn drbd_over_luks_replicates_the_dm_crypt_mapping() {
    let r = drbd_rig(true);
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::fail(10, ""),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    let mut d = drbd_desired(0, 1);
    d.layer_stack = blockstor_proto::LayerStack::parse(&["DRBD", "LUKS", "STORAGE"]).unwrap();
    d.luks = Some(serde_json::from_str(&format!(r#"{{"passphrase":"{PASS}"}}"#)).unwrap());
    let o = r.engine.apply(d).await.unwrap();
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    assert!(text.contains("disk /dev/mapper/db-0-luks;"), "{text}");
    let cmds = r.runner.commands();
    assert!(position(&cmds, "cryptsetup open --type luks2") < position(&cmds, "drbdadm -c"));
    assert_eq!(o.volumes[0].device_path.as_deref(), Some("/dev/drbd1000"));
    assert_eq!(o.volumes[0].backing_device.as_deref(), Some(LOOP));
}

#[tokio::test]
async fn drbd_apply_that_drops_a_recorded_volume_is_refused_and_removes_nothing() {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    // The record also names a volume 1 (an earlier spec had it); the request lists only 0.
    let name = "db".parse().unwrap();
    let mut record = r.engine.store.get(&name).unwrap().unwrap();
    record.volume(1).created_by_agent = true;
    r.engine.store.put(&record).unwrap();
    r.runner.clear();
    let err = r.engine.apply(drbd_desired(0, 1)).await.unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_volumes", "{err:?}");
    assert_eq!(err.field.as_deref(), Some("volumes"));
    assert!(
        err.message.contains("replace the resource"),
        "{}",
        err.message
    );
    assert!(
        r.runner.calls().is_empty(),
        "nothing ran: {:?}",
        r.runner.commands()
    );
    assert_eq!(r.engine.store.get(&name).unwrap().unwrap(), record);
}
