//! What an apply runs (only the layers of the stack; observing only when converged) and what it
//! refuses before any process runs.

use super::*;

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

#[tokio::test]
async fn apply_skips_drbd_when_layer_stack_omits() {
    let r = rig();
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
async fn invalid_requests_are_refused_before_any_process_runs() {
    let r = rig();
    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.storage.pool = "other".parse().unwrap();
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
        ("unknown_pool", Some("storage.pool"))
    );

    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.volumes.push(d.volumes[0].clone());
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
        ("invalid_volumes", Some("volumes[1].number"))
    );

    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.props.insert("Luks/pbkdf".into(), "--help".into());
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_prop");
    assert!(r.runner.calls().is_empty());
}

#[tokio::test]
async fn drbd_minor_and_port_collisions_are_conflicts() {
    let r = rig();
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
        (err.code.as_str(), err.status(), err.field.as_deref()),
        ("minor_in_use", 409, Some("drbd.minors[0]"))
    );
    let err = r
        .engine
        .apply(with_drbd("bb", 1001, 7000))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
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
    assert_eq!(
        (err.code.as_str(), err.status()),
        ("layer_stack_changed", 409)
    );
}
