//! Engine behaviour against a recording runner and a fake host: exact argv sequences,
//! idempotence, refusal before any process runs, and secrets kept out of argv, errors and store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockstor_proto::wire::DesiredResource;

use super::*;
use crate::config::Config;
use crate::host::FakeHost;
use crate::runner::{Output, RecordingRunner};

const PASS: &str = "correct horse battery staple";
const LOOP: &str = "/dev/loop7";
const MIB64: u64 = 64 * 1024 * 1024;

struct Rig {
    _dir: tempfile::TempDir,
    state: PathBuf,
    pool: PathBuf,
    runner: Arc<RecordingRunner>,
    host: Arc<FakeHost>,
    engine: Engine,
}

fn rig() -> Rig {
    rig_with(FakeHost::new())
}

fn rig_with(mut host: FakeHost) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pool = dir.path().join("pool");
    let config = Config::parse(&format!(
        "node_name = \"n1\"\nstate_dir = {state:?}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    ))
    .unwrap();
    let runner = Arc::new(RecordingRunner::new());
    host.runner = Some(runner.clone());
    let host = Arc::new(host);
    let store = Store::open(&state).unwrap();
    let engine = Engine::new(config, runner.clone(), host.clone(), store);
    Rig {
        _dir: dir,
        state,
        pool,
        runner,
        host,
        engine,
    }
}

impl Rig {
    fn file(&self) -> String {
        self.pool.join("db_00000.img").display().to_string()
    }

    /// After a first apply: the file exists, is attached to LOOP and carries a LUKS header.
    fn system_has_luks_volume(&self, size: u64, uuid: &str, open: bool) {
        self.host.put(self.file(), size, true);
        self.host.put(LOOP, size, false);
        self.runner.on(
            &["losetup", "-j"],
            Output::ok(format!("{LOOP}: []: ({})\n", self.file())),
        );
        self.runner.on(&["cryptsetup", "isLuks"], Output::ok(""));
        self.runner
            .on(&["cryptsetup", "luksUUID"], Output::ok(format!("{uuid}\n")));
        if open {
            // A converged mapping: the backing size less the LUKS2 data offset.
            self.host.put(
                "/dev/mapper/db-0-luks",
                size - crate::layers::luks::LUKS2_DEFAULT_OFFSET,
                false,
            );
        }
    }

    fn assert_no_secret_anywhere(&self) {
        for c in self.runner.calls() {
            assert!(
                !c.argv.join(" ").contains(PASS),
                "secret in argv: {:?}",
                c.argv
            );
        }
        let bytes = std::fs::read(self.state.join("agent.redb")).unwrap();
        let needle = PASS.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "secret in the store file"
        );
    }
}

fn desired(stack: &str, size: &str, passphrase: Option<&str>) -> DesiredResource {
    let luks = passphrase
        .map(|p| format!(r#","luks":{{"passphrase":"{p}"}}"#))
        .unwrap_or_default();
    serde_json::from_str(&format!(
        r#"{{"name":"db","layer_stack":{stack},"volumes":[{{"number":0,"size_kib":{size}}}],
            "storage":{{"pool":"files"}},"props":{{"Luks/pbkdf":"pbkdf2"}},"generation":1{luks}}}"#
    ))
    .unwrap()
}

fn luks_stack() -> &'static str {
    r#"["LUKS","STORAGE"]"#
}

fn uuid_of(cmd: &str) -> String {
    cmd.split_whitespace()
        .find_map(|a| a.strip_prefix("--uuid="))
        .expect("luksFormat sets --uuid")
        .to_owned()
}

#[tokio::test]
async fn apply_layers_luks_format_and_open_on_first_activation() {
    let r = rig();
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    let observed = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();

    let cmds = r.runner.commands();
    let uuid = uuid_of(&cmds[1]);
    let file = r.file();
    // Sizing the file and attaching it are the agent's own steps (no process).
    assert_eq!(
        *r.host.steps.lock().unwrap(),
        [
            format!("set-size {MIB64} {file}"),
            format!("attach-loop {file}")
        ]
    );
    assert_eq!(
        cmds,
        [
            format!("cryptsetup isLuks {LOOP}"),
            format!(
                "cryptsetup luksFormat --type luks2 --batch-mode --uuid={uuid} --pbkdf=pbkdf2 --key-file=- {LOOP}"
            ),
            format!("cryptsetup open --type luks2 --key-file=- {LOOP} db-0-luks"),
        ]
    );
    // The passphrase went to stdin of luksFormat and open, and nowhere else.
    let stdins: Vec<Option<String>> = r.runner.calls().into_iter().map(|c| c.stdin).collect();
    assert_eq!(stdins, [None, Some(PASS.into()), Some(PASS.into())]);
    r.assert_no_secret_anywhere();

    let v = &observed.volumes[0];
    assert_eq!(v.backing_device.as_deref(), Some(LOOP));
    assert_eq!(v.device_path.as_deref(), Some("/dev/mapper/db-0-luks"));
    assert_eq!(v.size_kib, Some(65536));
    assert_eq!(
        v.luks.as_ref().map(|l| (l.uuid.as_str(), l.open)),
        Some((uuid.as_str(), true))
    );
    assert_eq!(observed.generation, 1);
    let record = r.engine.store.get(&"db".parse().unwrap()).unwrap().unwrap();
    assert!(record.volumes[&0].created_by_agent);
    assert!(!record.volumes[&0].awaiting_luks_format);
    assert!(record
        .journal
        .iter()
        .all(|e| e.state == crate::store::StepState::Done));
}

#[tokio::test]
async fn apply_skips_drbd_when_layer_stack_omits() {
    let r = rig();
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
    // A drbd section is present but the stack omits DRBD: it must be ignored.
    let mut d = desired(r#"["STORAGE"]"#, "65536", None);
    d.drbd = Some(
        serde_json::from_str(
            r#"{"node_id":0,"port":7000,"minors":[1000],"peers":[],"shared_secret":"s","address":"10.0.0.1"}"#,
        )
        .unwrap(),
    );
    let observed = r.engine.apply(d).await.unwrap();
    let file = r.file();
    assert!(r.runner.commands().is_empty(), "{:?}", r.runner.commands());
    assert_eq!(
        *r.host.steps.lock().unwrap(),
        [
            format!("set-size {MIB64} {file}"),
            format!("attach-loop {file}")
        ]
    );
    assert!(r
        .runner
        .commands()
        .iter()
        .all(|c| !c.starts_with("drbdadm") && !c.starts_with("cryptsetup")));
    assert_eq!(observed.volumes[0].device_path.as_deref(), Some(LOOP));
    assert!(observed.drbd.is_none());
    assert!(
        find_files(&r.state, "res").is_empty(),
        "no .res may be rendered"
    );
}

#[tokio::test]
async fn apply_luks_fails_without_passphrase() {
    for pass in [None, Some("")] {
        let r = rig();
        let err = r
            .engine
            .apply(desired(luks_stack(), "65536", pass))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("luks_passphrase_missing", Some("passphrase"))
        );
        assert_eq!(err.status(), 400);
        assert!(
            r.runner.calls().is_empty(),
            "no process may run: {:?}",
            r.runner.commands()
        );
        assert!(r.engine.store.list().unwrap().is_empty());
    }
}

#[tokio::test]
async fn reapply_runs_only_observing_commands() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", true);
    let observed = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    // The first apply this agent records for an open device (an import) verifies the
    // passphrase, read-only; nothing is created, formatted or opened.
    let file = r.file();
    let observe_only = [
        format!("losetup -j {file}"),
        format!("cryptsetup isLuks {LOOP}"),
        format!("cryptsetup luksUUID {LOOP}"),
    ];
    let mut first = observe_only.to_vec();
    first.push(format!(
        "cryptsetup open --test-passphrase --key-file=- {LOOP}"
    ));
    assert_eq!(r.runner.commands(), first);
    r.runner.clear();
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    assert_eq!(
        r.runner.commands(),
        observe_only,
        "same generation: observe only"
    );
    assert_eq!(observed.volumes[0].luks.as_ref().unwrap().uuid, "u-1");
}

#[tokio::test]
async fn a_new_generation_verifies_the_passphrase_even_when_open() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", true);
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    r.runner.on(
        &["cryptsetup", "open", "--test-passphrase"],
        Output::fail(2, "No key available with this passphrase.\n"),
    );
    let mut d = desired(luks_stack(), "131072", Some("other-pass"));
    d.generation = 2;
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(err.code, "luks_passphrase_mismatch");
    assert!(r.runner.commands().iter().all(|c| !c.contains("resize")));
}

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
        (err.code, err.field.as_deref()),
        ("shrink_refused", Some("volumes[0].size_kib"))
    );
    assert!(r
        .runner
        .commands()
        .iter()
        .all(|c| c.starts_with("losetup -j")));
}

#[tokio::test]
async fn wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", false);
    r.runner.on(
        &["cryptsetup", "open", "--test-passphrase"],
        Output::fail(2, "No key available with this passphrase.\n"),
    );
    let err = r
        .engine
        .apply(desired(luks_stack(), "65536", Some("wrong-pass")))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("luks_passphrase_mismatch", Some("passphrase"))
    );
    assert_eq!(err.status(), 422);
    assert!(!err.message.contains("wrong-pass"));
    let file = r.file();
    assert_eq!(
        r.runner.commands(),
        [
            format!("losetup -j {file}"),
            format!("cryptsetup isLuks {LOOP}"),
            format!("cryptsetup luksUUID {LOOP}"),
            format!("cryptsetup open --test-passphrase --key-file=- {LOOP}"),
        ]
    );
}

#[tokio::test]
async fn existing_header_is_verified_then_opened_never_reformatted() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", false);
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert_eq!(
        cmds[3],
        format!("cryptsetup open --test-passphrase --key-file=- {LOOP}")
    );
    assert_eq!(
        cmds[4],
        format!("cryptsetup open --type luks2 --key-file=- {LOOP} db-0-luks")
    );
    assert!(cmds.iter().all(|c| !c.contains("luksFormat")));
}

#[tokio::test]
async fn foreign_data_is_never_formatted() {
    let r = rig();
    r.host.put(r.file(), MIB64, false);
    r.host.put(LOOP, MIB64, false); // first 16 MiB not zero
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    let err = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.status()), ("luks_foreign_data", 409));
    assert!(r
        .runner
        .commands()
        .iter()
        .all(|c| !c.contains("luksFormat")));
}

#[tokio::test]
async fn missing_device_mapper_fails_at_open_after_the_header_is_written() {
    let mut host = FakeHost::new();
    host.device_mapper = false;
    let r = rig_with(host);
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    let err = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.status()), ("kernel_feature_missing", 422));
    for word in ["device-mapper", "dm_crypt", LOOP, "LUKS header written"] {
        assert!(
            err.message.contains(word),
            "{word} missing in: {}",
            err.message
        );
    }
    let cmds = r.runner.commands();
    assert!(cmds.last().unwrap().contains("luksFormat"), "{cmds:?}");
    // A retry after loading the module reuses everything: the record says formatting is done.
    let record = r.engine.store.get(&"db".parse().unwrap()).unwrap().unwrap();
    assert!(!record.volumes[&0].awaiting_luks_format);
}

#[tokio::test]
async fn delete_tears_down_top_down_and_is_idempotent() {
    let r = rig();
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
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
    assert_eq!((err.code, err.status()), ("not_found", 404));
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
async fn invalid_requests_are_refused_before_any_process_runs() {
    let r = rig();
    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.storage.pool = "other".parse().unwrap();
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("unknown_pool", Some("storage.pool"))
    );

    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.volumes.push(d.volumes[0].clone());
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("invalid_volumes", Some("volumes[1].number"))
    );

    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.props.insert("Luks/pbkdf".into(), "--help".into());
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(err.code, "invalid_prop");
    assert!(r.runner.calls().is_empty());
}

#[tokio::test]
async fn drbd_minor_and_port_collisions_are_conflicts() {
    let r = rig();
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
    let with_drbd = |name: &str, minor: u32, port: u16| {
        let mut d = desired(r#"["STORAGE"]"#, "65536", None);
        d.name = name.parse().unwrap();
        d.drbd = Some(
            serde_json::from_str(&format!(
                r#"{{"node_id":0,"port":{port},"minors":[{minor}],"peers":[],"shared_secret":"s","address":"10.0.0.1"}}"#
            ))
            .unwrap(),
        );
        d
    };
    r.engine.apply(with_drbd("aa", 1000, 7000)).await.unwrap();
    let err = r
        .engine
        .apply(with_drbd("bb", 1000, 7001))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.status(), err.field.as_deref()),
        ("minor_in_use", 409, Some("drbd.minors[0]"))
    );
    let err = r
        .engine
        .apply(with_drbd("bb", 1001, 7000))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("port_in_use", Some("drbd.port"))
    );
    let node = r.engine.node().await.unwrap();
    assert_eq!(
        (node.used_minors, node.used_ports),
        (vec![1000], vec![7000])
    );
}

#[tokio::test]
async fn changing_the_layer_stack_in_place_is_a_conflict() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "u-1", true);
    r.engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap();
    let err = r
        .engine
        .apply(desired(r#"["STORAGE"]"#, "65536", None))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.status()), ("layer_stack_changed", 409));
}

fn find_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find_files(&p, ext));
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out
}

const SHARED: &str = "c2hhcmVkLXNlY3JldA";

fn drbd_desired(node_id: u32, peer_id: u32) -> DesiredResource {
    drbd_desired_kib(node_id, peer_id, 65536)
}

fn drbd_desired_kib(node_id: u32, peer_id: u32, size_kib: u64) -> DesiredResource {
    serde_json::from_str(&format!(
        r#"{{"name":"db","layer_stack":["DRBD","STORAGE"],"volumes":[{{"number":0,"size_kib":{size_kib}}}],
            "storage":{{"pool":"files"}},"generation":1,
            "drbd":{{"node_id":{node_id},"port":7000,"minors":[1000],"address":"10.0.0.1",
                     "peers":[{{"name":"n2","node_id":{peer_id},"address":"10.0.0.2","port":7000}}],
                     "shared_secret":"{SHARED}"}}}}"#
    ))
    .unwrap()
}

fn drbd_rig(module: bool) -> Rig {
    let mut host = FakeHost::new();
    host.drbd = module;
    let r = rig_with(host);
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
    r.runner.on(
        &["drbdadm", "--version"],
        Output::ok("DRBD_KERNEL_VERSION_CODE=0x090200\nDRBDADM_VERSION_CODE=0x091600\n"),
    );
    r
}

fn res_path(r: &Rig) -> String {
    r.state.join("drbd.d/db.res").display().to_string()
}

fn position(cmds: &[String], prefix: &str) -> usize {
    cmds.iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} not run: {cmds:#?}"))
}

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
    assert_eq!((err.code, err.status()), ("kernel_feature_missing", 422));
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
        crate::backends::parse_volume_name(&"db".parse().unwrap(), "db_00007"),
        Some(7)
    );
    assert_eq!(
        crate::backends::parse_volume_name(&"db".parse().unwrap(), "db_x_00007"),
        None
    );
    assert_eq!(
        crate::backends::parse_volume_name(&"db".parse().unwrap(), "db_0007"),
        None
    );
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
async fn delete_reattaches_a_detached_loop_file_to_erase_its_luks_header() {
    let r = rig();
    r.runner.on(
        &["losetup", "-f", "--show"],
        Output::ok(format!("{LOOP}\n")),
    );
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

/// A DRBD-over-STORAGE resource applied once at 64 MiB and up: the file attached to LOOP,
/// metadata present, `drbdadm role` answering. Calls recorded so far are forgotten.
async fn drbd_up_at_64mib() -> Rig {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::ok("Secondary"),
    );
    r.runner.on(&["drbdmeta"], Output::ok(""));
    r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    r.host.put(r.file(), MIB64, true);
    r.host.put(LOOP, MIB64, false);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.clear();
    r
}

fn resize_cmd(r: &Rig) -> String {
    format!("drbdadm -c {} resize db/0", res_path(r))
}

fn pending_resize(r: &Rig) -> bool {
    let rec = r.engine.store.get(&"db".parse().unwrap()).unwrap().unwrap();
    rec.volumes[&0].pending_drbd_resize
}

#[tokio::test]
async fn a_failed_drbd_resize_is_retried_on_the_next_apply_and_then_never_again() {
    let r = drbd_up_at_64mib().await;
    // Apply 1: the storage grows, then `drbdadm resize` fails (the peer just lost power).
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (102) Local address(port) already in use."),
    );
    let err = r
        .engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert_eq!(err.code, "tool_failed", "{err:?}");
    let cmds = r.runner.commands();
    // The file grew and the loop device learnt it (the agent's own steps), then resize.
    assert!(
        r.host.after_commands("set-capacity").unwrap() <= position(&cmds, &resize_cmd(&r)),
        "{cmds:#?}"
    );
    assert!(pending_resize(&r), "the failed resize stays pending");

    // Apply 2, same desired size: the storage is already grown, only the resize is left.
    r.host.put(r.file(), 2 * MIB64, true);
    r.host.put(LOOP, 2 * MIB64, false);
    r.runner.clear();
    r.host.steps.lock().unwrap().clear();
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert_eq!(cmds.last(), Some(&resize_cmd(&r)), "{cmds:#?}");
    assert!(
        r.host.steps.lock().unwrap().is_empty(),
        "the file is not sized again"
    );
    assert!(
        cmds.iter().all(|c| !c.starts_with("truncate")
            && !c.contains("create-md")
            && !c.contains("primary")),
        "nothing but the resize is redone: {cmds:#?}"
    );
    assert!(!pending_resize(&r));

    // Apply 3: converged, no resize.
    r.runner.clear();
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert!(cmds.iter().all(|c| !c.contains(" resize ")), "{cmds:#?}");
}

#[tokio::test]
async fn a_grow_cut_short_before_the_drbd_resize_leaves_the_resize_pending_in_the_store() {
    // The agent dies right after the grow (here: telling the loop device its new size
    // fails); the mark was written before the grow started, so a restarted agent still knows
    // DRBD must be resized.
    let r = drbd_up_at_64mib().await;
    *r.host.fail_step.lock().unwrap() = Some("set-capacity".into());
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert!(pending_resize(&r));
    assert!(
        r.runner.commands().iter().all(|c| !c.contains(" resize ")),
        "the resize never ran"
    );
}

#[tokio::test]
async fn drbd_84_refusing_to_resize_without_a_primary_is_a_clear_error_and_stays_pending() {
    let r = drbd_up_at_64mib().await;
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (131) Need one Primary node to resize."),
    );
    let err = r
        .engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.status(), err.field.as_deref()),
        (
            "drbd_resize_needs_primary",
            422,
            Some("volumes[0].size_kib")
        )
    );
    assert!(
        err.message.contains("drbdadm primary db"),
        "{}",
        err.message
    );
    assert!(pending_resize(&r));
}

#[tokio::test]
async fn a_resync_refusal_is_waited_out_and_a_pending_resize_shows_in_the_plan() {
    let r = drbd_up_at_64mib().await;
    // `once` rules are consumed newest first: the resync refusal answers first.
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "cut short"),
    );
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (130) Resize not allowed during resync."),
    );
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    let cmds = r.runner.commands();
    assert_eq!(
        cmds.iter().filter(|c| **c == resize_cmd(&r)).count(),
        2,
        "a resync refusal is waited out and tried again: {cmds:#?}"
    );
    r.host.put(r.file(), 2 * MIB64, true);
    r.host.put(LOOP, 2 * MIB64, false);
    r.runner.clear();
    let planned = r.engine.plan(drbd_desired_kib(0, 1, 131072)).await.unwrap();
    let steps: Vec<String> = planned.steps.iter().map(|s| s.argv.join(" ")).collect();
    assert!(steps.contains(&resize_cmd(&r)), "{steps:#?}");
    assert!(
        r.runner.commands().iter().all(|c| !c.contains(" resize ")),
        "planning runs nothing"
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
    assert_eq!(err.code, "tool_failed", "{err:?}");

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
