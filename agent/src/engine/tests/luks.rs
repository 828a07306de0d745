//! The LUKS layer: format and open on first activation, verify an existing header, never
//! format foreign data, and stop with a clear error when device-mapper is missing.

use super::*;

fn uuid_of(cmd: &str) -> String {
    cmd.split_whitespace()
        .find_map(|a| a.strip_prefix("--uuid="))
        .expect("luksFormat sets --uuid")
        .to_owned()
}

#[tokio::test]
async fn apply_layers_luks_format_and_open_on_first_activation() {
    let r = rig();
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
async fn apply_luks_fails_without_passphrase() {
    for pass in [None, Some("")] {
        let r = rig();
        let err = r
            .engine
            .apply(desired(luks_stack(), "65536", pass))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
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
    assert_eq!(err.code.as_str(), "luks_passphrase_mismatch");
    assert!(r.runner.commands().iter().all(|c| !c.contains("resize")));
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
        (err.code.as_str(), err.field.as_deref()),
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
    assert_eq!(
        (err.code.as_str(), err.status()),
        ("luks_foreign_data", 409)
    );
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
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    let err = r
        .engine
        .apply(desired(luks_stack(), "65536", Some(PASS)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status()),
        ("kernel_feature_missing", 422)
    );
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
