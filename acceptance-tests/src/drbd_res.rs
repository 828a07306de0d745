//! Reading a rendered DRBD `.res` the way DRBD does: `drbdadm -c FILE dump` must accept it, and
//! the dump says, per `on <host>` section, the node id, the address and the minors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::loops;

/// What one rendered `.res` says about one resource, as parsed from `drbdadm dump`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResFacts {
    /// `on <host>` → (node-id, address:port, minors).
    pub hosts: BTreeMap<String, (String, String, Vec<String>)>,
}

/// `drbdadm -c FILE dump` must pass; returns the normalised dump.
pub fn dump(res: &Path) -> String {
    let out = Command::new("drbdadm")
        .arg("-c")
        .arg(res)
        .arg("dump")
        .output()
        .expect("run drbdadm");
    assert!(
        out.status.success(),
        "drbdadm -c {} dump failed:\n{}\n{}",
        res.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Extracts, per `on <host> { … }` section: node-id, address and the minors of its volumes.
pub fn facts(dump: &str) -> ResFacts {
    let mut facts = ResFacts::default();
    let mut current: Option<String> = None;
    for line in dump.lines().map(str::trim) {
        let words: Vec<&str> = line
            .trim_end_matches(['{', ';'])
            .split_whitespace()
            .collect();
        match words.as_slice() {
            ["on", host, ..] => {
                let host = host.trim_matches('"').to_string();
                current = Some(host.clone());
                facts.hosts.entry(host).or_default();
            }
            ["node-id", id] => {
                if let Some(h) = &current {
                    facts.hosts.get_mut(h).unwrap().0 = id.to_string();
                }
            }
            ["address", .., addr] => {
                if let Some(h) = &current {
                    facts.hosts.get_mut(h).unwrap().1 = addr.to_string();
                }
            }
            ["device", dev, ..] => {
                if let Some(h) = &current {
                    let minor = dev.trim_start_matches("/dev/drbd").to_string();
                    let minor = words
                        .iter()
                        .position(|w| *w == "minor")
                        .and_then(|i| words.get(i + 1))
                        .map(|m| m.to_string())
                        .unwrap_or(minor);
                    facts.hosts.get_mut(h).unwrap().2.push(minor);
                }
            }
            _ => {}
        }
    }
    facts
}

/// The rendered `.res` files under a node's state dir.
pub fn res_files(state_dir: &Path) -> Vec<PathBuf> {
    loops::files_under(&state_dir.join("drbd.d"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "res"))
        .collect()
}

/// `<state_dir>/drbd.d/<rd>.res`, which must exist.
pub fn res_of(state_dir: &Path, rd: &str) -> PathBuf {
    let path = state_dir.join("drbd.d").join(format!("{rd}.res"));
    assert!(
        path.is_file(),
        "{} was not rendered; found {:?}",
        path.display(),
        res_files(state_dir)
    );
    path
}
