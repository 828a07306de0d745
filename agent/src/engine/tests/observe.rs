//! Plan, get and list: they read the system (including volumes the store does not know) and
//! change nothing.

use super::*;

#[tokio::test]
async fn plan_lists_steps_with_secrets_redacted_and_runs_nothing() {
    let r = rig();
    let plan = r
        .engine
        .plan(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    assert!(r.runner.calls().is_empty(), "{:?}", r.runner.commands());
    let text = serde_json::to_string(&plan).unwrap();
    assert!(!text.contains(PASS));
    let layers: Vec<&str> = plan.steps.iter().map(|s| s.layer.as_str()).collect();
    assert_eq!(layers, ["STORAGE", "STORAGE", "LUKS", "LUKS"]);
    assert_eq!(plan.steps[2].argv[1], "luksFormat");
    assert_eq!(plan.steps[3].argv.last().unwrap(), "<redacted>");
    assert!(
        r.engine
            .store
            .get(&"db".parse().unwrap())
            .unwrap()
            .is_none(),
        "plan stores nothing"
    );
}

#[tokio::test]
async fn get_reads_the_system_and_unknown_is_not_found() {
    let r = rig();
    let err = r.engine.get(&"db".parse().unwrap()).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.status()), ("not_found", 404));
    r.system_has_luks_volume(MIB64, "u-1", true);
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    // The mapping disappears behind the agent's back: get shows it.
    r.host
        .remove_file(Path::new("/dev/mapper/db-0-luks"))
        .unwrap();
    let o = r.engine.get(&"db".parse().unwrap()).await.unwrap();
    assert_eq!(o.volumes[0].luks.as_ref().map(|l| l.open), Some(false));
    assert_eq!(o.volumes[0].device_path, None);
    assert_eq!(r.engine.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn get_finds_volumes_the_store_does_not_know_for_import() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-9", false);
    let o = r.engine.get(&"db".parse().unwrap()).await.unwrap();
    assert_eq!(o.layer_stack.names(), ["LUKS", "STORAGE"]);
    assert_eq!(o.volumes[0].size_kib, Some(65536));
    assert_eq!(
        o.volumes[0]
            .luks
            .as_ref()
            .map(|l| (l.uuid.as_str(), l.open)),
        Some(("u-9", false))
    );
    assert_eq!(o.generation, 0);
    assert!(
        r.engine
            .store
            .get(&"db".parse().unwrap())
            .unwrap()
            .is_none(),
        "get stores nothing"
    );
    assert_eq!(
        blockstor_proto::parse_volume_name(&"db".parse().unwrap(), "db_00007"),
        Some(7)
    );
    assert_eq!(
        blockstor_proto::parse_volume_name(&"db".parse().unwrap(), "db_x_00007"),
        None
    );
    assert_eq!(
        blockstor_proto::parse_volume_name(&"db".parse().unwrap(), "db_0007"),
        None
    );
}

#[tokio::test]
async fn list_also_finds_resources_the_store_does_not_know() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-9", false);
    r.host
        .put(r.pool.join("notes.img").display().to_string(), 4096, true);
    r.host
        .put(r.pool.join("x_1.img").display().to_string(), 4096, true);
    let all = r.engine.list().await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["db"]
    );
    assert_eq!(all[0].layer_stack.names(), ["LUKS", "STORAGE"]);
    // Listing observes only: nothing was created, formatted or stored.
    assert!(r
        .runner
        .commands()
        .iter()
        .all(|c| c.starts_with("losetup -j")
            || c.starts_with("cryptsetup isLuks")
            || c.starts_with("cryptsetup luksUUID")));
    assert!(r.engine.store.list().unwrap().is_empty());
}
