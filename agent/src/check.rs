//! `blockstor-agent check`: which tools and kernel features this node has, and what to install.

use std::path::Path;

use crate::host::Host;
use crate::runner::{Command, Runner};

/// Debian's kernel package: it ships the `loop`, `dm_crypt` and `drbd` (8.4) modules.
const KERNEL_PACKAGE: &str = "linux-image-amd64";

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: &'static str,
    /// What needs it, e.g. "LUKS layer" or "lvm, lvm-thin pools".
    pub needed_for: &'static str,
    /// Version or detail when present, `None` when missing.
    pub found: Option<String>,
    /// What to install (the Debian package) or load when missing.
    pub fix: String,
}

/// A tool: what it is called, how to ask its version, who needs it, its Debian package.
/// Only tools the agent spawns: loop files are sized, attached, grown and detached
/// in-process (no `truncate`, no `losetup`), so loop-file pools need only the loop module.
struct Tool {
    name: &'static str,
    args: &'static [&'static str],
    needed_for: &'static str,
    package: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "cryptsetup",
        args: &["--version"],
        needed_for: "LUKS layer",
        package: "cryptsetup-bin",
    },
    Tool {
        name: "drbdadm",
        args: &["--version"],
        needed_for: "DRBD layer",
        package: "drbd-utils",
    },
    Tool {
        name: "lvm",
        args: &["version"],
        needed_for: "lvm, lvm-thin pools",
        package: "lvm2",
    },
    Tool {
        name: "zfs",
        args: &["version"],
        needed_for: "zfs pools",
        package: "zfsutils-linux (contrib; also zfs-dkms)",
    },
];

/// Probes tools (by running them with their version flag) and kernel features (by paths).
pub async fn probe(runner: &dyn Runner, host: &dyn Host) -> Vec<Item> {
    let mut items = Vec::new();
    for tool in TOOLS {
        let found = match runner
            .run(&Command::new(tool.name, tool.args.iter().copied()))
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
        items.push(Item {
            name: tool.name,
            needed_for: tool.needed_for,
            found,
            fix: format!("apt-get install {}", tool.package),
        });
    }
    let feature = |present: bool, what: &str| present.then(|| what.to_owned());
    // A container shares its host's kernel: modules must be loaded there.
    let module_fix = |module: &str| {
        format!(
            "modprobe {module} (module from apt-get install {KERNEL_PACKAGE}; \
             in a container, load it on the host)"
        )
    };
    items.push(Item {
        name: "loop devices",
        needed_for: "loopfile pools",
        found: feature(
            host.exists(Path::new("/dev/loop-control")),
            "/dev/loop-control",
        ),
        fix: module_fix("loop"),
    });
    items.push(Item {
        name: "device-mapper (dm-crypt)",
        needed_for: "LUKS layer (cryptsetup open)",
        found: feature(
            host.device_mapper_available(),
            "device-mapper in the kernel",
        ),
        fix: module_fix("dm_crypt"),
    });
    items.push(Item {
        name: "drbd kernel module",
        needed_for: "DRBD layer",
        found: drbd_module(host),
        fix: format!(
            "modprobe drbd (DRBD 8.4 from apt-get install {KERNEL_PACKAGE}; \
             DRBD 9 needs drbd-dkms from LINBIT)"
        ),
    });
    items
}

/// The loaded DRBD module's version line from `/proc/drbd`, e.g. `version: 8.4.11`.
fn drbd_module(host: &dyn Host) -> Option<String> {
    if !host.drbd_available() {
        return None;
    }
    let version = host
        .read_to_string(Path::new("/proc/drbd"))
        .ok()
        .flatten()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("version:"))
                .map(|l| l.trim().to_owned())
        });
    Some(version.unwrap_or_else(|| "loaded".to_owned()))
}

/// The report as text: one line per item, `ok` or `MISSING` with the fix.
pub fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        match &i.found {
            Some(v) => out.push_str(&format!("ok       {:<26} {v}\n", i.name)),
            None => out.push_str(&format!(
                "MISSING  {:<26} needed for {}; fix: {}\n",
                i.name, i.needed_for, i.fix
            )),
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

    #[tokio::test]
    async fn loop_file_pools_need_no_tool_only_loop_devices() {
        let items = probe(&RecordingRunner::new(), &FakeHost::new()).await;
        let names: Vec<&str> = items.iter().map(|i| i.name).collect();
        assert!(
            !names.contains(&"losetup") && !names.contains(&"truncate"),
            "{names:?}"
        );
        let loop_item = items.iter().find(|i| i.name == "loop devices").unwrap();
        assert_eq!(loop_item.needed_for, "loopfile pools");
    }

    #[tokio::test]
    async fn every_missing_item_names_the_debian_package_to_install() {
        let runner = RecordingRunner::new();
        for tool in TOOLS {
            runner.on_error(
                &[tool.name],
                RunError::NotInstalled {
                    program: tool.name.into(),
                    command: tool.name.into(),
                },
            );
        }
        let mut host = FakeHost::new();
        host.device_mapper = false;
        host.drbd = false;
        let items = probe(&runner, &host).await;
        assert!(items.iter().all(|i| i.found.is_none()), "{items:?}");
        for line in render(&items).lines() {
            assert!(
                line.starts_with("MISSING") && line.contains("apt-get install "),
                "{line}"
            );
        }
        let text = render(&items);
        for package in [
            "cryptsetup-bin",
            "drbd-utils",
            "lvm2",
            "zfsutils-linux",
            "linux-image-amd64",
        ] {
            assert!(text.contains(package), "{package} not named:\n{text}");
        }
    }
}
