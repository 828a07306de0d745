//! Whether a block device is in use, and by whom, before anything tears it down (issue 18,
//! guard b): mounted (`/proc/self/mountinfo`, matched by major:minor or by source path), opened
//! by a process (`/proc/<pid>/fd/*` pointing at the device: pid and comm), held by another
//! block device (`/sys/dev/block/<major>:<minor>/holders`, e.g. a dm-crypt mapping), or a DRBD
//! replica in the Primary role (`drbdadm role`). The answer names the device and each user, so
//! the error reads "node n1: /dev/loop7 is in use: mounted at /mnt/x".

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use blockstor_proto::{ErrorCode, NodeName, ResourceName};

use crate::error::{Error, Kind, Result};
use crate::runner::{Command, Runner};

/// One user of a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// A filesystem on it is mounted here.
    Mounted { at: String },
    /// A process holds it open.
    Opened { pid: u32, comm: String },
    /// Another block device sits on it (`dm-3` for a dm-crypt or LVM mapping).
    Holder { name: String },
    /// It is a DRBD device whose replica here is Primary.
    DrbdPrimary { resource: String },
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            User::Mounted { at } => write!(f, "mounted at {at}"),
            User::Opened { pid, comm } => write!(f, "opened by process {pid} ({comm})"),
            User::Holder { name } => write!(f, "held by block device {name}"),
            User::DrbdPrimary { resource } => {
                write!(f, "DRBD resource {resource} is Primary here")
            }
        }
    }
}

/// A device and everyone using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub device: String,
    pub users: Vec<User>,
}

impl fmt::Display for InUse {
    /// `/dev/loop7 is in use: mounted at /mnt/x; opened by process 42 (dd)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<String> = self.users.iter().map(User::to_string).collect();
        write!(f, "{} is in use: {}", self.device, users.join("; "))
    }
}

impl InUse {
    /// The error that stops a teardown on `node`; `force_destroy = true` is the way past it.
    pub fn error(&self, node: &NodeName) -> Error {
        Error::new(
            Kind::Conflict,
            ErrorCode::DeviceInUse,
            format!(
                "node {node}: {self}. Stop the user (unmount, close, make the replica \
                 Secondary) and apply again, or set force_destroy = true to tear it down anyway"
            ),
        )
        .field("force_destroy")
    }
}

/// Where the kernel's views live; tests point them at a scratch directory.
#[derive(Debug, Clone)]
pub struct Probe {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
        }
    }
}

impl Probe {
    /// Every user of the block device `device` that the kernel shows (the DRBD role is asked
    /// separately, see [`drbd_primary`]); `None` when nothing uses it. A device that does not
    /// exist is not in use.
    pub fn check(&self, device: &Path) -> io::Result<Option<InUse>> {
        let meta = match fs::metadata(device) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_block_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a block device", device.display()),
            ));
        }
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        let mut users = Vec::new();
        let mountinfo = fs::read_to_string(self.proc_root.join("self/mountinfo"))?;
        let canonical = fs::canonicalize(device).unwrap_or_else(|_| device.to_owned());
        users.extend(mounts(&mountinfo, major, minor, &[device, &canonical]));
        users.extend(self.openers(rdev));
        users.extend(self.holders(major, minor));
        Ok((!users.is_empty()).then(|| InUse {
            device: device.display().to_string(),
            users,
        }))
    }

    /// Processes with an open descriptor on the device (`/proc/<pid>/fd/<n>` resolves to a
    /// block device with the same number). Processes that vanish or hide are skipped.
    fn openers(&self, rdev: u64) -> Vec<User> {
        let Ok(procs) = fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            let opened = fds.flatten().any(|fd| {
                fs::metadata(fd.path())
                    .is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev)
            });
            if opened {
                let comm = fs::read_to_string(p.path().join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_default();
                out.push(User::Opened { pid, comm });
            }
        }
        out
    }

    /// Block devices stacked on this one, by their kernel name.
    fn holders(&self, major: u32, minor: u32) -> Vec<User> {
        let dir = self
            .sys_root
            .join(format!("dev/block/{major}:{minor}/holders"));
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| User::Holder { name })
            .collect()
    }
}

/// Mounts of the device in a `mountinfo` text: field 3 is `major:minor`; the mount source
/// (after ` - fstype`) catches filesystems whose major:minor is virtual (btrfs).
pub fn mounts(mountinfo: &str, major: u32, minor: u32, paths: &[&Path]) -> Vec<User> {
    let number = format!("{major}:{minor}");
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let at = unescape(fields.get(4)?);
            let source = line
                .split_once(" - ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .map(unescape);
            let by_source = source.is_some_and(|s| paths.iter().any(|p| Path::new(&s) == *p));
            (fields.get(2) == Some(&number.as_str()) || by_source).then_some(User::Mounted { at })
        })
        .collect()
}

/// `mountinfo` writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(v) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether DRBD `drbdadm role` output (`Primary`; DRBD 8.4: `Primary/Secondary`, local first)
/// says this replica is Primary.
pub fn is_primary(role_output: &str) -> bool {
    role_output
        .lines()
        .any(|l| l.trim().split('/').next() == Some("Primary"))
}

/// The DRBD user of resource `rd` on `node` when its replica here is Primary; `None` when it is
/// Secondary or not up.
pub async fn drbd_primary(
    runner: &dyn Runner,
    node: &NodeName,
    res_file: &Path,
    rd: &ResourceName,
) -> Result<Option<User>> {
    let res = res_file.display().to_string();
    let cmd = Command::new("drbdadm", ["-c", res.as_str(), "role", rd.as_str()])
        .with_env("__DRBD_NODE__", node.as_str());
    let out = runner.run(&cmd).await?;
    Ok(
        (out.success() && is_primary(&out.stdout)).then(|| User::DrbdPrimary {
            resource: rd.to_string(),
        }),
    )
}

#[cfg(test)]
#[path = "inuse_tests.rs"]
mod tests;
