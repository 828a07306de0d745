//! File-level access to the node: sizes, existence, the first 16 MiB of a device, kernel
//! features. Processes go through [`crate::runner`]; plain file reads and writes go through
//! [`Host`], so the engine runs against a fake node in tests.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes zeroed after a LUKS header erase, and checked before a format of foreign devices.
pub const HEAD_BYTES: u64 = 16 * 1024 * 1024;

/// The node's files and kernel features.
pub trait Host: Send + Sync {
    /// Size in bytes of a regular file, `None` when it does not exist.
    fn file_size(&self, path: &Path) -> io::Result<Option<u64>>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether the first `len` bytes (or the whole device if shorter) are zero.
    fn head_is_zero(&self, path: &Path, len: u64) -> io::Result<bool>;
    /// Overwrites the first `len` bytes (bounded by the device size) with zeros and syncs.
    fn zero_head(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file; a missing file is fine.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Size in bytes of a block device (or file), `None` when it does not exist.
    fn device_size(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Names of the entries of a directory; empty when it does not exist.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// A text file's content, `None` when it does not exist.
    fn read_to_string(&self, path: &Path) -> io::Result<Option<String>>;
    /// Writes a file readable by root only (a `.res` file holds the DRBD shared secret),
    /// atomically (temporary file + rename).
    fn write_private(&self, path: &Path, content: &str) -> io::Result<()>;
    /// Creates the file if missing (mode 0600, sparse) and sets its length: what
    /// `truncate --size=BYTES FILE` does, without spawning it. No sync: an empty sparse file
    /// guards no data, and a crash before the next step is redone by the next apply.
    fn set_len(&self, path: &Path, bytes: u64) -> io::Result<()>;
    /// Attaches `file` to the first free loop device; the device path (`losetup -f --show`).
    fn attach_loop(&self, file: &Path) -> io::Result<String>;
    /// Detaches a loop device (`losetup -d DEV`); deferred by the kernel while it is open.
    fn detach_loop(&self, device: &str) -> io::Result<()>;
    /// Makes a loop device take its grown file's size (`losetup -c DEV`).
    fn set_loop_capacity(&self, device: &str) -> io::Result<()>;
    /// Whether the loop device `device` is bound to `file` itself (same device and inode),
    /// `false` when it is unbound, missing, or bound to another file.
    fn loop_backs(&self, device: &str, file: &Path) -> io::Result<bool>;
    /// `(free_kib, total_kib)` of the file system holding `path`, for unprivileged users as
    /// `df --output=avail,size -k` shows them.
    fn fs_space_kib(&self, path: &Path) -> io::Result<(u64, u64)>;
    /// Whether the kernel has device-mapper (needed by `cryptsetup open`).
    fn device_mapper_available(&self) -> bool {
        self.exists(Path::new("/dev/mapper/control"))
            || self.exists(Path::new("/sys/module/dm_mod"))
    }
    /// Whether the DRBD kernel module is loaded.
    fn drbd_available(&self) -> bool {
        self.exists(Path::new("/proc/drbd")) || self.exists(Path::new("/sys/module/drbd"))
    }
    /// Who uses the block device `device` (mounted, open, held; see [`crate::inuse`]);
    /// `None` when nobody does or it does not exist.
    fn device_users(&self, device: &Path) -> io::Result<Option<crate::inuse::InUse>> {
        crate::inuse::Probe::default().check(device)
    }
}

/// The real node.
#[derive(Debug, Default, Clone)]
pub struct RealHost;

impl Host for RealHost {
    fn file_size(&self, path: &Path) -> io::Result<Option<u64>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn head_is_zero(&self, path: &Path, len: u64) -> io::Result<bool> {
        let mut f = std::fs::File::open(path)?.take(len);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(true);
            }
            if buf[..n].iter().any(|b| *b != 0) {
                return Ok(false);
            }
        }
    }

    fn zero_head(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        // Block devices report 0 in metadata; seek to the end for their size.
        let size = f.seek(SeekFrom::End(0))?;
        f.seek(SeekFrom::Start(0))?;
        let zeros = vec![0u8; 1024 * 1024];
        let mut left = len.min(size);
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn device_size(&self, path: &Path) -> io::Result<Option<u64>> {
        // Block devices report 0 in metadata: seek to the end instead.
        match std::fs::File::open(path) {
            Ok(mut f) => Ok(Some(f.seek(SeekFrom::End(0))?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        match std::fs::read_dir(path) {
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn read_to_string(&self, path: &Path) -> io::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_private(&self, path: &Path, content: &str) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    fn set_len(&self, path: &Path, bytes: u64) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?
            .set_len(bytes)
    }

    fn attach_loop(&self, file: &Path) -> io::Result<String> {
        crate::loopdev::attach(file)
    }

    fn detach_loop(&self, device: &str) -> io::Result<()> {
        crate::loopdev::detach(device)
    }

    fn set_loop_capacity(&self, device: &str) -> io::Result<()> {
        crate::loopdev::set_capacity(device)
    }

    fn loop_backs(&self, device: &str, file: &Path) -> io::Result<bool> {
        crate::loopdev::backs(device, file)
    }

    fn fs_space_kib(&self, path: &Path) -> io::Result<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: an all-zero `statvfs` is a valid value for the kernel to overwrite.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is NUL-terminated and `st` is a live, writable `statvfs`.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(space_kib(
            st.f_bavail as u64,
            st.f_blocks as u64,
            st.f_frsize as u64,
        ))
    }

    fn device_mapper_available(&self) -> bool {
        // A modular dm shows in /sys/module; a built-in one registers a misc device.
        Path::new("/sys/module/dm_mod").exists()
            || std::fs::read_to_string("/proc/misc")
                .is_ok_and(|m| m.lines().any(|l| l.trim_end().ends_with(" device-mapper")))
    }
}

/// `(free, total)` in KiB from `statvfs` block counts, rounded up as `df -k` rounds them.
fn space_kib(avail_blocks: u64, total_blocks: u64, block_size: u64) -> (u64, u64) {
    let kib = |blocks: u64| (u128::from(blocks) * u128::from(block_size)).div_ceil(1024) as u64;
    (kib(avail_blocks), kib(total_blocks))
}

#[cfg(any(test, feature = "test-support"))]
mod fake;
#[cfg(any(test, feature = "test-support"))]
pub use fake::{FakeFile, FakeHost};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_figures_match_df() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = RealHost.fs_space_kib(dir.path()).unwrap();
        let out = std::process::Command::new("df")
            .args(["--output=avail,size", "-k"])
            .arg(dir.path())
            .output();
        let Some(out) = out.ok().filter(|o| o.status.success()) else {
            eprintln!("skipped: needs GNU df to compare with");
            return;
        };
        let text = String::from_utf8(out.stdout).unwrap();
        let nums: Vec<u64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(total, nums[1], "{text}");
        // Free space moves while other processes write: allow 64 MiB of drift.
        assert!(free.abs_diff(nums[0]) < 65536, "{free} vs {text}");
    }

    #[test]
    fn space_is_rounded_up_to_whole_kib_as_df_does() {
        assert_eq!(space_kib(3, 10, 4096), (12, 40));
        assert_eq!(space_kib(3, 5, 512), (2, 3));
        assert_eq!(space_kib(0, 0, 4096), (0, 0));
    }

    #[test]
    fn real_host_zeroes_and_checks_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dev");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        assert!(!RealHost.head_is_zero(&p, HEAD_BYTES).unwrap());
        RealHost.zero_head(&p, HEAD_BYTES).unwrap();
        assert!(RealHost.head_is_zero(&p, HEAD_BYTES).unwrap());
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            4096,
            "zeroing never grows a file"
        );
    }
}
