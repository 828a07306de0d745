//! `blockstor-agent check`: which tools and kernel features this node has, and what to install.

use std::path::Path;

use crate::host::Host;
use crate::runner::{Command, Runner};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: &'static str,
    /// Version or detail when present, `None` when missing.
    pub found: Option<String>,
    /// What to install (Debian package) or load when missing.
    pub fix: &'static str,
}

/// Probes tools (by running them with `--version`) and kernel features (by paths).
pub async fn probe(runner: &dyn Runner, host: &dyn Host) -> Vec<Item> {
    let tools: [(&str, &str, &[&str], &str); 6] = [
        (
            "cryptsetup",
            "cryptsetup",
            &["--version"],
            "apt-get install cryptsetup-bin",
        ),
        (
            "losetup",
            "losetup",
            &["--version"],
            "apt-get install mount",
        ),
        (
            "drbdadm",
            "drbdadm",
            &["--version"],
            "apt-get install drbd-utils",
        ),
        ("lvm", "lvm", &["version"], "apt-get install lvm2"),
        (
            "zfs",
            "zfs",
            &["version"],
            "apt-get install zfsutils-linux (contrib)",
        ),
        (
            "truncate",
            "truncate",
            &["--version"],
            "apt-get install coreutils",
        ),
    ];
    let mut items = Vec::new();
    for (name, program, args, fix) in tools {
        let found = match runner
            .run(&Command::new(program, args.iter().copied()))
            .await
        {
            Ok(o) if o.success() || !o.stdout.is_empty() => Some(
                // drbdadm prints KEY=VALUE lines; its version is the DRBDADM_VERSION one.
                o.stdout
                    .lines()
                    .find(|l| l.starts_with("DRBDADM_VERSION="))
                    .or_else(|| o.stdout.lines().find(|l| !l.trim().is_empty()))
                    .unwrap_or("present")
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        };
        items.push(Item { name, found, fix });
    }
    let feature = |present: bool, what: &str| present.then(|| what.to_owned());
    items.push(Item {
        name: "loop devices",
        found: feature(
            host.exists(Path::new("/dev/loop-control")),
            "/dev/loop-control",
        ),
        fix: "modprobe loop",
    });
    items.push(Item {
        name: "device-mapper (dm-crypt)",
        found: feature(
            host.device_mapper_available(),
            "device-mapper in the kernel",
        ),
        fix: "modprobe dm_crypt (kernel modules package)",
    });
    items.push(Item {
        name: "drbd kernel module",
        found: feature(host.drbd_available(), "/proc/drbd"),
        fix: "modprobe drbd (Debian kernels ship DRBD 8.4; DRBD 9 needs drbd-dkms)",
    });
    items
}

/// The report as text: one line per item, `ok` or `MISSING` with the fix.
pub fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        match &i.found {
            Some(v) => out.push_str(&format!("ok       {:<26} {v}\n", i.name)),
            None => out.push_str(&format!("MISSING  {:<26} fix: {}\n", i.name, i.fix)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::runner::{Output, RecordingRunner, RunError};

    #[tokio::test]
    async fn check_names_what_is_present_and_the_package_for_what_is_missing() {
        let runner = RecordingRunner::new();
        runner.on(
            &["cryptsetup"],
            Output::ok("cryptsetup 2.6.1 flags: UDEV\n"),
        );
        runner.on_error(
            &["drbdadm"],
            RunError::NotInstalled {
                program: "drbdadm".into(),
                command: "drbdadm --version".into(),
            },
        );
        runner.on(&["zfs"], Output::fail(127, ""));
        let mut host = FakeHost::new();
        host.device_mapper = false;
        let text = render(&probe(&runner, &host).await);
        assert!(
            text.contains("ok       cryptsetup") && text.contains("cryptsetup 2.6.1"),
            "{text}"
        );
        assert!(
            text.contains("MISSING  drbdadm") && text.contains("apt-get install drbd-utils"),
            "{text}"
        );
        assert!(text.contains("MISSING  zfs"), "{text}");
        assert!(
            text.contains("MISSING  device-mapper (dm-crypt)")
                && text.contains("modprobe dm_crypt"),
            "{text}"
        );
        assert!(text.contains("MISSING  drbd kernel module"), "{text}");
    }
}
