//! Peak memory of processes Terraform or the bench starts, read from `/proc/<pid>/status`.
//!
//! Terraform spawns the provider itself (several times per command), so there is no pid to
//! wait on: a watcher thread scans `/proc` every few milliseconds for processes whose
//! executable is the given binary and keeps the largest `VmHWM` (peak resident set) seen.
//! `VmHWM` only grows during a process's life, so the last reading before it exits is its
//! peak, up to one polling interval.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(5);

/// A running watcher; [`Watcher::stop`] returns the peak in KiB.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching processes whose `/proc/<pid>/exe` resolves to `binary`.
    pub fn start(binary: &Path) -> Self {
        let binary = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, peak) = (stop.clone(), peak_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for pid in pids_of(&binary) {
                        if let Some(kib) = status_kib(pid, "VmHWM:") {
                            peak.fetch_max(kib, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(POLL);
                }
            })
        };
        Watcher {
            stop,
            peak_kib,
            handle,
        }
    }

    /// Stops the watcher; the largest `VmHWM` seen, in KiB (0 when no process was seen).
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Pids whose executable is `binary`.
pub fn pids_of(binary: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| exe_of(*pid).is_some_and(|exe| exe == binary))
        .collect()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn exe_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_peak_rss_from_proc() {
        let me = std::process::id();
        // RSS first: the peak read after it can only be as large or larger.
        let rss = status_kib(me, "VmRSS:").expect("VmRSS of self");
        let hwm = status_kib(me, "VmHWM:").expect("VmHWM of self");
        assert!(hwm >= rss && rss > 0, "hwm {hwm} rss {rss}");
    }
}
