//! LUKS2 headers with the real `cryptsetup` on a loop-file pool (tier 2): format, verify, erase,
//! and find again after the store is lost. Needs root, loop devices and `cryptsetup` (Debian:
//! `apt-get install -y cryptsetup-bin`); each test skips with the reason when something is
//! missing. On a kernel without device-mapper the LUKS apply must stop at `cryptsetup open`
//! with `kernel_feature_missing`, after the header is written.

use std::io::Write;
use std::process::Command as Proc;

use blockstor_agent::host::{Host, RealHost};

#[macro_use]
mod common;
use common::{attachments, desired, engine, PASS};

#[tokio::test]
async fn real_cryptsetup_formats_verifies_and_erases_a_loop_device() {
    skip_unless!("losetup", "cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_luks";
    let file = dir.path().join("pool/rt_luks_00000.img");
    let dm = RealHost.device_mapper_available();

    let first = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 32768, Some(PASS)))
        .await;
    if dm {
        first.as_ref().expect("apply with device-mapper present");
    } else {
        let err = first.unwrap_err();
        assert_eq!(err.code.as_str(), "kernel_feature_missing", "{err:?}");
        assert!(
            err.message.contains("dm_crypt") && err.message.contains("LUKS header written"),
            "{}",
            err.message
        );
        assert!(!err.message.contains(PASS));
    }
    let dev = attachments(&file)
        .pop()
        .expect("the loop device stays attached");
    let is_luks = Proc::new("cryptsetup")
        .args(["isLuks", &dev])
        .status()
        .unwrap();
    assert!(is_luks.success(), "header written on {dev}");

    // get reports the UUID that luksDump shows.
    let observed = e.get(&name.parse().unwrap()).await.unwrap();
    let uuid = observed.volumes[0]
        .luks
        .as_ref()
        .expect("LUKS observed")
        .uuid
        .clone();
    let dump = Proc::new("cryptsetup")
        .args(["luksDump", &dev])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&format!("UUID:          \t{uuid}")) || dump.contains(&uuid),
        "{dump}"
    );
    assert!(dump.contains("pbkdf2"), "fast pbkdf from props: {dump}");

    if !dm {
        // Wrong passphrase: a clear error, and the header is untouched.
        let err = e
            .apply(desired(
                name,
                r#"["LUKS","STORAGE"]"#,
                32768,
                Some("not the pass"),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
            ("luks_passphrase_mismatch", Some("passphrase"))
        );
        let after = e.get(&name.parse().unwrap()).await.unwrap();
        assert_eq!(
            after.volumes[0].luks.as_ref().unwrap().uuid,
            uuid,
            "never reformatted"
        );
        // Right passphrase: verified, then the same kernel error at open (nothing re-done).
        let err = e
            .apply(desired(name, r#"["LUKS","STORAGE"]"#, 32768, Some(PASS)))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "kernel_feature_missing");
    }

    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    assert!(attachments(&file).is_empty());
    let store_bytes = std::fs::read(dir.path().join("state/agent.redb")).unwrap();
    assert!(
        !store_bytes
            .windows(PASS.len())
            .any(|w| w == PASS.as_bytes()),
        "no secret in the store"
    );
}

#[test]
fn real_cryptsetup_test_passphrase_accepts_right_and_rejects_wrong() {
    skip_unless!("cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hdr.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let with_stdin = |args: &[&str], secret: &str| {
        let mut child = Proc::new("cryptsetup")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        child.wait().unwrap().code()
    };
    let f = file.to_str().unwrap();
    let fmt = [
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file=-",
        f,
    ];
    assert_eq!(with_stdin(&fmt, PASS), Some(0));
    assert!(Proc::new("cryptsetup")
        .args(["isLuks", f])
        .status()
        .unwrap()
        .success());
    let test = ["open", "--test-passphrase", "--key-file=-", f];
    assert_eq!(with_stdin(&test, PASS), Some(0));
    assert_eq!(
        with_stdin(&test, "wrong"),
        Some(2),
        "exit 2 = no key available"
    );
}

/// The agent's store is lost (reinstall): GET still finds the resource in the pool, with its
/// LUKS header, so `terraform import` works; a later apply adopts it without reformatting.
#[tokio::test]
async fn get_rediscovers_a_resource_after_the_store_is_lost() {
    skip_unless!("losetup", "cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "rt_import";
    let file = dir.path().join("pool/rt_import_00000.img");
    let uuid = {
        let e = engine(dir.path());
        let _ = e
            .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some(PASS)))
            .await;
        e.get(&name.parse().unwrap()).await.unwrap().volumes[0]
            .luks
            .clone()
            .unwrap()
            .uuid
    };
    std::fs::remove_file(dir.path().join("state/agent.redb")).unwrap();
    let e = engine(dir.path());
    let found = e.get(&name.parse().unwrap()).await.unwrap();
    assert_eq!(found.layer_stack.names(), ["LUKS", "STORAGE"]);
    assert_eq!(found.volumes[0].size_kib, Some(16384));
    assert_eq!(found.volumes[0].luks.as_ref().unwrap().uuid, uuid);
    let err = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "luks_passphrase_mismatch");
    let _ = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some(PASS)))
        .await;
    assert_eq!(
        e.get(&name.parse().unwrap()).await.unwrap().volumes[0]
            .luks
            .clone()
            .unwrap()
            .uuid,
        uuid
    );
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists() && attachments(&file).is_empty());
}
