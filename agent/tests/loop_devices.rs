//! A loop-file pool with real `losetup` (tier 2): create, reuse, grow and delete with real loop
//! devices, and never touch a device that another file holds. Needs root and loop devices; each
//! test skips with the reason when something is missing.

use std::path::Path;
use std::process::Command as Proc;

use blockstor_agent::engine::Engine;

#[macro_use]
mod common;
use common::{attachments, desired, engine, DetachOnDrop};

/// Size in bytes the kernel sees for a loop device.
fn loop_size(dev: &str) -> u64 {
    let name = dev.trim_start_matches("/dev/");
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sectors * 512
}

#[tokio::test]
async fn loop_file_pool_creates_reuses_grows_and_deletes_with_real_loop_devices() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let file = dir.path().join("pool/rt_loop_00000.img");

    let first = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let dev = first.volumes[0]
        .backing_device
        .clone()
        .expect("a loop device");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        8 << 20,
        "exact size"
    );
    assert_eq!(attachments(&file), std::slice::from_ref(&dev));
    assert_eq!(first.volumes[0].device_path.as_deref(), Some(dev.as_str()));

    let again = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    assert_eq!(
        again.volumes[0].backing_device.as_deref(),
        Some(dev.as_str()),
        "re-apply reuses the device"
    );
    assert_eq!(attachments(&file).len(), 1);

    let grown = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 16384, None))
        .await
        .unwrap();
    assert_eq!(grown.volumes[0].size_kib, Some(16384));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20);
    assert_eq!(
        loop_size(&dev),
        16 << 20,
        "the capacity update made the kernel see the new size"
    );

    let err = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "shrink_refused");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20);

    assert!(e.delete(&"rt_loop".parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    assert!(attachments(&file).is_empty());
    assert!(!e.delete(&"rt_loop".parse().unwrap()).await.unwrap().deleted);
}

/// The file a loop device reads, from sysfs (`None` when unbound).
fn backing_file(dev: &str) -> Option<String> {
    let name = dev.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|t| t.trim_end().to_owned())
}

/// Binds `file` to a free loop device with `losetup -f --show`.
fn losetup_attach(file: &Path) -> String {
    let out = Proc::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup -f --show {}", file.display());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes the store say volume 0 of `name` is on `device`: what the record holds after a
/// reboot or a manual `losetup -d` let another file take the recorded number. (Taking the
/// number for real races with other tests' attaches; the agent cannot tell the difference.)
fn record_loop_device(e: &Engine, name: &str, device: &str) {
    let mut record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    record.volume(0).loop_device = Some(device.to_owned());
    e.store.put(&record).unwrap();
}

#[tokio::test]
async fn a_stale_loop_device_record_never_touches_the_file_that_took_its_number() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_stale";
    let file = dir.path().join("pool/rt_stale_00000.img");
    let (other, third) = (dir.path().join("other.img"), dir.path().join("third.img"));
    let _cleanup = DetachOnDrop(vec![file.clone(), other.clone(), third.clone()]);
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();

    let first = e
        .apply(desired(name, r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let dev = first.volumes[0].backing_device.clone().unwrap();
    let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        record.volumes[&0].loop_device.as_deref(),
        Some(dev.as_str()),
        "the device is recorded at attach"
    );

    // Someone detaches our device, and the recorded number now backs another file. That file
    // has grown since it was bound: a wrong capacity update would show in its device's size.
    let st = Proc::new("losetup").args(["-d", &dev]).status().unwrap();
    assert!(st.success());
    std::fs::write(&other, vec![0u8; 4 << 20]).unwrap();
    let taken = losetup_attach(&other);
    record_loop_device(&e, name, &taken);
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_len(6 << 20)
        .unwrap();

    let seen = e.get(&name.parse().unwrap()).await.unwrap();
    assert_eq!(
        seen.volumes[0].backing_device, None,
        "the stale record is not reported"
    );
    let grown = e
        .apply(desired(name, r#"["STORAGE"]"#, 16384, None))
        .await
        .unwrap();
    let new_dev = grown.volumes[0].backing_device.clone().unwrap();
    assert_ne!(new_dev, taken, "attached anew, not the other file's device");
    assert_eq!(backing_file(&new_dev), Some(canonical(&file)));
    assert_eq!(loop_size(&new_dev), 16 << 20);
    assert_eq!(backing_file(&taken), Some(canonical(&other)), "left alone");
    assert_eq!(loop_size(&taken), 4 << 20, "its capacity was not touched");
    let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        record.volumes[&0].loop_device.as_deref(),
        Some(new_dev.as_str()),
        "the record follows the new device"
    );

    // The same behind a delete: the recorded device backs a third file.
    std::fs::write(&third, vec![0u8; 1 << 20]).unwrap();
    let third_dev = losetup_attach(&third);
    record_loop_device(&e, name, &third_dev);
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    // (Another test may take the freed number at once, so only ask that it is not ours.)
    let ours = canonical(dir.path()) + "/pool/rt_stale_00000.img";
    assert!(
        !backing_file(&new_dev).is_some_and(|b| b.starts_with(&ours)),
        "our own device was found and detached"
    );
    assert_eq!(
        backing_file(&third_dev),
        Some(canonical(&third)),
        "not detached"
    );
    assert_eq!(
        backing_file(&taken),
        Some(canonical(&other)),
        "not detached"
    );
}

#[tokio::test]
async fn delete_detaches_a_second_attachment_made_by_hand_too() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_twice";
    let file = dir.path().join("pool/rt_twice_00000.img");
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let ours = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("pool/rt_twice_00000.img")
        .display()
        .to_string();

    let applied = e
        .apply(desired(name, r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let recorded = applied.volumes[0].backing_device.clone().unwrap();
    // An operator attaches the same file a second time (e.g. to inspect it).
    let by_hand = losetup_attach(&file);
    assert_ne!(by_hand, recorded);

    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    // (Another test may take a freed number at once, so only ask that it no longer backs ours.)
    for dev in [&recorded, &by_hand] {
        assert!(
            !backing_file(dev).is_some_and(|b| b.starts_with(&ours)),
            "{dev} still holds the removed file"
        );
    }
}

/// A STORAGE resource of `vols` volumes of 8 MiB each.
fn volumes(name: &str, vols: u32) -> blockstor_proto::wire::DesiredResource {
    let mut d = desired(name, r#"["STORAGE"]"#, 8192, None);
    d.volumes = (0..vols)
        .map(|n| {
            let mut v = d.volumes[0].clone();
            v.number = n;
            v
        })
        .collect();
    d
}

#[tokio::test]
async fn reapplying_with_fewer_volumes_removes_the_dropped_ones_and_delete_leaves_nothing() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let files: Vec<_> = (0..3)
        .map(|n| dir.path().join(format!("pool/rt_fewer_{n:05}.img")))
        .collect();
    let _cleanup = DetachOnDrop(files.clone());
    let first = e.apply(volumes("rt_fewer", 3)).await.unwrap();
    let kept = first.volumes[0].backing_device.clone().unwrap();
    let dropped = first.volumes[2].backing_device.clone().unwrap();
    // Data on a volume about to be dropped must not come back with a later re-create.
    std::fs::write(&dropped, b"old data of volume 2").unwrap();

    let plan = e.plan(volumes("rt_fewer", 1)).await.unwrap();
    let planned: Vec<String> = plan.steps.iter().map(|s| s.argv.join(" ")).collect();
    for n in [1, 2] {
        let shown = files[n].display().to_string();
        assert!(
            planned
                .iter()
                .any(|s| s == &format!("(agent) remove {shown}")),
            "the plan shows volume {n} removed: {planned:?}"
        );
    }
    let applied = e.apply(volumes("rt_fewer", 1)).await.unwrap();
    assert_eq!(applied.volumes.len(), 1);
    assert_eq!(
        applied.volumes[0].backing_device.as_deref(),
        Some(kept.as_str()),
        "the kept volume stays on its device"
    );
    for f in &files[1..] {
        assert!(!f.exists(), "{} removed", f.display());
        assert!(attachments(f).is_empty(), "{} detached", f.display());
    }
    let record = e.store.get(&"rt_fewer".parse().unwrap()).unwrap().unwrap();
    assert_eq!(record.volumes.keys().copied().collect::<Vec<_>>(), [0]);

    // A re-create of the same volumes starts from empty ones.
    let again = e.apply(volumes("rt_fewer", 3)).await.unwrap();
    let dev = again.volumes[2].backing_device.clone().unwrap();
    let head = std::fs::read(&dev).unwrap();
    assert!(head.iter().all(|b| *b == 0), "volume 2 holds no old data");

    assert!(
        e.delete(&"rt_fewer".parse().unwrap())
            .await
            .unwrap()
            .deleted
    );
    for f in &files {
        assert!(!f.exists() && attachments(f).is_empty(), "{}", f.display());
    }
    assert!(e.store.get(&"rt_fewer".parse().unwrap()).unwrap().is_none());
}
