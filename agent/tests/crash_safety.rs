//! Crash safety with real tools (docs/design.md §6): the agent "dies" right after a step ran but
//! before its journal entry was marked done (as with kill -9), restarts on the same state
//! directory, and the next apply converges to the same device with the same data, never
//! formatting twice. Steps the agent does itself (sizing the file, attaching the loop device) die
//! the same way through the host. Needs root, loop devices and cryptsetup; skips otherwise.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command as Proc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use blockstor_agent::engine::Engine;
use blockstor_agent::host::{Host, RealHost};
use blockstor_agent::runner::{Command, Output, RunError, Runner, SystemRunner};
use blockstor_agent::store::{StepState, Store};
use blockstor_proto::wire::DesiredResource;

#[macro_use]
mod common;
use common::{attachments, engine, engine_on, DetachOnDrop};

/// Runs everything for real; after the n-th command starting with `prefix` has run, reports
/// a failure, the way a killed agent never records the step as done.
struct DiesAfter {
    prefix: &'static str,
    n: usize,
    seen: AtomicUsize,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl Runner for DiesAfter {
    async fn run(&self, cmd: &Command) -> Result<Output, RunError> {
        let out = SystemRunner.run(cmd).await?;
        self.log.lock().unwrap().push(cmd.to_string());
        if cmd.to_string().starts_with(self.prefix)
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n
        {
            return Err(RunError::Spawn {
                command: cmd.to_string(),
                error: "simulated kill -9".into(),
            });
        }
        Ok(out)
    }
}

/// The same for the steps the agent does itself (`(agent) set-size`, `(agent) attach-loop`,
/// `(agent) set-capacity`, `(agent) detach-loop`):
/// the real step happens, then the failure is reported.
impl Host for DiesAfter {
    fn file_size(&self, path: &Path) -> io::Result<Option<u64>> {
        RealHost.file_size(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealHost.exists(path)
    }
    fn head_is_zero(&self, path: &Path, len: u64) -> io::Result<bool> {
        RealHost.head_is_zero(path, len)
    }
    fn zero_head(&self, path: &Path, len: u64) -> io::Result<()> {
        RealHost.zero_head(path, len)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealHost.remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealHost.create_dir_all(path)
    }
    fn device_size(&self, path: &Path) -> io::Result<Option<u64>> {
        RealHost.device_size(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealHost.list_dir(path)
    }
    fn read_to_string(&self, path: &Path) -> io::Result<Option<String>> {
        RealHost.read_to_string(path)
    }
    fn write_private(&self, path: &Path, content: &str) -> io::Result<()> {
        RealHost.write_private(path, content)
    }
    fn set_len(&self, path: &Path, bytes: u64) -> io::Result<()> {
        RealHost.set_len(path, bytes)?;
        self.host_step(format!("(agent) set-size {bytes} {}", path.display()))
    }
    fn attach_loop(&self, file: &Path) -> io::Result<String> {
        let device = RealHost.attach_loop(file)?;
        self.host_step(format!("(agent) attach-loop {}", file.display()))?;
        Ok(device)
    }
    fn detach_loop(&self, device: &str) -> io::Result<()> {
        RealHost.detach_loop(device)?;
        self.host_step(format!("(agent) detach-loop {device}"))
    }
    fn set_loop_capacity(&self, device: &str) -> io::Result<()> {
        RealHost.set_loop_capacity(device)?;
        self.host_step(format!("(agent) set-capacity {device}"))
    }
    fn loop_backs(&self, device: &str, file: &Path) -> io::Result<bool> {
        RealHost.loop_backs(device, file)
    }
    fn fs_space_kib(&self, path: &Path) -> io::Result<(u64, u64)> {
        RealHost.fs_space_kib(path)
    }
    fn device_mapper_available(&self) -> bool {
        RealHost.device_mapper_available()
    }
    fn drbd_available(&self) -> bool {
        RealHost.drbd_available()
    }
}

impl DiesAfter {
    fn new(prefix: &'static str) -> Arc<Self> {
        Arc::new(DiesAfter {
            prefix,
            n: 1,
            seen: AtomicUsize::new(0),
            log: Mutex::new(vec![]),
        })
    }

    /// Logs a step the agent did itself; fails the n-th one matching `prefix`.
    fn host_step(&self, action: String) -> io::Result<()> {
        let dies = action.starts_with(self.prefix)
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n;
        self.log.lock().unwrap().push(action);
        if dies {
            return Err(io::Error::other("simulated kill -9"));
        }
        Ok(())
    }
}

/// An engine whose steps, commands and the agent's own alike, go through `dying`.
fn dying_engine(dir: &Path, dying: Arc<DiesAfter>) -> Engine {
    engine_on(dir, dying.clone(), dying)
}

fn desired(name: &str, stack: &str, size_kib: u64) -> DesiredResource {
    serde_json::from_str(&format!(
        r#"{{"name":"{name}","layer_stack":{stack},"volumes":[{{"number":0,"size_kib":{size_kib}}}],
            "storage":{{"pool":"files"}},"luks":{{"passphrase":"crash-test-pass"}},
            "props":{{"Luks/pbkdf":"pbkdf2","Luks/pbkdf-force-iterations":"1000"}}}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn killed_at_any_luks_step_the_next_apply_converges_without_formatting_twice() {
    skip_unless!("cryptsetup", "losetup");
    for (prefix, name) in [
        ("(agent) set-size", "crash_a"),
        ("(agent) attach-loop", "crash_b"),
        ("cryptsetup luksFormat", "crash_c"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("pool/{name}_00000.img"));
        let _cleanup = DetachOnDrop(vec![file.clone()]);
        let dying = DiesAfter::new(prefix);
        {
            let e = dying_engine(dir.path(), dying.clone());
            let err = e
                .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384))
                .await
                .unwrap_err();
            assert!(
                err.message.contains("simulated kill -9"),
                "{prefix}: {err:?}"
            );
        }
        // Restart: the interrupted step is found in the journal.
        let store = Store::open(&dir.path().join("state")).unwrap();
        let interrupted = store.reconcile().unwrap();
        assert_eq!(interrupted.len(), 1, "{prefix}");
        assert!(
            interrupted[0].1.action.starts_with(prefix),
            "{prefix}: {:?}",
            interrupted[0].1
        );
        drop(store);

        let recorded = DiesAfter::new("never");
        let e = dying_engine(dir.path(), recorded.clone());
        let result = e.apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384)).await;
        if let Err(err) = &result {
            assert_eq!(
                err.code.as_str(),
                "kernel_feature_missing",
                "{prefix}: {err:?}"
            );
        }
        let formats = |log: &Mutex<Vec<String>>| {
            log.lock()
                .unwrap()
                .iter()
                .filter(|c| c.contains("luksFormat"))
                .count()
        };
        assert_eq!(
            formats(&dying.log) + formats(&recorded.log),
            1,
            "{prefix}: formatted exactly once"
        );
        assert_eq!(
            attachments(&file).len(),
            1,
            "{prefix}: one loop device, reused"
        );
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20);
        let dev = attachments(&file).pop().unwrap();
        assert!(Proc::new("cryptsetup")
            .args(["isLuks", &dev])
            .status()
            .unwrap()
            .success());
        let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
        assert!(
            record.journal.iter().all(|j| j.state != StepState::Intent),
            "{prefix}"
        );
        e.delete(&name.parse().unwrap()).await.unwrap();
        assert!(attachments(&file).is_empty());
    }
}

#[tokio::test]
async fn killed_mid_grow_the_device_and_its_data_survive() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "crash_grow";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let stack = r#"["STORAGE"]"#;
    let first = engine(dir.path())
        .apply(desired(name, stack, 8192))
        .await
        .unwrap();
    let dev = first.volumes[0].backing_device.clone().unwrap();
    let marker = b"blockstor data that must survive";
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(marker).unwrap();
        f.sync_all().unwrap();
    }
    // Dies after the file grew, before the device is told its new capacity.
    let dying = DiesAfter::new("(agent) set-size");
    dying_engine(dir.path(), dying)
        .apply(desired(name, stack, 16384))
        .await
        .unwrap_err();
    let e = engine(dir.path());
    let after = e.apply(desired(name, stack, 16384)).await.unwrap();
    assert_eq!(
        after.volumes[0].backing_device.as_deref(),
        Some(dev.as_str()),
        "same device"
    );
    assert_eq!(after.volumes[0].size_kib, Some(16384));
    let sectors = std::fs::read_to_string(format!(
        "/sys/block/{}/size",
        dev.trim_start_matches("/dev/")
    ))
    .unwrap();
    assert_eq!(
        sectors.trim().parse::<u64>().unwrap() * 512,
        16 << 20,
        "the kernel sees the grown size"
    );
    let mut buf = vec![0u8; marker.len()];
    let mut f = std::fs::File::open(&dev).unwrap();
    f.seek(SeekFrom::Start(4 << 20)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, marker, "data intact");
    drop(f);
    e.delete(&name.parse().unwrap()).await.unwrap();
}

/// Runs everything for real, except that `luksFormat` is "killed" after writing its header and
/// before its keyslot: the header is written, its only keyslot removed again, and the step
/// reported as cut short. This is the state a SIGKILL during the key derivation leaves.
struct FormatKilledBeforeItsKeyslot;

#[async_trait]
impl Runner for FormatKilledBeforeItsKeyslot {
    async fn run(&self, cmd: &Command) -> Result<Output, RunError> {
        let out = SystemRunner.run(cmd).await?;
        if cmd.args.first().map(String::as_str) == Some("luksFormat") {
            let dev = cmd.args.last().unwrap();
            let kill = Command::new("cryptsetup", ["luksKillSlot", "--batch-mode", dev, "0"]);
            SystemRunner.run_ok(&kill).await?;
            return Err(RunError::Spawn {
                command: cmd.to_string(),
                error: "simulated kill -9 before the keyslot".into(),
            });
        }
        Ok(out)
    }
}

/// Keyslots of the LUKS2 header on `dev`.
fn keyslots(dev: &str) -> usize {
    let out = Proc::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata", dev])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["keyslots"].as_object().unwrap().len()
}

fn luks_uuid(dev: &str) -> String {
    let out = Proc::new("cryptsetup")
        .args(["luksUUID", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_header_left_without_keyslot_by_a_killed_format_is_redone_with_its_uuid() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "half_hdr";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let doc = || desired(name, r#"["LUKS","STORAGE"]"#, 16384);
    {
        let e = engine_on(
            dir.path(),
            Arc::new(FormatKilledBeforeItsKeyslot),
            Arc::new(RealHost),
        );
        let err = e.apply(doc()).await.unwrap_err();
        assert!(err.message.contains("before the keyslot"), "{err:?}");
    }
    let dev = attachments(&file).pop().expect("attached");
    assert_eq!(keyslots(&dev), 0, "a header without keyslot");
    let uuid = luks_uuid(&dev);

    let e = engine(dir.path());
    if let Err(err) = e.apply(doc()).await {
        assert_eq!(err.code.as_str(), "kernel_feature_missing", "{err:?}");
    }
    assert_eq!(keyslots(&dev), 1, "the format was redone");
    assert_eq!(luks_uuid(&dev), uuid, "with the UUID it was writing");
    let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    assert!(!record.volumes[&0].awaiting_luks_format);
    e.delete(&name.parse().unwrap()).await.unwrap();
    assert!(attachments(&file).is_empty() && !file.exists());
}

#[tokio::test]
async fn delete_without_a_reapply_removes_a_half_formatted_volume() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "half_del";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    {
        let e = engine_on(
            dir.path(),
            Arc::new(FormatKilledBeforeItsKeyslot),
            Arc::new(RealHost),
        );
        e.apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384))
            .await
            .unwrap_err();
    }
    let e = engine(dir.path());
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(attachments(&file).is_empty(), "no loop device");
    assert!(!file.exists(), "no file");
    assert!(
        e.store.get(&name.parse().unwrap()).unwrap().is_none(),
        "no record"
    );
}

#[tokio::test]
async fn a_header_without_keyslot_on_a_volume_whose_format_completed_is_refused_untouched() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "keyless";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let e = engine(dir.path());
    let mut doc = desired(name, r#"["LUKS","STORAGE"]"#, 16384);
    if let Err(err) = e.apply(doc.clone()).await {
        assert_eq!(err.code.as_str(), "kernel_feature_missing", "{err:?}");
    }
    let dev = attachments(&file).pop().expect("attached");
    let uuid = luks_uuid(&dev);
    // Someone removes the only keyslot by hand: the volume may hold data nobody can open now.
    SystemRunner
        .run_ok(&Command::new(
            "cryptsetup",
            ["luksKillSlot", "--batch-mode", dev.as_str(), "0"],
        ))
        .await
        .unwrap();
    doc.generation += 1;
    let err = e.apply(doc).await.unwrap_err();
    assert_eq!(err.code.as_str(), "luks_foreign_data", "{err:?}");
    assert!(err.message.contains("no usable keyslot"), "{}", err.message);
    assert_eq!(
        (keyslots(&dev), luks_uuid(&dev)),
        (0, uuid),
        "left untouched"
    );
    e.delete(&name.parse().unwrap()).await.unwrap();
}
