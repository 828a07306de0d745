//! DRBD through the real drbd-utils on a loop device (tier 2). Needs root, loop devices and
//! drbd-utils; skips with the reason when something is missing.

use std::process::Command as Proc;
use std::sync::Arc;

use blockstor_agent::config::Config;
use blockstor_agent::engine::Engine;
use blockstor_agent::host::{Host, RealHost};
use blockstor_agent::runner::SystemRunner;
use blockstor_agent::store::Store;
use blockstor_proto::wire::DesiredResource;

#[macro_use]
mod common;
use common::attachments;

/// DRBD through the real drbd-utils on a loop device: the `.res` is rendered and accepted,
/// `drbdadm create-md` writes metadata once, and without the kernel module apply stops before
/// `adjust` with a clear error. Needs drbd-utils (`apt-get install -y drbd-utils`).
#[tokio::test]
async fn drbd_metadata_is_created_once_with_real_drbd_utils() {
    skip_unless!("losetup", "drbdadm");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (state, pool) = (dir.path().join("state"), dir.path().join("pool"));
    let config = Config::parse(&format!(
        "node_name = \"{hostname}\"\nstate_dir = {state:?}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    ))
    .unwrap();
    let e = Engine::new(
        config,
        Arc::new(SystemRunner),
        Arc::new(RealHost),
        Store::open(&state).unwrap(),
    );
    let d: DesiredResource = serde_json::from_str(
        r#"{"name":"rt_drbd","layer_stack":["DRBD","STORAGE"],"volumes":[{"number":0,"size_kib":16384}],
            "storage":{"pool":"files"},
            "drbd":{"node_id":0,"port":7789,"minors":[1789],"address":"127.0.0.1",
                    "peers":[{"name":"peer-x","node_id":1,"address":"127.0.0.2","port":7789}],
                    "shared_secret":"c2VjcmV0"}}"#,
    )
    .unwrap();
    let file = pool.join("rt_drbd_00000.img");
    let drbd_loaded = RealHost.drbd_available();
    let first = e.apply(d.clone()).await;
    let dev = attachments(&file).pop().expect("loop device");
    let md = |dev: &str| {
        Proc::new("drbdmeta")
            .args(["--force", "1789", "v09", dev, "internal", "dump-md"])
            .output()
            .unwrap()
            .status
            .success()
    };
    if !drbd_loaded {
        let err = first.unwrap_err();
        assert_eq!(err.code.as_str(), "kernel_feature_missing", "{err:?}");
        assert!(err.message.contains("modprobe drbd"), "{}", err.message);
        assert!(md(&dev), "create-md wrote metadata on {dev}");
        let res = std::fs::read_to_string(state.join("drbd.d/rt_drbd.res")).unwrap();
        assert!(res.contains(&format!("disk {dev};")), "{res}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("drbd.d/rt_drbd.res"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the .res holds the shared secret: owner only"
        );
        // Again: metadata exists, so create-md does not run a second time.
        let err = e.apply(d.clone()).await.unwrap_err();
        assert_eq!(err.code.as_str(), "kernel_feature_missing");
        let record = e.store.get(&"rt_drbd".parse().unwrap()).unwrap().unwrap();
        let create_mds = record
            .journal
            .iter()
            .filter(|j| j.action.contains("create-md"))
            .count();
        assert_eq!(create_mds, 1, "{:#?}", record.journal);
    } else {
        first.expect("apply with the drbd module loaded");
    }
    assert!(e.delete(&"rt_drbd".parse().unwrap()).await.unwrap().deleted);
    assert!(!state.join("drbd.d/rt_drbd.res").exists());
    assert!(!file.exists() && attachments(&file).is_empty());
}
