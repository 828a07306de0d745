//! File-level access to the node: sizes, existence, the first 16 MiB of a device, kernel
//! features. Processes go through [`crate::runner`]; plain file reads and writes go through
//! [`Host`], so the engine runs against a fake node in tests.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// An in-memory node for engine tests: known paths with a size and whether their head is zero.
#[derive(Debug, Default)]
pub struct FakeHost {
    files: Mutex<BTreeMap<PathBuf, FakeFile>>,
    /// Whether device-mapper is present.
    pub device_mapper: bool,
    /// Paths zeroed by `zero_head`, in order.
    pub zeroed: Mutex<Vec<PathBuf>>,
    /// Text files written with `write_private`.
    pub texts: Mutex<BTreeMap<PathBuf, String>>,
    /// Whether the DRBD kernel module is loaded.
    pub drbd: bool,
    /// What `attach_loop` answers ([`FakeHost::new`]: `/dev/loop7`).
    pub loop_device: String,
    /// Loop-device steps as `set-size BYTES PATH`, `attach-loop PATH`, `detach-loop DEV`,
    /// `set-capacity DEV`.
    pub steps: Mutex<Vec<String>>,
    /// Which file each loop device backs, for `loop_backs` (empty: every check fails, so
    /// lookups fall back to `losetup -j`).
    pub loop_backing: Mutex<BTreeMap<String, PathBuf>>,
    /// What `fs_space_kib` answers.
    pub space_kib: (u64, u64),
    /// When set, each loop-device step is also marked with how many commands this runner had
    /// run before it ([`FakeHost::after_commands`]), so tests can order the two.
    pub runner: Option<std::sync::Arc<crate::runner::RecordingRunner>>,
    step_marks: Mutex<Vec<(usize, String)>>,
    /// Loop-device steps starting with this fail (after being recorded), like a killed agent.
    pub fail_step: Mutex<Option<String>>,
}

/// One file or device of a [`FakeHost`].
#[derive(Debug, Clone, Copy)]
pub struct FakeFile {
    pub size: u64,
    pub zero_head: bool,
}

impl FakeHost {
    /// A node with device-mapper.
    pub fn new() -> Self {
        FakeHost {
            device_mapper: true,
            loop_device: "/dev/loop7".into(),
            ..Default::default()
        }
    }

    /// A node with device-mapper whose `attach_loop` answers `device`.
    pub fn with_loop_device(device: &str) -> Self {
        FakeHost {
            loop_device: device.to_owned(),
            ..FakeHost::new()
        }
    }

    /// How many runner commands had run before the first loop-device step starting with
    /// `prefix` (needs [`FakeHost::runner`]).
    pub fn after_commands(&self, prefix: &str) -> Option<usize> {
        let marks = self.step_marks.lock().unwrap();
        marks
            .iter()
            .find(|(_, s)| s.starts_with(prefix))
            .map(|(n, _)| *n)
    }

    fn record_step(&self, step: String) -> io::Result<()> {
        if let Some(r) = &self.runner {
            let n = r.calls().len();
            self.step_marks.lock().unwrap().push((n, step.clone()));
        }
        let fails =
            matches!(&*self.fail_step.lock().unwrap(), Some(p) if step.starts_with(p.as_str()));
        self.steps.lock().unwrap().push(step);
        if fails {
            return Err(io::Error::other("simulated failure"));
        }
        Ok(())
    }

    /// Adds or replaces a path.
    pub fn put(&self, path: impl Into<PathBuf>, size: u64, zero_head: bool) {
        self.files
            .lock()
            .unwrap()
            .insert(path.into(), FakeFile { size, zero_head });
    }
}

impl Host for FakeHost {
    fn file_size(&self, path: &Path) -> io::Result<Option<u64>> {
        Ok(self.files.lock().unwrap().get(path).map(|f| f.size))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.lock().unwrap().contains_key(path)
            || self.texts.lock().unwrap().contains_key(path)
    }

    fn head_is_zero(&self, path: &Path, _len: u64) -> io::Result<bool> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .map(|f| f.zero_head)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such fake device"))
    }

    fn zero_head(&self, path: &Path, _len: u64) -> io::Result<()> {
        self.zeroed.lock().unwrap().push(path.to_owned());
        if let Some(f) = self.files.lock().unwrap().get_mut(path) {
            f.zero_head = true;
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.files.lock().unwrap().remove(path);
        self.texts.lock().unwrap().remove(path);
        Ok(())
    }

    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn device_size(&self, path: &Path) -> io::Result<Option<u64>> {
        self.file_size(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .lock()
            .unwrap()
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read_to_string(&self, path: &Path) -> io::Result<Option<String>> {
        Ok(self.texts.lock().unwrap().get(path).cloned())
    }

    fn write_private(&self, path: &Path, content: &str) -> io::Result<()> {
        self.texts
            .lock()
            .unwrap()
            .insert(path.to_owned(), content.to_owned());
        Ok(())
    }

    /// Records the call only: the fake has no files until a test puts them.
    fn set_len(&self, path: &Path, bytes: u64) -> io::Result<()> {
        self.record_step(format!("set-size {bytes} {}", path.display()))
    }

    fn attach_loop(&self, file: &Path) -> io::Result<String> {
        self.record_step(format!("attach-loop {}", file.display()))?;
        Ok(self.loop_device.clone())
    }

    fn detach_loop(&self, device: &str) -> io::Result<()> {
        self.record_step(format!("detach-loop {device}"))?;
        self.loop_backing.lock().unwrap().remove(device);
        Ok(())
    }

    fn set_loop_capacity(&self, device: &str) -> io::Result<()> {
        self.record_step(format!("set-capacity {device}"))
    }

    fn loop_backs(&self, device: &str, file: &Path) -> io::Result<bool> {
        Ok(self
            .loop_backing
            .lock()
            .unwrap()
            .get(device)
            .map(PathBuf::as_path)
            == Some(file))
    }

    fn fs_space_kib(&self, _path: &Path) -> io::Result<(u64, u64)> {
        Ok(self.space_kib)
    }

    fn device_mapper_available(&self) -> bool {
        self.device_mapper
    }

    fn drbd_available(&self) -> bool {
        self.drbd
    }
}

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
