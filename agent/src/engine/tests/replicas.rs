//! Replica changes on one node (issue 18): a delete refused while a device is in use unless
//! forced, a removed replica that waits for an UpToDate replica that stays before `down`
//! (DRBD 8.4 and 9), and a joining replica that never takes the initial-sync branch.

use blockstor_proto::wire::{DeleteOptions, DrbdJoin};

use super::*;
use crate::inuse::{InUse, User};

const V84: &str = "DRBD_KERNEL_VERSION_CODE=0x08040b\nDRBDADM_VERSION_CODE=0x091600\n";
const V9: &str = "DRBD_KERNEL_VERSION_CODE=0x090200\nDRBDADM_VERSION_CODE=0x091600\n";

/// [`drbd_rig`] for the DRBD whose `drbdadm --version` prints `version`.
fn drbd_rig_of(version: &str) -> Rig {
    let mut host = FakeHost::new();
    host.drbd = true;
    let r = rig_with(host);
    r.runner.on(&["drbdadm", "--version"], Output::ok(version));
    r
}

fn rd() -> ResourceName {
    "db".parse().unwrap()
}

fn in_use(r: &Rig, device: &str, users: Vec<User>) {
    r.host.in_use.lock().unwrap().insert(
        PathBuf::from(device),
        InUse {
            device: device.to_owned(),
            users,
        },
    );
}

/// A `["STORAGE"]` resource applied and attached to LOOP.
async fn storage_resource() -> Rig {
    let r = rig();
    r.engine
        .apply(desired(r#"["STORAGE"]"#, "65536", None))
        .await
        .unwrap();
    r.host.put(r.file(), MIB64, true);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.clear();
    r
}

#[tokio::test]
async fn a_device_in_use_is_not_torn_down_and_force_tears_it_down() {
    let r = storage_resource().await;
    in_use(
        &r,
        LOOP,
        vec![User::Opened {
            pid: 42,
            comm: "dd".into(),
        }],
    );
    let err = r.engine.delete(&rd()).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status(), err.field.as_deref()),
        ("device_in_use", 409, Some("force_destroy"))
    );
    for part in ["node n1", LOOP, "process 42 (dd)"] {
        assert!(err.message.contains(part), "{part}: {}", err.message);
    }
    assert!(r.host.after_commands("detach-loop").is_none(), "detached");
    assert!(r.host.exists(Path::new(&r.file())), "the volume is kept");
    assert!(r.engine.store.get(&rd()).unwrap().is_some(), "record kept");

    let forced = DeleteOptions {
        force: true,
        ..Default::default()
    };
    assert!(r.engine.delete_with(&rd(), &forced).await.unwrap().deleted);
    assert!(!r.host.exists(Path::new(&r.file())));
    assert!(r.engine.store.get(&rd()).unwrap().is_none());
}

#[tokio::test]
async fn a_process_that_only_probes_the_device_for_a_moment_does_not_stop_the_delete() {
    let r = storage_resource().await;
    in_use(
        &r,
        LOOP,
        vec![User::Opened {
            pid: 7,
            comm: "losetup".into(),
        }],
    );
    // Like udev's blkid or another `losetup -a`: it lets go a moment later.
    let host = r.host.clone();
    let probe = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        host.in_use.lock().unwrap().clear();
    });
    let deleted = r.engine.delete(&rd()).await.unwrap();
    probe.await.unwrap();
    assert!(deleted.deleted);
    assert!(r.host.after_commands("detach-loop").is_some(), "torn down");
}

#[tokio::test]
async fn a_mounted_top_device_is_refused_but_a_lower_device_held_by_the_chain_is_not() {
    let r = rig();
    r.runner
        .once(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    r.system_has_luks_volume(MIB64, "u-1", true);
    // dm-crypt holds the loop device: that is the chain itself.
    in_use(
        &r,
        LOOP,
        vec![User::Holder {
            name: "dm-0".into(),
        }],
    );
    let mapper = "/dev/mapper/db-0-luks";
    in_use(
        &r,
        mapper,
        vec![User::Mounted {
            at: "/mnt/db".into(),
        }],
    );
    r.runner.clear();
    let err = r.engine.delete(&rd()).await.unwrap_err();
    assert_eq!(err.code, "device_in_use");
    assert!(
        err.message.contains(mapper) && err.message.contains("mounted at /mnt/db"),
        "{}",
        err.message
    );
    let cmds = r.runner.commands();
    assert!(
        cmds.iter()
            .all(|c| !c.contains("close") && !c.contains("erase")),
        "{cmds:#?}"
    );

    r.host.in_use.lock().unwrap().remove(Path::new(mapper));
    assert!(r.engine.delete(&rd()).await.unwrap().deleted);
}

/// A `["DRBD","STORAGE"]` replica on n1 (peer n2), up, with `role` answering `role`.
async fn drbd_resource(version: &str, role: &str) -> Rig {
    let r = drbd_rig_of(version);
    r.runner
        .on(&["drbdadm", "-c", &res_path(&r), "role"], Output::ok(role));
    r.runner.on(&["drbdmeta"], Output::ok(""));
    r.engine.apply(drbd_desired(1, 0)).await.unwrap();
    r.host.put(r.file(), MIB64, true);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.clear();
    r
}

#[tokio::test]
async fn a_primary_drbd_replica_is_in_use() {
    let r = drbd_resource(V84, "Primary/Secondary\n").await;
    let err = r.engine.delete(&rd()).await.unwrap_err();
    assert_eq!(err.code, "device_in_use");
    assert!(
        err.message.contains("/dev/drbd1000") && err.message.contains("Primary"),
        "{}",
        err.message
    );
    let cmds = r.runner.commands();
    assert!(cmds.iter().all(|c| !c.contains(" down ")), "{cmds:#?}");
    assert!(r.host.exists(&r.state.join("drbd.d/db.res")));
}

fn leaving(wait_seconds: u64) -> DeleteOptions {
    DeleteOptions {
        remaining: vec!["n2".parse().unwrap()],
        wait_seconds: Some(wait_seconds),
        ..Default::default()
    }
}

/// The replica on n1 leaves, n2 stays: the state is read until n2 is UpToDate, then `down`,
/// then the storage goes; for both DRBD versions, with the state each one reports.
#[tokio::test]
async fn a_removed_replica_waits_for_an_up_to_date_replica_that_stays_then_goes_down() {
    for (version, dialect) in [(V84, "8.4"), (V9, "9")] {
        let r = drbd_resource(version, "Secondary\n").await;
        let res = res_path(&r);
        let read = if dialect == "8.4" {
            let dstate = ["drbdadm", "-c", res.as_str(), "dstate"];
            r.runner.on(&dstate, Output::ok("UpToDate/UpToDate\n"));
            r.runner
                .once(&dstate, Output::ok("UpToDate/Inconsistent\n"));
            r.runner.on(
                &["drbdadm", "-c", res.as_str(), "cstate"],
                Output::ok("Connected\n"),
            );
            format!("drbdadm -c {res} dstate db")
        } else {
            let status = |disk: &str, repl: &str| {
                Output::ok(format!(
                    r#"[{{"name":"db","devices":[{{"volume":0,"disk-state":"UpToDate"}}],
                       "connections":[{{"name":"n2","connection-state":"Connected","peer_devices":[
                       {{"volume":0,"replication-state":"{repl}","peer-disk-state":"{disk}"}}]}}]}}]"#
                ))
            };
            r.runner
                .on(&["drbdsetup", "status"], status("UpToDate", "Established"));
            r.runner.once(
                &["drbdsetup", "status"],
                status("Inconsistent", "SyncSource"),
            );
            "drbdsetup status --json db".to_owned()
        };
        let done = r.engine.delete_with(&rd(), &leaving(60)).await.unwrap();
        assert!(done.deleted, "{dialect}");
        let cmds = r.runner.commands();
        let reads: Vec<usize> = (0..cmds.len()).filter(|i| cmds[*i] == read).collect();
        let down = position(&cmds, &format!("drbdadm -c {res} down db"));
        assert_eq!(reads.len(), 2, "{dialect}: read until UpToDate: {cmds:#?}");
        assert!(reads.iter().all(|i| *i < down), "{dialect}: {cmds:#?}");
        assert_eq!(
            cmds.iter().filter(|c| c.contains(" down ")).count(),
            1,
            "{dialect}: one down: {cmds:#?}"
        );
        let detached = r.host.after_commands("detach-loop").expect("detached");
        assert!(down < detached, "{dialect}: down before the storage goes");
        assert!(!r.host.exists(&r.state.join("drbd.d/db.res")), "{dialect}");
        assert!(r.engine.store.get(&rd()).unwrap().is_none(), "{dialect}");
    }
}

#[tokio::test]
async fn a_removal_without_an_up_to_date_replica_that_stays_fails_at_the_bound_and_keeps_everything(
) {
    let r = drbd_resource(V84, "Secondary\n").await;
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "dstate"],
        Output::ok("UpToDate/Inconsistent\n"),
    );
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "cstate"],
        Output::ok("Connected\n"),
    );
    let err = r.engine.delete_with(&rd(), &leaving(0)).await.unwrap_err();
    assert_eq!(err.code, "drbd_sync_timeout", "{}", err.message);
    assert!(
        err.message.contains("node n1") && err.message.contains("n2"),
        "{}",
        err.message
    );
    let cmds = r.runner.commands();
    position(&cmds, &format!("drbdadm -c {res} dstate db"));
    assert!(cmds.iter().all(|c| !c.contains(" down ")), "{cmds:#?}");
    assert!(r.host.after_commands("detach-loop").is_none());
    assert!(r.host.exists(&r.state.join("drbd.d/db.res")));
    assert!(r.engine.store.get(&rd()).unwrap().is_some());
}

/// Node id 0 is the lowest, which on a fresh resource forces itself primary; a joining node
/// must not: its peers hold the data.
#[tokio::test]
async fn a_joining_replica_never_takes_the_initial_sync_branch() {
    for (version, dialect) in [(V84, "8.4"), (V9, "9")] {
        let r = drbd_rig_of(version);
        let res = res_path(&r);
        r.runner.on(
            &["drbdadm", "-c", res.as_str(), "role"],
            Output::fail(10, "'db' not defined"),
        );
        r.runner
            .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
        let (read, reply) = if dialect == "8.4" {
            r.runner.on(
                &["drbdadm", "-c", res.as_str(), "cstate"],
                Output::ok("SyncTarget\n"),
            );
            (
                vec!["drbdadm", "-c", res.as_str(), "dstate"],
                Output::ok("Inconsistent/UpToDate\n"),
            )
        } else {
            (
                vec!["drbdsetup", "status"],
                Output::ok(
                    r#"[{"name":"db","devices":[{"volume":0,"disk-state":"Inconsistent"}],
                    "connections":[{"name":"n2","connection-state":"Connected","peer_devices":[
                    {"volume":0,"replication-state":"SyncTarget","peer-disk-state":"UpToDate",
                     "percent-in-sync":10.0}]}]}]"#,
                ),
            )
        };
        r.runner.on(&read, reply);
        let mut d = drbd_desired(0, 1);
        let drbd = d.drbd.as_mut().unwrap();
        drbd.join = Some(DrbdJoin::default());
        drbd.wait_seconds = Some(30);
        let o = r.engine.apply(d).await.unwrap();
        let cmds = r.runner.commands();
        for c in &cmds {
            // `--force` only skips create-md's question, or lets dump-md read metadata.
            let forced =
                c.contains("--force") && !c.contains("create-md") && !c.ends_with("dump-md");
            assert!(
                !c.contains("primary")
                    && !forced
                    && !c.contains("overwrite-data-of-peer")
                    && !c.contains("new-current-uuid")
                    && !c.contains("clear-bitmap"),
                "{dialect}: {c} in {cmds:#?}"
            );
        }
        let created = position(&cmds, &format!("drbdadm -c {res}"));
        assert!(cmds[created].contains("create-md db/0"), "{cmds:#?}");
        let adjust = position(&cmds, &format!("drbdadm -c {res} adjust db"));
        let waited = position(&cmds, &read.join(" "));
        assert!(created < adjust && adjust < waited, "{dialect}: {cmds:#?}");
        let record = r.engine.store.get(&rd()).unwrap().unwrap();
        assert!(
            record.volumes.values().all(|v| !v.awaiting_initial_sync),
            "{dialect}: no initial-sync mark left"
        );
        assert_eq!(o.volumes[0].device_path.as_deref(), Some("/dev/drbd1000"));
    }
}

/// The same request without `join` is the initial creation: node id 0 forces itself primary.
/// Shows the test above would see the branch if it ran.
#[tokio::test]
async fn without_join_the_lowest_node_still_forces_the_initial_sync() {
    let r = drbd_rig(true);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    position(
        &r.runner.commands(),
        &format!("drbdadm -c {res} primary --force db"),
    );
}

#[tokio::test]
async fn observe_reports_the_role_and_the_worst_disk_state() {
    let r = drbd_resource(V84, "Secondary/Primary\n").await;
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "dstate"],
        Output::ok("UpToDate/UpToDate\nOutdated/UpToDate\n"),
    );
    let o = r.engine.get(&rd()).await.unwrap();
    let drbd = o.drbd.unwrap();
    assert_eq!(
        (drbd.up, drbd.role.as_deref(), drbd.disk_state.as_deref()),
        (true, Some("Secondary"), Some("Outdated"))
    );
    assert!(!drbd.diskless);
}

#[tokio::test]
async fn a_diskless_replica_runs_no_storage_or_luks_command_and_renders_disk_none() {
    let r = drbd_rig_of(V9);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "dstate"],
        Output::ok("Diskless\n"),
    );
    let mut d = drbd_desired(0, 1);
    d.layer_stack = blockstor_proto::LayerStack::parse(&["DRBD", "LUKS", "STORAGE"]).unwrap();
    d.luks = Some(serde_json::from_str(&format!(r#"{{"passphrase":"{PASS}"}}"#)).unwrap());
    d.drbd.as_mut().unwrap().diskless = true;
    let o = r.engine.apply(d).await.unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter().all(|c| !c.starts_with("losetup")
            && !c.starts_with("cryptsetup")
            && !c.starts_with("lvcreate")
            && !c.starts_with("drbdmeta")
            && !c.contains("create-md")
            && !c.contains("primary")),
        "{cmds:#?}"
    );
    assert!(r.host.steps.lock().unwrap().is_empty(), "no loop file");
    position(&cmds, &format!("drbdadm -c {res} adjust db"));
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    assert!(
        text.contains("disk none;") && !text.contains(LOOP),
        "{text}"
    );
    let drbd = o.drbd.unwrap();
    assert!(drbd.diskless);
    assert_eq!(drbd.disk_state.as_deref(), Some("Diskless"));
    assert_eq!(o.volumes[0].device_path.as_deref(), Some("/dev/drbd1000"));
}

#[tokio::test]
async fn a_diskless_replica_of_a_luks_stack_needs_no_passphrase() {
    let r = drbd_rig_of(V9);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "dstate"],
        Output::ok("Diskless\n"),
    );
    let mut d = drbd_desired(0, 1);
    d.layer_stack = blockstor_proto::LayerStack::parse(&["DRBD", "LUKS", "STORAGE"]).unwrap();
    d.luks = None;
    let mut diskful = d.clone();
    d.drbd.as_mut().unwrap().diskless = true;
    let o = r.engine.apply(d).await.unwrap();
    assert!(o.drbd.unwrap().diskless);
    assert!(
        r.runner
            .commands()
            .iter()
            .all(|c| !c.starts_with("cryptsetup")),
        "a client opens no header"
    );
    // A diskful replica of the same stack still refuses to go without one.
    diskful.name = "db2".parse().unwrap();
    let err = r.engine.apply(diskful).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::LuksPassphraseMissing);
}

#[tokio::test]
async fn a_diskless_client_is_observed_through_drbd_alone_and_stays_diskless() {
    let r = drbd_rig_of(V9);
    let res = res_path(&r);
    // Whatever the kernel's dstate says, the record says this node has no disk.
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "dstate"],
        Output::ok("UpToDate\n"),
    );
    let mut d = drbd_desired(0, 1);
    d.drbd.as_mut().unwrap().diskless = true;
    r.engine.apply(d).await.unwrap();
    let o = r.engine.get(&rd()).await.unwrap();
    let drbd = o.drbd.unwrap();
    assert!(drbd.diskless, "{drbd:?}");
    assert_eq!(o.volumes[0].device_path.as_deref(), Some("/dev/drbd1000"));
    assert_eq!(o.volumes[0].backing_device, None);
    let listed = r.engine.list().await.unwrap();
    assert!(listed[0].drbd.as_ref().unwrap().diskless);
}

#[tokio::test]
async fn a_diskless_client_turned_diskful_gets_a_disk_and_metadata_and_never_forces_a_sync() {
    let r = drbd_rig_of(V9);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::ok("Secondary\n"),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(255, "No valid meta data found"));
    // Node id 0, the lowest: the one that would start an initial sync on a create.
    let mut client = drbd_desired(0, 1);
    client.drbd.as_mut().unwrap().diskless = true;
    r.engine.apply(client).await.unwrap();
    r.runner.clear();

    let o = r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    let cmds = r.runner.commands();
    let attached = r
        .host
        .after_commands("attach-loop")
        .expect("backing volume made");
    let md = position(
        &cmds,
        &format!("drbdadm -c {res} --max-peers=7 -- --force create-md db/0"),
    );
    assert!(
        attached <= md,
        "the disk exists before its metadata: {cmds:#?}"
    );
    assert!(md < position(&cmds, &format!("drbdadm -c {res} adjust db")));
    assert!(
        cmds.iter().all(|c| !c.contains("primary")),
        "a disk joining running peers must sync from them: {cmds:#?}"
    );
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    assert!(!text.contains("disk none;"), "{text}");
    assert!(!o.drbd.unwrap().diskless);
}

/// A diskless client request for DRBD 8.4 (node id 1, peer n2 with a disk).
fn client_84() -> DesiredResource {
    let mut d = drbd_desired(1, 0);
    d.drbd.as_mut().unwrap().diskless = true;
    d
}

#[tokio::test]
async fn a_diskless_client_on_drbd_8_4_comes_up_without_an_attach() {
    let r = drbd_rig_of(V84);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.engine.apply(client_84()).await.unwrap();
    let cmds = r.runner.commands();
    let new_resource = position(&cmds, &format!("drbdadm -c {res} new-resource db"));
    let new_minor = position(&cmds, &format!("drbdadm -c {res} new-minor db/0"));
    let connect = position(&cmds, &format!("drbdadm -c {res} connect db"));
    assert!(new_resource < new_minor && new_minor < connect, "{cmds:#?}");
    // drbdadm 8.4 reads `disk none;` as a device: its adjust or up would `attach none`.
    assert!(
        cmds.iter()
            .all(|c| !c.contains(" adjust ") && !c.contains(" up ") && !c.contains("attach")),
        "{cmds:#?}"
    );
}

#[tokio::test]
async fn a_running_diskless_client_on_drbd_8_4_reconnects_only_when_its_res_changed() {
    let r = drbd_rig_of(V84);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::ok("Secondary/Primary\n"),
    );
    // Up, and the .res is new here: the running client takes its peer by reconnecting.
    r.engine.apply(client_84()).await.unwrap();
    let cmds = r.runner.commands();
    let disconnect = position(&cmds, &format!("drbdadm -c {res} disconnect db"));
    assert!(disconnect < position(&cmds, &format!("drbdadm -c {res} connect db")));
    assert!(cmds.iter().all(|c| !c.contains(" adjust ")), "{cmds:#?}");

    r.runner.clear();
    r.engine.apply(client_84()).await.unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter().all(|c| !c.contains(" adjust ")
            && !c.contains(" disconnect ")
            && !c.contains(" connect ")
            && !c.contains("new-")),
        "an unchanged client is left alone: {cmds:#?}"
    );
}

#[tokio::test]
async fn a_diskless_peer_is_rendered_with_disk_none_in_its_section() {
    let r = drbd_rig_of(V9);
    let res = res_path(&r);
    r.runner.on(
        &["drbdadm", "-c", res.as_str(), "role"],
        Output::ok("Secondary"),
    );
    r.runner.on(&["drbdmeta"], Output::ok(""));
    let mut d = drbd_desired(1, 0);
    d.drbd.as_mut().unwrap().peers[0].diskless = true;
    r.engine.apply(d).await.unwrap();
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    let peer = &text[text.find("on \"n2\" {").expect("n2's section")..];
    let peer = &peer[..peer.find('}').unwrap_or(peer.len())];
    assert!(peer.contains("disk none;"), "{text}");
    assert!(text.contains(&format!("disk {LOOP};")), "{text}");
}

/// diskful -> diskless in place: DRBD lets go of the disk before the storage goes, the `.res`
/// then says `disk none;`, and a second apply has nothing left to drop.
#[tokio::test]
async fn a_diskful_replica_turned_diskless_detaches_before_its_storage_goes() {
    let r = drbd_resource(V9, "Secondary\n").await;
    let res = res_path(&r);
    let mut d = drbd_desired(1, 0);
    d.drbd.as_mut().unwrap().diskless = true;
    let o = r.engine.apply(d.clone()).await.unwrap();
    let cmds = r.runner.commands();
    let detach = position(&cmds, &format!("drbdadm -c {res} detach db"));
    let detached = r.host.after_commands("detach-loop").expect("loop detached");
    assert!(detach < detached, "{cmds:#?}");
    assert!(detach < position(&cmds, &format!("drbdadm -c {res} adjust db")));
    assert!(
        !r.host.exists(Path::new(&r.file())),
        "backing volume removed"
    );
    let text = r.host.texts.lock().unwrap()[&r.state.join("drbd.d/db.res")].clone();
    assert!(
        text.contains("disk none;") && !text.contains(LOOP),
        "{text}"
    );
    assert!(o.drbd.unwrap().diskless);

    r.runner.clear();
    r.engine.apply(d).await.unwrap();
    let cmds = r.runner.commands();
    assert!(
        cmds.iter()
            .all(|c| !c.contains(" detach ") && !c.starts_with("losetup")),
        "{cmds:#?}"
    );
}
