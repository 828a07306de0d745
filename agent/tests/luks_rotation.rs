//! LUKS passphrase rotation with the real `cryptsetup` on a loop-file pool (header operations
//! need no device-mapper). The engine adds the new passphrase to a free keyslot, checks it,
//! then removes the old one; the header's UUID, volume key and payload never change. Needs
//! root, loop devices and cryptsetup; skips otherwise. Without dm-crypt every apply ends at
//! `cryptsetup open` with `kernel_feature_missing`, after the rotation.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command as Proc, Stdio};

use blockstor_agent::error::Error;
use blockstor_agent::host::{Host, RealHost};
use blockstor_proto::wire::{DesiredResource, ObservedResource};

#[macro_use]
mod common;
use common::{attachments, engine};

const OLD: &str = "old pass-phrase A";
const NEW: &str = "new pass-phrase B";
const STACK: &str = r#"["LUKS","STORAGE"]"#;
/// LUKS2's default data offset: the payload starts 16 MiB into the device.
const PAYLOAD: u64 = 16 << 20;

/// A `["LUKS","STORAGE"]` document; `previous` makes it a rotation.
fn desired(name: &str, pass: &str, previous: Option<&str>, generation: u64) -> DesiredResource {
    let previous = previous
        .map(|p| format!(r#","previous_passphrase":"{p}""#))
        .unwrap_or_default();
    serde_json::from_str(&format!(
        r#"{{"name":"{name}","layer_stack":{STACK},"volumes":[{{"number":0,"size_kib":32768}}],
            "storage":{{"pool":"files"}},"generation":{generation},
            "props":{{"Luks/pbkdf":"pbkdf2","Luks/pbkdf-force-iterations":"1000"}},
            "luks":{{"passphrase":"{pass}"{previous}}}}}"#
    ))
    .unwrap()
}

/// An apply either converges or, without dm-crypt, stops at the open step.
fn converged(r: std::result::Result<ObservedResource, Error>) {
    if let Err(e) = r {
        assert!(
            e.code == "kernel_feature_missing" && !RealHost.device_mapper_available(),
            "{e:?}"
        );
    }
}

fn cryptsetup(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Proc::new("cryptsetup")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn opens(dev: &str, pass: &str) -> bool {
    cryptsetup(&["open", "--test-passphrase", "--key-file=-", dev], pass)
        .status
        .success()
}

/// The volume key (hex), read with `pass`: proves the data stays decryptable as before.
fn volume_key(dev: &str, pass: &str) -> String {
    let out = cryptsetup(
        &[
            "luksDump",
            "--dump-volume-key",
            "--batch-mode",
            "--key-file=-",
            dev,
        ],
        pass,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("MK dump:").expect("volume key dump");
    text[start..].split_whitespace().skip(2).collect()
}

fn luks_uuid(dev: &str) -> String {
    String::from_utf8_lossy(&cryptsetup(&["luksUUID", dev], "").stdout)
        .trim()
        .to_owned()
}

fn attachment(file: &Path) -> String {
    attachments(file)
        .into_iter()
        .next()
        .expect("loop device attached")
}

fn payload(dev: &str) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    f.seek(SeekFrom::Start(PAYLOAD)).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    buf
}

fn write_marker(dev: &str, marker: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(PAYLOAD + 4096)).unwrap();
    f.write_all(marker).unwrap();
    f.sync_all().unwrap();
}

fn steps(argv: &blockstor_proto::wire::PlannedSteps) -> Vec<String> {
    argv.steps.iter().map(|s| s.argv.join(" ")).collect()
}

#[tokio::test]
async fn rotation_swaps_the_keyslot_and_keeps_uuid_volume_key_and_payload() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rot_a";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    converged(e.apply(desired(name, OLD, None, 1)).await);
    let dev = attachment(&file);
    write_marker(&dev, b"data under the old passphrase");
    let (uuid, key, data) = (luks_uuid(&dev), volume_key(&dev, OLD), payload(&dev));

    // The plan shows both phases, secrets redacted, and changes nothing.
    let plan = steps(&e.plan(desired(name, NEW, Some(OLD), 2)).await.unwrap());
    let rotation: Vec<&String> = plan.iter().filter(|s| s.contains("luks")).collect();
    assert!(
        rotation[0].starts_with("cryptsetup luksAddKey --batch-mode --pbkdf=pbkdf2")
            && rotation[0].ends_with(&format!("{dev} <redacted>")),
        "{plan:?}"
    );
    assert_eq!(
        rotation[1],
        &format!("cryptsetup luksRemoveKey --batch-mode --key-file=- {dev} <redacted>")
    );
    assert!(!plan.iter().any(|s| s.contains("pass-phrase")));
    assert!(
        opens(&dev, OLD) && !opens(&dev, NEW),
        "plan changed nothing"
    );

    converged(e.apply(desired(name, NEW, Some(OLD), 2)).await);
    assert!(opens(&dev, NEW), "the new passphrase opens the header");
    assert!(!opens(&dev, OLD), "the old passphrase no longer does");
    assert_eq!(luks_uuid(&dev), uuid, "same header");
    assert_eq!(
        volume_key(&dev, NEW),
        key,
        "same volume key: data still decrypts"
    );
    assert!(payload(&dev) == data, "payload bytes untouched");

    // Done: the same rotation request again changes nothing.
    let again = steps(&e.plan(desired(name, NEW, Some(OLD), 2)).await.unwrap());
    assert!(
        !again.iter().any(|s| s.contains("Key")),
        "nothing left to rotate: {again:?}"
    );
    converged(e.apply(desired(name, NEW, None, 3)).await);

    let store = std::fs::read(dir.path().join("state/agent.redb")).unwrap();
    for secret in [OLD, NEW] {
        assert!(
            !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "no passphrase in the store"
        );
    }
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
}

#[tokio::test]
async fn a_rotation_cut_short_with_both_keys_in_the_header_finishes() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rot_b";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    converged(e.apply(desired(name, OLD, None, 1)).await);
    let dev = attachment(&file);
    let key = volume_key(&dev, OLD);
    // Phase one done by hand, as an agent killed after luksAddKey leaves it.
    let add = cryptsetup(
        &[
            "luksAddKey",
            "--pbkdf=pbkdf2",
            "--pbkdf-force-iterations=1000",
            &dev,
        ],
        &format!("{OLD}\n{NEW}\n"),
    );
    assert!(add.status.success());
    assert!(opens(&dev, OLD) && opens(&dev, NEW));

    let plan = steps(&e.plan(desired(name, NEW, Some(OLD), 2)).await.unwrap());
    assert!(
        !plan.iter().any(|s| s.contains("luksAddKey"))
            && plan.iter().any(|s| s.contains("luksRemoveKey")),
        "only phase two is left: {plan:?}"
    );
    converged(e.apply(desired(name, NEW, Some(OLD), 2)).await);
    assert!(opens(&dev, NEW) && !opens(&dev, OLD));
    assert_eq!(volume_key(&dev, NEW), key);
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
}

#[tokio::test]
async fn a_rotation_neither_passphrase_opens_is_refused_untouched() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rot_c";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    converged(e.apply(desired(name, OLD, None, 1)).await);
    let dev = attachment(&file);
    let header = |d: &str| {
        let mut f = std::fs::File::open(d).unwrap();
        let mut buf = vec![0u8; PAYLOAD as usize];
        f.read_exact(&mut buf).unwrap();
        buf
    };
    let before = header(&dev);

    let err = e
        .apply(desired(name, "third pass", Some("fourth pass"), 2))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
        ("luks_passphrase_mismatch", Some("passphrase"))
    );
    assert!(err.message.contains("neither"), "{}", err.message);
    assert!(
        !err.message.contains("third") && !err.message.contains("fourth"),
        "no secret in the message"
    );
    assert!(header(&dev) == before, "header untouched");

    // A passphrase cryptsetup cannot take as a line is refused before anything runs.
    let err = e
        .apply(desired(name, "two\\nlines", Some(OLD), 3))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "luks_passphrase_unrotatable");
    assert!(header(&dev) == before && opens(&dev, OLD));
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
}
