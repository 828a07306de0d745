//! Tool versions for `GET /v1/node`, asked once and cached until the tool or the DRBD module
//! changes. Spawning `cryptsetup --version` and `drbdadm --version` cost most of a node call
//! (~15 ms of ~25 ms with a few hundred records), and the provider asks on every RD apply.
//!
//! The cache is keyed by a [`Stamp`]: per tool the file `PATH` resolves it to and that file's
//! device, inode, size, mtime and ctime; for DRBD also the loaded module's version
//! (`/sys/module/drbd/version`) and whether it is loaded at all. A package upgrade replaces the
//! binary (dpkg renames a new file over it: new inode and ctime), and `drbdadm --version`
//! reports the *kernel* module too, which a module load, unload or upgrade changes. Taking a
//! stamp costs a few `stat`s and one small sysfs read; a changed stamp asks the tools again.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use blockstor_proto::wire::Versions;

use crate::host::Host;
use crate::runner::{Command, Output, RunError, Runner};

/// What the tools' answers depend on; a different stamp means ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    cryptsetup: Option<FileStamp>,
    drbdadm: Option<FileStamp>,
    drbd_module: DrbdModuleStamp,
}

/// Identity and last change of one file (the tool binary `PATH` finds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The DRBD kernel module as `drbdadm --version` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DrbdModuleStamp {
    /// `/sys/module/drbd/version`, when the module is loaded (it is also for a built-in one).
    version: Option<String>,
    /// [`Host::drbd_available`], which also decides whether a kernel version is reported.
    loaded: bool,
}

impl Stamp {
    /// Takes the stamp of this node now.
    pub fn take(host: &dyn Host) -> Stamp {
        let path = std::env::var_os("PATH");
        Stamp {
            cryptsetup: FileStamp::of_program("cryptsetup", path.as_deref()),
            drbdadm: FileStamp::of_program("drbdadm", path.as_deref()),
            drbd_module: DrbdModuleStamp {
                version: host
                    .read_to_string(Path::new("/sys/module/drbd/version"))
                    .ok()
                    .flatten()
                    .map(|v| v.trim().to_owned()),
                loaded: host.drbd_available(),
            },
        }
    }
}

impl FileStamp {
    /// The stamp of the file `program` resolves to through `path` (the `PATH` list), as a
    /// spawn would find it; `None` when it is not installed.
    pub fn of_program(program: &str, path: Option<&OsStr>) -> Option<FileStamp> {
        std::env::split_paths(path?)
            .map(|dir| dir.join(program))
            .find_map(|candidate| FileStamp::of(&candidate))
    }

    /// The stamp of `file` (symlinks followed), `None` unless it is an executable file.
    pub fn of(file: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(file).ok()?;
        if !m.is_file() || m.mode() & 0o111 == 0 {
            return None;
        }
        // A symlink re-pointed at another binary (alternatives) changes the path it resolves
        // to, and so the stamp, even when the new target is older.
        let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(FileStamp {
            path,
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The last tool versions asked, with the stamp they were asked under.
#[derive(Debug, Default)]
pub struct VersionCache {
    slot: Mutex<Option<(Stamp, Versions)>>,
}

impl VersionCache {
    /// The cached versions when `stamp` is the one they were asked under; else asks the tools
    /// (through `runner`) and caches the answer. Answers with a failed spawn (a timeout, not
    /// "not installed") are not cached, so the next call asks again.
    pub async fn get(&self, stamp: Stamp, runner: &dyn Runner, drbd_loaded: bool) -> Versions {
        if let Some((cached, versions)) = self.slot.lock().expect("not poisoned").as_ref() {
            if *cached == stamp {
                return versions.clone();
            }
        }
        // Not under the lock: two first calls at once both ask, which is harmless.
        let (versions, complete) = ask(runner, drbd_loaded).await;
        if complete {
            *self.slot.lock().expect("not poisoned") = Some((stamp, versions.clone()));
        }
        versions
    }
}

/// Runs `cryptsetup --version` and `drbdadm --version`. `complete` is false when a spawn
/// failed for a reason other than the tool missing (then the answer may be wrong next time).
async fn ask(runner: &dyn Runner, drbd_loaded: bool) -> (Versions, bool) {
    let (crypt, crypt_ok) = version_of(runner, "cryptsetup").await;
    let (drbd, drbd_ok) = version_of(runner, "drbdadm").await;
    let complete = crypt_ok && drbd_ok;
    let cryptsetup = crypt
        .filter(|o| o.success())
        .and_then(|o| o.stdout.lines().next().map(|l| l.trim().to_owned()))
        .map(|l| {
            l.trim_start_matches("cryptsetup ")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_owned()
        });
    let field = |key: &str| {
        drbd.as_ref().and_then(|o| {
            o.stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        })
    };
    let versions = Versions {
        agent: env!("CARGO_PKG_VERSION").to_owned(),
        cryptsetup,
        drbd_kernel: drbd
            .as_ref()
            .and_then(|o| crate::layers::drbd::version::kernel_version_text(&o.stdout))
            .filter(|_| drbd_loaded),
        drbd_utils: field("DRBDADM_VERSION="),
    };
    (versions, complete)
}

/// `PROGRAM --version`: its output (`None` when it is not installed or did not run), and
/// whether the answer is worth keeping (false after a timeout or another spawn failure).
async fn version_of(runner: &dyn Runner, program: &str) -> (Option<Output>, bool) {
    match runner.run(&Command::new(program, ["--version"])).await {
        Ok(o) => (Some(o), true),
        Err(RunError::NotInstalled { .. }) => (None, true),
        Err(_) => (None, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;
    use crate::runner::RecordingRunner;
    use std::os::unix::fs::PermissionsExt;

    fn tool(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn runner() -> RecordingRunner {
        let r = RecordingRunner::new();
        r.on(
            &["cryptsetup"],
            Output::ok("cryptsetup 2.6.1 flags: UDEV\n"),
        );
        r.on(
            &["drbdadm"],
            Output::ok("DRBDADM_VERSION=9.22.0\nDRBD_KERNEL_VERSION=9.2.4\n"),
        );
        r
    }

    fn spawns(r: &RecordingRunner) -> usize {
        r.commands().len()
    }

    #[test]
    fn a_stamp_follows_path_and_changes_when_the_binary_is_replaced_or_touched() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(FileStamp::of_program("tool", Some(&path)), None, "missing");
        tool(&b, "tool", "v1");
        let first = FileStamp::of_program("tool", Some(&path)).unwrap();
        assert_eq!(first.path, std::fs::canonicalize(b.join("tool")).unwrap());
        assert_eq!(
            FileStamp::of_program("tool", Some(&path)),
            Some(first.clone()),
            "unchanged file, same stamp"
        );
        // A package upgrade: a new file renamed over the old one (new inode).
        let staged = tool(dir.path(), "tool.dpkg-new", "v2");
        std::fs::rename(&staged, b.join("tool")).unwrap();
        let upgraded = FileStamp::of_program("tool", Some(&path)).unwrap();
        assert_ne!(upgraded, first);
        // Rewritten in place (same inode): the mtime/ctime/size change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(b.join("tool"), "v3 longer").unwrap();
        assert_ne!(
            FileStamp::of_program("tool", Some(&path)).unwrap(),
            upgraded
        );
        // An earlier PATH entry now shadows it: a spawn would run that one.
        tool(&a, "tool", "other");
        assert_eq!(
            FileStamp::of_program("tool", Some(&path)).unwrap().path,
            std::fs::canonicalize(a.join("tool")).unwrap()
        );
        // Not executable: not what a spawn would run.
        std::fs::write(dir.path().join("plain"), "x").unwrap();
        assert_eq!(FileStamp::of(&dir.path().join("plain")), None);
    }

    #[test]
    fn the_drbd_module_is_part_of_the_stamp() {
        let host = FakeHost::new();
        let without = Stamp::take(&host);
        assert_eq!(Stamp::take(&host), without);
        host.write_private(Path::new("/sys/module/drbd/version"), "8.4.11\n")
            .unwrap();
        let loaded = Stamp::take(&host);
        assert_ne!(loaded, without, "a module load asks again");
        assert_eq!(loaded.drbd_module.version.as_deref(), Some("8.4.11"));
        host.write_private(Path::new("/sys/module/drbd/version"), "9.2.4\n")
            .unwrap();
        assert_ne!(Stamp::take(&host), loaded, "a module upgrade asks again");
    }

    #[tokio::test]
    async fn versions_are_asked_once_while_the_stamp_stays_the_same() {
        let r = runner();
        let cache = VersionCache::default();
        let stamp = Stamp::take(&FakeHost::new());
        let first = cache.get(stamp.clone(), &r, true).await;
        assert_eq!(first.cryptsetup.as_deref(), Some("2.6.1"));
        assert_eq!(first.drbd_utils.as_deref(), Some("9.22.0"));
        assert_eq!(first.drbd_kernel.as_deref(), Some("9.2.4"));
        assert_eq!(spawns(&r), 2);
        for _ in 0..5 {
            assert_eq!(cache.get(stamp.clone(), &r, true).await, first);
        }
        assert_eq!(spawns(&r), 2, "no spawn while nothing changed");
    }

    #[tokio::test]
    async fn a_changed_stamp_asks_the_tools_again() {
        let r = runner();
        let cache = VersionCache::default();
        let host = FakeHost::new();
        cache.get(Stamp::take(&host), &r, false).await;
        host.write_private(Path::new("/sys/module/drbd/version"), "9.2.4\n")
            .unwrap();
        let after = cache.get(Stamp::take(&host), &r, true).await;
        assert_eq!(spawns(&r), 4);
        assert_eq!(after.drbd_kernel.as_deref(), Some("9.2.4"));
        let mut other = Stamp::take(&host);
        other.cryptsetup = Some(FileStamp {
            path: "/usr/sbin/cryptsetup".into(),
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        });
        cache.get(other, &r, true).await;
        assert_eq!(spawns(&r), 6, "an upgraded binary asks again");
    }

    #[tokio::test]
    async fn a_failed_spawn_is_not_cached_but_a_missing_tool_is() {
        let r = RecordingRunner::new();
        r.on_error(
            &["cryptsetup"],
            RunError::Timeout {
                command: "cryptsetup --version".into(),
                secs: 300,
            },
        );
        r.on_error(
            &["drbdadm"],
            RunError::NotInstalled {
                program: "drbdadm".into(),
                command: "drbdadm --version".into(),
            },
        );
        let cache = VersionCache::default();
        let stamp = Stamp::take(&FakeHost::new());
        let v = cache.get(stamp.clone(), &r, false).await;
        assert_eq!((v.cryptsetup, v.drbd_utils), (None, None));
        cache.get(stamp.clone(), &r, false).await;
        assert_eq!(spawns(&r), 4, "a timeout is asked again");

        let r = RecordingRunner::new();
        r.on(&["cryptsetup"], Output::fail(1, "broken"));
        r.on_error(
            &["drbdadm"],
            RunError::NotInstalled {
                program: "drbdadm".into(),
                command: "drbdadm --version".into(),
            },
        );
        cache.get(stamp.clone(), &r, false).await;
        cache.get(stamp, &r, false).await;
        assert_eq!(spawns(&r), 2, "an answer (even a missing tool) is kept");
    }
}
