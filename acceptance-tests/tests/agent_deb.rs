//! The agent's Debian package as an operator uses it: `scripts/build-deb.sh` builds it,
//! `dpkg -i` installs it on this machine, the installed `blockstor-agent check` runs, and
//! `dpkg -r` then `dpkg --purge` remove it without leaving a file behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acceptance_tests::host::{self, Requirement};
use acceptance_tests::{binaries, process, require, Outcome};

const PACKAGE: &str = "blockstor-agent";

#[test]
fn agent_deb_installs_runs_check_and_purges_without_leftovers() {
    if !require(&[Requirement::Root, Requirement::AgentBinary]) || !dpkg_tools_present() {
        return;
    }
    if package_installed() && !host::in_ci() {
        eprintln!("skipped: {PACKAGE} is installed on this machine; the test would replace it");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("blockstor-deb-")
        .tempdir()
        .expect("temp dir");
    let deb = build_deb(tmp.path());

    // The package's metadata: Depends from the binary's libraries, the tools `check` asks
    // for as Recommends/Suggests.
    let deb = deb.to_str().expect("temp path is UTF-8");
    let control = run("dpkg-deb", &["--field", deb]);
    control.assert_success();
    for field in [
        "Package: blockstor-agent",
        "Depends: libc6",
        "Recommends: cryptsetup-bin, lvm2, drbd-utils",
        "Suggests: zfsutils-linux",
    ] {
        assert!(
            control.stdout.contains(field),
            "control lacks {field:?}:\n{control}"
        );
    }

    let _purge_on_panic = PurgeGuard;
    run("dpkg", &["-i", deb]).assert_success();
    let files = package_files();
    for expected in [
        "/usr/bin/blockstor-agent",
        "/lib/systemd/system/blockstor-agent.service",
        "/etc/blockstor/agent.toml",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(expected)),
            "the package lacks {expected}: {files:?}"
        );
        assert!(Path::new(expected).is_file(), "{expected} not installed");
    }
    let unit =
        std::fs::read_to_string("/lib/systemd/system/blockstor-agent.service").expect("read unit");
    assert!(
        unit.contains(
            "ExecStart=/usr/bin/blockstor-agent serve --config /etc/blockstor/agent.toml"
        ),
        "the unit should start the packaged binary:\n{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "unit:\n{unit}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata("/etc/blockstor")
            .expect("stat /etc/blockstor")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "/etc/blockstor holds the token: 0700");

    // The installed binary works: `check` reports every tool with its Debian package.
    let check = run("/usr/bin/blockstor-agent", &["check"]);
    check.assert_success();
    for tool in ["cryptsetup", "drbdadm", "lvm", "zfs", "loop devices"] {
        assert!(
            check.stdout.contains(tool),
            "check does not report {tool}:\n{check}"
        );
    }

    // The token the postinst note tells the operator to create.
    std::fs::write("/etc/blockstor/token", "not-a-real-token\n").expect("write token");

    // Remove: the program and the unit go, the configuration stays.
    run("dpkg", &["-r", PACKAGE]).assert_success();
    for file in &files {
        if file.starts_with("/etc") {
            continue;
        }
        assert!(!file.is_file(), "{} remains after dpkg -r", file.display());
    }
    assert!(
        Path::new("/etc/blockstor/agent.toml").is_file(),
        "dpkg -r keeps conffiles"
    );

    // Purge: nothing of the package is left, configuration and token included.
    run("dpkg", &["--purge", PACKAGE]).assert_success();
    for file in files.iter().chain([&PathBuf::from("/etc/blockstor/token")]) {
        assert!(!file.is_file(), "{} remains after purge", file.display());
    }
    assert!(
        !Path::new("/etc/blockstor").exists(),
        "/etc/blockstor remains after purge"
    );
    assert!(
        !package_installed(),
        "dpkg still knows {PACKAGE} after purge"
    );
}

fn build_deb(out: &Path) -> PathBuf {
    let mut cmd = Command::new(binaries::workspace_root().join("scripts/build-deb.sh"));
    cmd.arg(out)
        // The binary the test suite built; the script builds one itself when this is unset.
        .env("BLOCKSTOR_AGENT_BINARY", binaries::agent());
    let built = process::run(cmd, "scripts/build-deb.sh".into(), Duration::from_secs(120));
    built.assert_success();
    let deb = PathBuf::from(built.stdout.trim());
    assert!(
        deb.is_file() && deb.starts_with(out),
        "build-deb.sh should print the .deb it wrote:\n{built}"
    );
    deb
}

/// Every regular path `dpkg -L` lists for the package (directories like /usr excluded).
fn package_files() -> Vec<PathBuf> {
    let listed = run("dpkg", &["-L", PACKAGE]);
    listed.assert_success();
    listed
        .stdout
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

fn package_installed() -> bool {
    let status = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    status.status.success() && status.stdout.contains("install ok installed")
}

fn run(program: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args);
    process::run(cmd, program.to_string(), Duration::from_secs(120))
}

fn dpkg_tools_present() -> bool {
    let missing: Vec<&str> = ["dpkg-deb", "dpkg-shlibdeps"]
        .into_iter()
        .filter(|t| host::which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("needs {} (apt-get install dpkg-dev)", missing.join(", "));
    assert!(!host::in_ci(), "CI must provide it: {reason}");
    eprintln!("skipped: {reason}");
    false
}

/// Purges the package if the test stops half-way, so no run leaves it installed.
struct PurgeGuard;

impl Drop for PurgeGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).status();
        }
    }
}
