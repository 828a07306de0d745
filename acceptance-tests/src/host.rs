//! What this host can do, and what a test does when it cannot.
//!
//! A test states its needs with [`require`]. When one is missing, the test is skipped with a
//! message naming it: outside CI, developers without root or terraform still get the rest of the
//! suite. In CI (`CI` set to anything but `false`/`0`) every need of the user-seat tests must be
//! met, so a missing one fails the test instead of hiding a broken install. Kernel features
//! this host may legitimately lack (device-mapper) are probed with [`has_device_mapper`] and
//! only change how far a test goes, never whether it runs.

use std::path::Path;

use crate::{binaries, terraform};

/// Something a test needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Running as root (losetup, cryptsetup on loop devices).
    Root,
    /// `/dev/loop-control`, for the loop-file pool.
    LoopDevices,
    /// `cryptsetup` on PATH.
    Cryptsetup,
    /// terraform 1.0.3 (see [`terraform::locate`]).
    Terraform,
    /// The release provider binary.
    ProviderBinary,
    /// The release agent binary.
    AgentBinary,
    /// OpenSSH's server and ssh-keygen (package openssh-server).
    Sshd,
}

impl Requirement {
    /// `None` when met, else why not and how to fix it.
    pub fn missing(self) -> Option<String> {
        match self {
            Requirement::Root => {
                (!is_root()).then(|| "needs root (losetup, cryptsetup): run as root".to_string())
            }
            Requirement::LoopDevices => (!Path::new("/dev/loop-control").exists())
                .then(|| "needs loop devices: /dev/loop-control is absent (modprobe loop)".into()),
            Requirement::Cryptsetup => which("cryptsetup")
                .is_none()
                .then(|| "needs cryptsetup: apt-get install cryptsetup-bin".to_string()),
            Requirement::Terraform => terraform::locate().err(),
            Requirement::ProviderBinary => missing_binary(&binaries::provider()),
            Requirement::AgentBinary => missing_binary(&binaries::agent()),
            Requirement::Sshd => (!Path::new(crate::sshd::SSHD).is_file()
                || which("ssh-keygen").is_none())
            .then(|| "needs sshd and ssh-keygen: apt-get install openssh-server".to_string()),
        }
    }
}

/// The needs of a test that drives terraform against a real agent.
pub const USER_SEAT: &[Requirement] = &[
    Requirement::Root,
    Requirement::LoopDevices,
    Requirement::Terraform,
    Requirement::ProviderBinary,
    Requirement::AgentBinary,
];

/// Returns `true` when every requirement is met. Otherwise prints why and returns `false` (the
/// caller returns early: a skip), or, in CI, panics.
#[must_use]
pub fn require(needs: &[Requirement]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|r| r.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if in_ci() {
        panic!("CI must provide everything acceptance tests need, but: {reason}");
    }
    eprintln!("skipped: {reason}");
    false
}

/// Whether we run under CI, where skipping is not allowed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether this kernel has device-mapper, which `cryptsetup open` (dm-crypt) needs.
/// `/dev/mapper/control` is no evidence: libdevmapper creates that node even when the kernel
/// has no driver behind it; the kernel's own lists are.
pub fn has_device_mapper() -> bool {
    Path::new("/sys/module/dm_mod").exists()
        || std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"))
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // /proc/self/status "Uid:" line: real, effective, saved, fs. No libc dependency needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// First `name` on PATH (also /sbin and /usr/sbin, which non-root PATHs often omit).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn missing_binary(path: &Path) -> Option<String> {
    (!path.is_file()).then(|| {
        format!(
            "needs {} (build it: cargo build --release -p terraform-provider-blockstor \
             -p blockstor-agent)",
            path.display()
        )
    })
}
