//! [`FakeHost`]: an in-memory node for tests (feature `test-support` outside this crate).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Host;

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
    /// What `device_users` answers per device (absent: not in use).
    pub in_use: Mutex<BTreeMap<PathBuf, crate::inuse::InUse>>,
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
            // Plenty (1 PiB), so only a test about free space meets the limit.
            space_kib: (1 << 40, 1 << 40),
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

    fn device_users(&self, device: &Path) -> io::Result<Option<crate::inuse::InUse>> {
        Ok(self.in_use.lock().unwrap().get(device).cloned())
    }
}
