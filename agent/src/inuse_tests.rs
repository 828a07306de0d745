use std::process::Command as Process;

use super::*;
use crate::runner::{Output, RecordingRunner};

/// A loop device on a scratch file, detached (and unmounted) on drop. `None` when this machine
/// cannot attach one (not root, no losetup): the caller skips and says why.
struct Loop {
    device: PathBuf,
    mounted: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn attach() -> Option<Loop> {
        let dir = tempfile::tempdir().ok()?;
        let file = dir.path().join("disk.img");
        fs::File::create(&file).ok()?.set_len(32 << 20).ok()?;
        let out = Process::new("losetup")
            .args(["-f", "--show"])
            .arg(&file)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: needs root and losetup ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Some(Loop {
            device,
            mounted: None,
            _dir: dir,
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(at) = &self.mounted {
            let _ = Process::new("umount").arg(at).status();
        }
        let _ = Process::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn n1() -> NodeName {
    "n1".parse().unwrap()
}

#[test]
fn a_loop_device_opened_by_this_process_is_found_with_its_pid() {
    let Some(lo) = Loop::attach() else { return };
    let probe = Probe::default();
    // udev may probe a new device for a moment, so only this process's own use is asserted.
    let this_process = |found: Option<InUse>| {
        found.map_or(0, |f| {
            f.users
                .iter()
                .filter(|u| matches!(u, User::Opened { pid, .. } if *pid == std::process::id()))
                .count()
        })
    };
    assert_eq!(this_process(probe.check(&lo.device).unwrap()), 0);
    let held = fs::File::open(&lo.device).unwrap();
    let in_use = probe.check(&lo.device).unwrap().expect("the open is seen");
    let comm = fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        in_use.users.contains(&User::Opened {
            pid: std::process::id(),
            comm: comm.clone()
        }),
        "{in_use}"
    );
    let message = in_use.error(&n1()).message;
    assert!(
        message.starts_with(&format!("node n1: {} is in use: ", lo.device.display()))
            && message.contains(&format!(
                "opened by process {} ({comm})",
                std::process::id()
            )),
        "{message}"
    );
    drop(held);
    assert_eq!(
        this_process(probe.check(&lo.device).unwrap()),
        0,
        "free once closed"
    );
}

#[test]
fn a_mounted_ext4_loop_device_is_found_with_its_mount_point() {
    let Some(mut lo) = Loop::attach() else { return };
    let mkfs = Process::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&lo.device)
        .status();
    if !mkfs.is_ok_and(|s| s.success()) {
        eprintln!("skipped: needs mkfs.ext4 (apt-get install -y e2fsprogs)");
        return;
    }
    let at = tempfile::tempdir().unwrap();
    let mounted = Process::new("mount")
        .arg(&lo.device)
        .arg(at.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount of a fresh ext4 works here");
    lo.mounted = Some(at.path().to_owned());
    let in_use = Probe::default()
        .check(&lo.device)
        .unwrap()
        .expect("the mount is seen");
    let at_text = at.path().display().to_string();
    assert_eq!(
        in_use.users[0],
        User::Mounted {
            at: at_text.clone()
        },
        "{in_use}"
    );
    let err = in_use.error(&n1());
    assert_eq!(
        (err.code.as_str(), err.field.as_deref()),
        ("device_in_use", Some("force_destroy"))
    );
    assert!(
        err.message.starts_with(&format!(
            "node n1: {} is in use: mounted at {at_text}",
            lo.device.display()
        )),
        "{}",
        err.message
    );
    Process::new("umount").arg(at.path()).status().unwrap();
    lo.mounted = None;
    let after = Probe::default().check(&lo.device).unwrap();
    assert!(
        !after.is_some_and(|f| f.users.iter().any(|u| matches!(u, User::Mounted { .. }))),
        "not mounted once unmounted"
    );
}

/// A real holder needs a device-mapper table on the loop device; this kernel has no
/// device-mapper (`/proc/misc` does not list it, even where a `/dev/mapper/control` node was
/// made by hand), so the test skips there and says so.
#[test]
fn a_device_mapper_holder_is_found_needs_device_mapper_which_this_kernel_lacks() {
    let misc = fs::read_to_string("/proc/misc").unwrap_or_default();
    if !misc
        .lines()
        .any(|l| l.trim_end().ends_with(" device-mapper"))
    {
        eprintln!("skipped: needs device-mapper (dm-mod), which this kernel lacks");
        return;
    }
    let Some(lo) = Loop::attach() else { return };
    let name = format!("blockstor-inuse-test-{}", std::process::id());
    let sectors = 32 * 2048;
    let created = Process::new("dmsetup")
        .args(["create", &name, "--table"])
        .arg(format!("0 {sectors} linear {} 0", lo.device.display()))
        .status();
    if !created.is_ok_and(|s| s.success()) {
        eprintln!("skipped: needs dmsetup (apt-get install -y dmsetup)");
        return;
    }
    let found = Probe::default().check(&lo.device);
    let _ = Process::new("dmsetup").args(["remove", &name]).status();
    let users = found
        .unwrap()
        .expect("the mapping holds the loop device")
        .users;
    assert!(
        matches!(users.as_slice(), [User::Holder { name }] if name.starts_with("dm-")),
        "{users:?}"
    );
}

#[test]
fn holders_are_read_from_sysfs_by_major_and_minor() {
    let sys = tempfile::tempdir().unwrap();
    let holders = sys.path().join("dev/block/7:3/holders");
    fs::create_dir_all(holders.join("dm-4")).unwrap();
    fs::create_dir_all(holders.join("dm-1")).unwrap();
    fs::create_dir_all(sys.path().join("dev/block/7:4/holders")).unwrap();
    let probe = Probe {
        proc_root: "/proc".into(),
        sys_root: sys.path().to_owned(),
    };
    assert_eq!(
        probe.holders(7, 3),
        [
            User::Holder {
                name: "dm-1".into()
            },
            User::Holder {
                name: "dm-4".into()
            }
        ]
    );
    assert!(probe.holders(7, 4).is_empty());
    assert!(probe.holders(7, 5).is_empty(), "no such device: no holder");
}

#[test]
fn mountinfo_matches_by_major_minor_or_source_and_unescapes_the_mount_point() {
    let info = "22 1 7:3 / /mnt/with\\040space rw,relatime - ext4 /dev/loop3 rw\n\
                23 1 0:52 / /srv/btrfs rw - btrfs /dev/loop3 rw\n\
                24 1 7:4 / /mnt/other rw - ext4 /dev/loop4 rw\n";
    let dev = Path::new("/dev/loop3");
    assert_eq!(
        mounts(info, 7, 3, &[dev]),
        [
            User::Mounted {
                at: "/mnt/with space".into()
            },
            User::Mounted {
                at: "/srv/btrfs".into()
            }
        ]
    );
    assert!(mounts(info, 7, 9, &[Path::new("/dev/loop9")]).is_empty());
}

#[test]
fn a_device_that_does_not_exist_is_not_in_use_and_a_file_is_refused() {
    let probe = Probe::default();
    assert_eq!(
        probe
            .check(Path::new("/dev/blockstor-no-such-device"))
            .unwrap(),
        None
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(
        probe.check(file.path()).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn a_primary_drbd_replica_is_a_user_and_a_secondary_one_is_not() {
    let rd: ResourceName = "db".parse().unwrap();
    let res = Path::new("/state/drbd.d/db.res");
    for (answer, primary) in [
        (Output::ok("Primary\n"), true),
        (Output::ok("Primary/Secondary\n"), true),
        (Output::ok("Secondary/Primary\n"), false),
        (Output::ok("Secondary\n"), false),
        (Output::fail(10, "db: No such resource"), false),
    ] {
        let runner = RecordingRunner::new();
        runner.on(&["drbdadm"], answer.clone());
        let user = drbd_primary(&runner, &n1(), res, &rd).await.unwrap();
        assert_eq!(user.is_some(), primary, "{answer:?}");
        assert_eq!(
            runner.commands(),
            ["drbdadm -c /state/drbd.d/db.res role db"]
        );
        if let Some(u) = user {
            assert_eq!(u.to_string(), "DRBD resource db is Primary here");
        }
    }
}
