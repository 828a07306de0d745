//! Engine behaviour against a recording runner and a fake host: exact argv sequences,
//! idempotence, refusal before any process runs, and secrets kept out of argv, errors and store.
//! One file per subject; this module is the rig they share (an engine on a loop-file pool whose
//! loop devices the fake host attaches, as the agent does in-process) and the documents they
//! apply.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockstor_proto::wire::DesiredResource;

use super::*;
use crate::config::Config;
use crate::host::FakeHost;
use crate::runner::{Output, RecordingRunner};

mod apply;
mod delete;
mod drbd;
mod drbd_resize;
mod grow;
mod luks;
mod observe;
mod replicas;
mod secrets;
mod space;

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
