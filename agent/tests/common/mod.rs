//! Setup shared by the agent's integration tests: what a real-tool test needs from this host,
//! a loop-file pool's configuration and engine, loop devices seen from outside the agent, and
//! a loopback port for the served binary. The agent sizes files and attaches loop devices
//! in-process, so no test needs `truncate`; `losetup` is only the tests' own window on the
//! kernel's loop devices.

// Every test file uses a part of this module; the rest is dead code in that test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstor_agent::config::Config;
use blockstor_agent::engine::Engine;
use blockstor_agent::host::{Host, RealHost};
use blockstor_agent::runner::{Runner, SystemRunner};
use blockstor_agent::store::Store;
use blockstor_proto::wire::DesiredResource;

pub const PASS: &str = "real-tool pass phrase";

/// Why this host cannot run the test, if it cannot: root, loop devices, and each of `tools`.
pub fn missing(tools: &[&str]) -> Option<String> {
    // SAFETY-free check for root: /proc/self/status Uid line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("needs root (loop devices)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("needs loop devices (/dev/loop-control), absent on this kernel".into());
    }
    for t in tools {
        if Proc::new(t).arg("--version").output().is_err() {
            return Some(format!(
                "needs {t} (apt-get install -y cryptsetup-bin / mount)"
            ));
        }
    }
    None
}

/// Returns from the test, saying why, when this host lacks root, loop devices or a tool.
macro_rules! skip_unless {
    ($($tool:expr),*) => {
        if let Some(why) = $crate::common::missing(&[$($tool),*]) {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// An agent configuration for node `n1` with one loop-file pool `files`, all under `dir`.
pub fn config_text(dir: &Path, extra_http: &str) -> String {
    let state = dir.join("state");
    let pool = dir.join("pool");
    format!(
        "node_name = \"n1\"\nstate_dir = {state:?}\n[http]\n{extra_http}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    )
}

/// An engine on [`config_text`] that runs the real tools on the real host.
pub fn engine(dir: &Path) -> Engine {
    engine_on(dir, Arc::new(SystemRunner), Arc::new(RealHost))
}

/// An engine on [`config_text`] with the given runner and host.
pub fn engine_on(dir: &Path, runner: Arc<dyn Runner>, host: Arc<dyn Host>) -> Engine {
    let config = Config::parse(&config_text(dir, "")).unwrap();
    let store = Store::open(&config.state_dir).unwrap();
    Engine::new(config, runner, host, store)
}

/// A resource on the `files` pool with fast LUKS key derivation (for tests).
pub fn desired(name: &str, stack: &str, size_kib: u64, pass: Option<&str>) -> DesiredResource {
    let luks = pass
        .map(|p| format!(r#","luks":{{"passphrase":"{p}"}}"#))
        .unwrap_or_default();
    serde_json::from_str(&format!(
        r#"{{"name":"{name}","layer_stack":{stack},"volumes":[{{"number":0,"size_kib":{size_kib}}}],
            "storage":{{"pool":"files"}},"generation":1,
            "props":{{"Luks/pbkdf":"pbkdf2","Luks/pbkdf-force-iterations":"1000"}}{luks}}}"#
    ))
    .unwrap()
}

/// The loop devices `file` is attached to, as `losetup -j` lists them.
pub fn attachments(file: &Path) -> Vec<String> {
    let out = Proc::new("losetup").arg("-j").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(d, _)| d.to_owned()))
        .collect()
}

/// Detaches, on drop, every loop device still bound to one of these files (a failed test must
/// not leave loop devices behind).
pub struct DetachOnDrop(pub Vec<PathBuf>);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            for dev in attachments(f) {
                let _ = Proc::new("losetup").args(["-d", &dev]).status();
            }
        }
    }
}

/// A free loopback port (bind 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on the loopback `port`: the agent has started.
pub fn wait_until_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agent did not start"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}
