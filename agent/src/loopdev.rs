//! Loop devices set up, resized, checked and torn down in-process, with the ioctls `losetup`
//! uses (linux/loop.h): `-f --show FILE`, `-c DEV` and `-d DEV`. A spawn costs ~1 ms of
//! fork/exec and dynamic loading per step, which was about half of a STORAGE apply's time.
//!
//! Two applies at once may pick the same free device: `LOOP_CTL_GET_FREE` only names a free
//! device, it does not reserve it. The bind itself (`LOOP_CONFIGURE`, or `LOOP_SET_FD` on kernels
//! before 5.8) fails with `EBUSY` for the loser, which asks again, as `losetup` does.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `/dev/loop-control`, which hands out free loop devices.
const LOOP_CONTROL: &str = "/dev/loop-control";

// ioctl numbers from linux/loop.h.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// `LO_NAME_SIZE` of linux/loop.h.
const LO_NAME_SIZE: usize = 64;

/// How often a bind that lost the race for a free device is retried.
const ATTEMPTS: usize = 16;

/// `struct loop_info64` of linux/loop.h (232 bytes).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of linux/loop.h (304 bytes), the argument of `LOOP_CONFIGURE`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopInfo64 {
    /// No offset, no size limit, no flags; the file name as `losetup` records it (shown by
    /// `losetup -l`, truncated to 63 bytes; the kernel's `backing_file` in sysfs is the full
    /// path either way).
    fn for_file(file: &Path) -> Self {
        let mut lo_file_name = [0u8; LO_NAME_SIZE];
        let bytes = file.as_os_str().as_bytes();
        let n = bytes.len().min(LO_NAME_SIZE - 1);
        lo_file_name[..n].copy_from_slice(&bytes[..n]);
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name,
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// Attaches `file` to the first free loop device, read-write; returns the device path
/// (`/dev/loopN`), as `losetup -f --show FILE` prints it.
pub fn attach(file: &Path) -> io::Result<String> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(file)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL)?;
    let mut last = io::Error::other("no attempt made");
    for _ in 0..ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let index = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if index < 0 {
            return Err(io::Error::last_os_error());
        }
        let device = format!("/dev/loop{index}");
        let loop_file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&device)?;
        match bind(&loop_file, &backing, file) {
            Ok(()) => return Ok(device),
            // Another process bound this device between GET_FREE and our bind: ask again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("no free loop device after {ATTEMPTS} attempts (all taken meanwhile): {last}"),
    ))
}

/// Detaches `device` from its file, as `losetup -d DEV` does (`LOOP_CLR_FD`). While someone
/// else still holds the device open (a mapping, a mount) the kernel cannot tear it down now: it
/// marks it autoclear and detaches it when the last opener closes it, and answers success, as
/// for `losetup -d`. A device that is not bound (detached meanwhile) is fine: the result is the
/// same.
pub fn detach(device: &str) -> io::Result<()> {
    let dev = open_device(device)?;
    // SAFETY: LOOP_CLR_FD takes no argument.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD, 0 as libc::c_ulong) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENXIO) {
            return Err(err);
        }
    }
    Ok(())
}

/// Makes `device` take its file's current size, as `losetup -c DEV` does
/// (`LOOP_SET_CAPACITY`), after the file grew.
pub fn set_capacity(device: &str) -> io::Result<()> {
    let dev = open_device(device)?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_CAPACITY, 0 as libc::c_ulong) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `device` is bound to `file` itself: the kernel's record of the backing file's
/// device and inode (`LOOP_GET_STATUS64`) are those of `file` now. A bound loop device holds
/// its file open, so no other file can have that inode meanwhile: this tells a device
/// recorded earlier from the same number reused for another file (after a reboot, or a
/// manual `losetup -d`), and from the file deleted and created again. `false` when the device
/// does not exist or is not bound.
pub fn backs(device: &str, file: &Path) -> io::Result<bool> {
    let Ok(dev) = open_device(device) else {
        return Ok(false);
    };
    let mut info = LoopInfo64::for_file(Path::new(""));
    // SAFETY: `info` is a live `struct loop_info64` the kernel fills in.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64, &mut info) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(false), // not bound
            _ => Err(err),
        };
    }
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    use std::os::unix::fs::MetadataExt;
    Ok(info.lo_inode == meta.ino() && info.lo_device == kernel_dev(meta.dev()))
}

/// `st_dev` as the kernel writes it into `lo_device` (`new_encode_dev`, which glibc's
/// encoding agrees with only for majors below 4096).
fn kernel_dev(st_dev: u64) -> u64 {
    let (major, minor) = (libc::major(st_dev) as u64, libc::minor(st_dev) as u64);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Opens `/dev/loopN` read-only (no write-close event for udev); refuses other paths, so a
/// loop ioctl never reaches another kind of device.
fn open_device(device: &str) -> io::Result<File> {
    let is_loop = device
        .strip_prefix("/dev/loop")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_loop {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{device} is not a loop device (/dev/loopN)"),
        ));
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
}

/// Binds `backing` to the loop device `loop_file`: `LOOP_CONFIGURE` (Linux ≥ 5.8, one call),
/// else `LOOP_SET_FD` + `LOOP_SET_STATUS64`.
fn bind(loop_file: &File, backing: &File, path: &Path) -> io::Result<()> {
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64::for_file(path),
        reserved: [0; 8],
    };
    // SAFETY: `config` is a live, correctly laid out `struct loop_config`; the kernel only reads it.
    let rc = unsafe { libc::ioctl(loop_file.as_raw_fd(), LOOP_CONFIGURE, &config) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Older kernels answer EINVAL (or ENOTTY) to the unknown request.
    if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) {
        return Err(err);
    }
    // SAFETY: LOOP_SET_FD takes the backing file descriptor as its argument.
    let rc = unsafe {
        libc::ioctl(
            loop_file.as_raw_fd(),
            LOOP_SET_FD,
            backing.as_raw_fd() as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `config.info` is a live `struct loop_info64`; the kernel only reads it.
    let rc = unsafe { libc::ioctl(loop_file.as_raw_fd(), LOOP_SET_STATUS64, &config.info) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs_loop_control() -> bool {
        let ok = Path::new(LOOP_CONTROL).exists() && unsafe { libc::geteuid() } == 0;
        if !ok {
            eprintln!("skipped: needs root and /dev/loop-control (loop devices)");
        }
        ok
    }

    fn backing_file_of(device: &str) -> String {
        let name = device.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .unwrap()
            .trim_end()
            .to_owned()
    }

    #[test]
    fn attaches_a_file_as_losetup_does_and_sysfs_names_it() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.img");
        File::create(&file).unwrap().set_len(4 << 20).unwrap();
        let device = attach(&file).unwrap();
        let backing = backing_file_of(&device);
        let size = std::fs::read_to_string(format!(
            "/sys/block/{}/size",
            device.trim_start_matches("/dev/")
        ));
        detach(&device).unwrap();
        assert_eq!(
            backing,
            std::fs::canonicalize(&file).unwrap().to_str().unwrap()
        );
        assert_eq!(size.unwrap().trim(), "8192", "4 MiB in 512-byte sectors");
    }

    #[test]
    fn parallel_attaches_get_distinct_devices() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..8)
            .map(|i| {
                let f = dir.path().join(format!("v{i}.img"));
                File::create(&f).unwrap().set_len(1 << 20).unwrap();
                f
            })
            .collect();
        let devices: Vec<io::Result<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = files.iter().map(|f| s.spawn(|| attach(f))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let attached: Vec<String> = devices.iter().flatten().cloned().collect();
        for d in &attached {
            detach(d).unwrap();
        }
        let failed: Vec<_> = devices.iter().filter_map(|d| d.as_ref().err()).collect();
        assert!(failed.is_empty(), "{failed:?}");
        let mut unique = attached.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), files.len(), "{attached:?}");
    }

    fn sysfs(device: &str, attr: &str) -> Option<String> {
        let name = device.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/{attr}"))
            .ok()
            .map(|t| t.trim_end().to_owned())
    }

    /// Waits up to 2 s for the kernel to finish a teardown (udev and the block layer may hold
    /// the device for a moment after the last close).
    fn gone(device: &str) -> bool {
        for _ in 0..200 {
            if sysfs(device, "loop/backing_file").is_none() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    fn sized_file(dir: &Path, name: &str, bytes: u64) -> std::path::PathBuf {
        let f = dir.join(name);
        File::create(&f).unwrap().set_len(bytes).unwrap();
        f
    }

    #[test]
    fn detach_in_process_removes_the_device_from_sysfs_and_is_idempotent() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = sized_file(dir.path(), "v.img", 1 << 20);
        let device = attach(&file).unwrap();
        assert!(sysfs(&device, "loop/backing_file").is_some());
        detach(&device).unwrap();
        assert!(gone(&device), "{device} still bound");
        detach(&device).expect("detaching an unbound device is fine");
    }

    #[test]
    fn detach_of_a_device_held_open_is_deferred_until_the_last_close() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = sized_file(dir.path(), "v.img", 1 << 20);
        let device = attach(&file).unwrap();
        let holder = File::open(&device).unwrap();
        detach(&device).expect("deferred, as losetup -d");
        assert_eq!(
            sysfs(&device, "loop/autoclear").as_deref(),
            Some("1"),
            "marked to detach on the last close"
        );
        assert!(sysfs(&device, "loop/backing_file").is_some(), "still bound");
        drop(holder);
        assert!(gone(&device), "{device} not torn down after the last close");
    }

    #[test]
    fn set_capacity_after_a_file_grow_changes_the_sysfs_size() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = sized_file(dir.path(), "v.img", 4 << 20);
        let device = attach(&file).unwrap();
        let before = sysfs(&device, "size");
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let unchanged = sysfs(&device, "size");
        let result = set_capacity(&device);
        let after = sysfs(&device, "size");
        detach(&device).unwrap();
        result.unwrap();
        assert_eq!(before.as_deref(), Some("8192"));
        assert_eq!(unchanged.as_deref(), Some("8192"), "not before it is told");
        assert_eq!(after.as_deref(), Some("16384"), "8 MiB in 512-byte sectors");
    }

    #[test]
    fn a_device_backs_its_own_file_only() {
        if !needs_loop_control() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let a = sized_file(dir.path(), "a.img", 1 << 20);
        let b = sized_file(dir.path(), "b.img", 1 << 20);
        let device = attach(&a).unwrap();
        let own = backs(&device, &a);
        let other = backs(&device, &b);
        // The file deleted and created again at the same path: a different file.
        std::fs::remove_file(&a).unwrap();
        let recreated = sized_file(dir.path(), "a.img", 1 << 20);
        let after_recreate = backs(&device, &recreated);
        detach(&device).unwrap();
        assert!(gone(&device));
        let unbound = backs(&device, &b);
        assert!(own.unwrap(), "bound to a");
        assert!(!other.unwrap(), "not b");
        assert!(!after_recreate.unwrap(), "the deleted a, not the new one");
        assert!(!unbound.unwrap(), "an unbound device backs nothing");
        assert!(!backs("/dev/loop999999", &b).unwrap(), "no such device");
        assert!(backs("/dev/sda", &b).is_ok_and(|x| !x), "not a loop device");
    }

    #[test]
    fn loop_ioctls_refuse_paths_that_are_not_loop_devices() {
        for bad in [
            "/dev/sda",
            "/dev/loop",
            "/dev/loop1x",
            "/dev/loop-control",
            "loop1",
        ] {
            let err = set_capacity(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert_eq!(detach(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}
