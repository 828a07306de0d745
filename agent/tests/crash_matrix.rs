//! The crash matrix (issue 16, docs/design.md §6): the real `blockstor-agent serve` is SIGKILLed,
//! together with its children, at every step of a first apply of a STORAGE, a LUKS and a DRBD
//! stack, driven by the debug build's crash hooks (never by sleeps):
//! `BLOCKSTOR_AGENT_CRASH_AFTER_STEP=<n>` after the n-th journalled step ran, and
//! `BLOCKSTOR_AGENT_CRASH_DURING_STEP=<n>` right after the runner spawned its n-th child, while
//! the child runs. Every crash point is then checked twice, each on a fresh state: restart and
//! re-apply (converges to the same devices, the same LUKS UUID wherever a header with a keyslot
//! existed, and DELETE then leaves nothing), and restart and DELETE without a re-apply (leaves
//! no file, no loop device, no `.res` and no record). No child may outlive the killed agent.
//! This kernel has no device-mapper and no DRBD module: a LUKS apply stops at `cryptsetup open`
//! and a DRBD apply before `drbdadm adjust` (`kernel_feature_missing`), so the chain is crashed
//! at every step up to there. Needs root, loop devices and cryptsetup; skips otherwise.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::http::{loopback, request};

#[macro_use]
mod common;
use common::{attachments, config_text, free_port, wait_until_listening, DetachOnDrop};

const TOKEN: &str = "matrix-token";
const PASS: &str = "matrix-Passphrase-4417";

/// Which hook kills the agent, and at which count.
#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    AfterStep(u32),
    DuringStep(u32),
}

impl CrashPoint {
    fn env(self) -> (&'static str, u32) {
        match self {
            CrashPoint::AfterStep(n) => ("BLOCKSTOR_AGENT_CRASH_AFTER_STEP", n),
            CrashPoint::DuringStep(n) => ("BLOCKSTOR_AGENT_CRASH_DURING_STEP", n),
        }
    }
}

/// One stack of the matrix: its request and the number of volumes in it.
struct Stack {
    label: &'static str,
    name: &'static str,
    vols: u32,
    luks: bool,
    drbd: bool,
}

impl Stack {
    fn doc(&self) -> String {
        let stack = match (self.luks, self.drbd) {
            (true, _) => r#"["LUKS","STORAGE"]"#,
            (_, true) => r#"["DRBD","STORAGE"]"#,
            _ => r#"["STORAGE"]"#,
        };
        let volumes: Vec<String> = (0..self.vols)
            .map(|n| format!(r#"{{"number":{n},"size_kib":8192}}"#))
            .collect();
        let minors: Vec<String> = (0..self.vols).map(|n| (1000 + n).to_string()).collect();
        let drbd = if self.drbd {
            format!(
                r#","drbd":{{"node_id":0,"port":7000,"minors":[{}],"address":"10.0.0.1",
                "peers":[{{"name":"n2","node_id":1,"address":"10.0.0.2","port":7000}}],
                "shared_secret":"c2hhcmVkLXNlY3JldA"}}"#,
                minors.join(",")
            )
        } else {
            String::new()
        };
        format!(
            r#"{{"name":"{}","layer_stack":{stack},"volumes":[{}],"storage":{{"pool":"files"}},
            "generation":1,"luks":{{"passphrase":"{PASS}"}},
            "props":{{"Luks/pbkdf":"pbkdf2","Luks/pbkdf-force-iterations":"1000"}}{drbd}}}"#,
            self.name,
            volumes.join(",")
        )
    }

    fn files(&self, dir: &Path) -> Vec<PathBuf> {
        (0..self.vols)
            .map(|n| dir.join(format!("pool/{}_{n:05}.img", self.name)))
            .collect()
    }
}

/// A running agent; its stderr goes to `dir/agent.log`.
struct Agent {
    child: std::process::Child,
    port: u16,
}

impl Agent {
    fn start(dir: &Path, crash: Option<CrashPoint>) -> Agent {
        let port = free_port();
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let cfg = dir.join("agent.toml");
        let http = format!("listen = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}");
        std::fs::write(&cfg, config_text(dir, &http)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .unwrap();
        let mut cmd = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"));
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("BLOCKSTOR_AGENT_TOKEN")
            .env_remove("BLOCKSTOR_AGENT_CRASH_AFTER_STEP")
            .env_remove("BLOCKSTOR_AGENT_CRASH_DURING_STEP")
            .env("BLOCKSTOR_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((var, n)) = crash.map(CrashPoint::env) {
            cmd.env(var, n.to_string());
        }
        let child = cmd.spawn().unwrap();
        wait_until_listening(port);
        Agent { child, port }
    }

    /// One request; `None` when the agent died during it (then it must have been SIGKILLed).
    fn call(&mut self, method: &str, name: &str, body: &str) -> Option<(u16, String)> {
        let path = format!("/v1/resources/{name}");
        match request(loopback(self.port), method, &path, Some(TOKEN), Some(body)) {
            Ok(r) => Some(r),
            Err(_) => {
                let status = self.child.wait().unwrap();
                assert_eq!(status.signal(), Some(9), "died by SIGKILL: {status:?}");
                None
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What is on the node for a stack's resource, seen from outside the agent.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// Per volume file: its size, if it exists, and its loop devices.
    files: Vec<(Option<u64>, Vec<String>)>,
    /// Per attached device: its LUKS UUID, when its header holds a keyslot.
    keyed_uuids: BTreeMap<String, String>,
}

fn seen(stack: &Stack, dir: &Path) -> Seen {
    let files: Vec<(Option<u64>, Vec<String>)> = stack
        .files(dir)
        .iter()
        .map(|f| (std::fs::metadata(f).ok().map(|m| m.len()), attachments(f)))
        .collect();
    let mut keyed_uuids = BTreeMap::new();
    for dev in files.iter().flat_map(|(_, d)| d) {
        if let Some(uuid) = keyed_uuid(dev) {
            keyed_uuids.insert(dev.clone(), uuid);
        }
    }
    Seen { files, keyed_uuids }
}

/// The UUID of the LUKS header on `dev` if it holds at least one keyslot.
fn keyed_uuid(dev: &str) -> Option<String> {
    let dump = Proc::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata", dev])
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&dump.stdout).ok()?;
    if json["keyslots"].as_object().is_none_or(|k| k.is_empty()) {
        return None;
    }
    let uuid = Proc::new("cryptsetup")
        .args(["luksUUID", dev])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&uuid.stdout).trim().to_owned())
}

/// Processes whose argv names one of `needles` (a loop device of the resource, the state dir).
fn processes_naming(needles: &[String]) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args
            .iter()
            .any(|a| needles.iter().any(|n| a == n || a.starts_with(n.as_str())))
        {
            out.push(args.join(" "));
        }
    }
    out
}

/// An apply either converged or stopped at the missing kernel feature of this host.
fn applied(r: Option<(u16, String)>) -> Result<(), String> {
    match r {
        Some((200, _)) => Ok(()),
        Some((422, b)) if b.contains("kernel_feature_missing") => Ok(()),
        other => Err(format!("apply answered {other:?}")),
    }
}

/// Nothing of the resource is left: no file, no loop device, no `.res`, no record.
fn nothing_left(stack: &Stack, dir: &Path) -> Result<(), String> {
    let left: Vec<String> = std::fs::read_dir(dir.join("pool"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !left.is_empty() {
        return Err(format!("files left in the pool: {left:?}"));
    }
    let attached: Vec<String> = stack
        .files(dir)
        .iter()
        .flat_map(|f| attachments(f))
        .collect();
    if !attached.is_empty() {
        return Err(format!("loop devices left: {attached:?}"));
    }
    let res = dir.join(format!("state/drbd.d/{}.res", stack.name));
    if res.exists() {
        return Err(format!("{} left", res.display()));
    }
    let store =
        blockstor_agent::store::Store::open(&dir.join("state")).map_err(|e| e.to_string())?;
    match store.get(&stack.name.parse().unwrap()) {
        Ok(None) => Ok(()),
        other => Err(format!("record left: {other:?}")),
    }
}

/// Kills the agent at `point` during a first apply; whether it died there (false: the apply
/// has fewer steps, it completed). Checks that no child outlived it.
fn crash(stack: &Stack, dir: &Path, point: CrashPoint) -> Result<bool, String> {
    let mut dying = Agent::start(dir, Some(point));
    let answer = dying.call("PUT", stack.name, &stack.doc());
    if let Some(r) = answer {
        applied(Some(r))?;
        return Ok(false);
    }
    let mut needles: Vec<String> = seen(stack, dir)
        .files
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect();
    needles.push(dir.display().to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_naming(&needles).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors = processes_naming(&needles);
    if !survivors.is_empty() {
        return Err(format!("children outlived the agent: {survivors:?}"));
    }
    Ok(true)
}

/// Restart, re-apply (twice), then DELETE.
fn reapply_then_delete(stack: &Stack, dir: &Path) -> Result<(), String> {
    let before = seen(stack, dir);
    let mut agent = Agent::start(dir, None);
    applied(agent.call("PUT", stack.name, &stack.doc()))?;
    let after = seen(stack, dir);
    for (i, ((_, was), (size, now))) in before.files.iter().zip(&after.files).enumerate() {
        if *size != Some(8 << 20) || now.len() != 1 {
            return Err(format!("volume {i}: size {size:?}, loop devices {now:?}"));
        }
        if !was.is_empty() && was != now {
            return Err(format!("volume {i}: was on {was:?}, now on {now:?}"));
        }
    }
    for (dev, uuid) in &before.keyed_uuids {
        if after.keyed_uuids.get(dev) != Some(uuid) {
            return Err(format!(
                "{dev}: LUKS UUID {uuid} became {:?}",
                after.keyed_uuids.get(dev)
            ));
        }
    }
    applied(agent.call("PUT", stack.name, &stack.doc()))?;
    if seen(stack, dir) != after {
        return Err("a second apply changed the devices".into());
    }
    delete(agent, stack, dir)
}

fn delete(mut agent: Agent, stack: &Stack, dir: &Path) -> Result<(), String> {
    match agent.call("DELETE", stack.name, "") {
        Some((200, _)) => {}
        other => return Err(format!("DELETE answered {other:?}")),
    }
    drop(agent); // the store is free to read
    nothing_left(stack, dir)
}

/// Every crash point of a first apply of `stack`, each checked with and without a re-apply.
/// Returns (tried, converged) and the failures.
fn matrix(stack: &Stack) -> (u32, u32, Vec<String>) {
    let (mut tried, mut converged, mut failures) = (0, 0, vec![]);
    let mut per_hook = vec![];
    for hook in [
        CrashPoint::AfterStep as fn(u32) -> CrashPoint,
        CrashPoint::DuringStep,
    ] {
        let tried_before = tried;
        for n in 1..=60 {
            let point = hook(n);
            let mut reached = true;
            let mut failed = vec![];
            for reapply in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                let _cleanup = DetachOnDrop(stack.files(dir.path()));
                let result = crash(stack, dir.path(), point).and_then(|killed| {
                    reached = killed;
                    if !killed {
                        return Ok(());
                    }
                    if reapply {
                        reapply_then_delete(stack, dir.path())
                    } else {
                        delete(Agent::start(dir.path(), None), stack, dir.path())
                    }
                });
                if let Err(e) = result {
                    failed.push(format!(
                        "{} {point:?} {}: {e}",
                        stack.label,
                        if reapply { "re-apply" } else { "delete only" }
                    ));
                }
                if !reached {
                    break;
                }
            }
            if !reached && failed.is_empty() {
                break; // past the last step of this apply
            }
            tried += 1;
            if failed.is_empty() {
                converged += 1;
            }
            failures.extend(failed);
        }
        per_hook.push(tried - tried_before);
    }
    println!(
        "crash matrix {}: {tried} crash points tried ({} after a step, {} during a step), \
         {converged} converged",
        stack.label, per_hook[0], per_hook[1]
    );
    (tried, converged, failures)
}

fn run(stack: Stack) {
    skip_unless!("cryptsetup", "losetup");
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the crash hooks exist only in debug builds");
        return;
    }
    let (tried, converged, failures) = matrix(&stack);
    assert!(tried > 0, "no crash point was reached");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tried, converged);
}

#[test]
fn crash_matrix_storage_every_step_of_a_three_volume_create_converges_and_deletes_clean() {
    run(Stack {
        label: "STORAGE",
        name: "mx_st",
        vols: 3,
        luks: false,
        drbd: false,
    });
}

#[test]
fn crash_matrix_luks_every_step_up_to_the_missing_device_mapper_converges_and_deletes_clean() {
    run(Stack {
        label: "LUKS",
        name: "mx_lk",
        vols: 2,
        luks: true,
        drbd: false,
    });
}

#[test]
fn crash_matrix_drbd_every_step_up_to_the_missing_kernel_module_converges_and_deletes_clean() {
    run(Stack {
        label: "DRBD",
        name: "mx_dr",
        vols: 2,
        luks: false,
        drbd: true,
    });
}
