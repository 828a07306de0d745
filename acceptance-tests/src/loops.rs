//! Loop devices backed by files under a directory: found with `losetup -j`, detached on
//! cleanup so a failed test leaves no device behind.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Loop devices (`/dev/loopN`) whose backing file is a regular file under `dir`.
pub fn attached_under(dir: &Path) -> Vec<PathBuf> {
    let mut devices = Vec::new();
    for file in files_under(dir) {
        let Ok(out) = Command::new("losetup").arg("-j").arg(&file).output() else {
            continue;
        };
        // Lines look like "/dev/loop3: []: (/path/to/file)".
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((dev, _)) = line.split_once(':') {
                devices.push(PathBuf::from(dev));
            }
        }
    }
    devices
}

/// Detaches every loop device backed by a file under `dir`. Best effort: this runs during
/// cleanup, where a panic would hide the real failure.
pub fn detach_all_under(dir: &Path) {
    for dev in attached_under(dir) {
        let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    }
}

/// Regular files anywhere under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}
