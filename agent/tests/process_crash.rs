//! The real `blockstor-agent serve` process, killed and restarted (docs/design.md §6), and watched
//! for leaks of the passphrase. A debug build honours `BLOCKSTOR_AGENT_CRASH_AFTER_STEP=<n>`:
//! the agent SIGKILLs itself right after its n-th journalled step ran, before the step is
//! marked done. Needs root, loop devices and cryptsetup; skips otherwise.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use acceptance_tests::http::{loopback, request};

#[macro_use]
mod common;
use common::{attachments, config_text, free_port, wait_until_listening, DetachOnDrop};

const TOKEN: &str = "crash-token";
const PASS: &str = "zebra-Passphrase-7781";

/// The agent binary honours the crash variable only when built with debug assertions (the
/// test binary shares the profile).
fn crash_injection_built() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: crash injection exists only in debug builds (run without --release)");
    }
    cfg!(debug_assertions)
}

/// One request; `None` when the connection broke (the agent died mid-request).
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    request(loopback(port), method, path, Some(TOKEN), Some(body)).ok()
}

/// A running agent; its stderr goes to `log`.
struct Agent {
    child: std::process::Child,
    port: u16,
}

impl Agent {
    fn start(dir: &Path, crash_after: Option<u32>, log: &Path) -> Agent {
        let port = free_port();
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            config_text(
                dir,
                &format!("listen = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}"),
            ),
        )
        .unwrap();
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"));
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("BLOCKSTOR_AGENT_TOKEN")
            .env("BLOCKSTOR_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(logf);
        match crash_after {
            Some(n) => cmd.env("BLOCKSTOR_AGENT_CRASH_AFTER_STEP", n.to_string()),
            None => cmd.env_remove("BLOCKSTOR_AGENT_CRASH_AFTER_STEP"),
        };
        let child = cmd.spawn().unwrap();
        wait_until_listening(port);
        Agent { child, port }
    }

    /// PUTs the document; `Err(())` when the agent was SIGKILLed during the request.
    fn put(&mut self, name: &str, doc: &str) -> Result<(u16, String), ()> {
        match http(self.port, "PUT", &format!("/v1/resources/{name}"), doc) {
            Some(r) => Ok(r),
            None => {
                let status = self.child.wait().unwrap();
                assert_eq!(status.signal(), Some(9), "died by SIGKILL: {status:?}");
                Err(())
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

fn doc(name: &str, stack: &str, size_kib: u64, pass: &str) -> String {
    format!(
        r#"{{"name":"{name}","layer_stack":{stack},"volumes":[{{"number":0,"size_kib":{size_kib}}}],
            "storage":{{"pool":"files"}},"generation":1,"luks":{{"passphrase":"{pass}"}},
            "props":{{"Luks/pbkdf":"pbkdf2","Luks/pbkdf-force-iterations":"1000"}}}}"#
    )
}

fn luks_uuid(dev: &str) -> Option<String> {
    let out = Proc::new("cryptsetup")
        .args(["luksUUID", dev])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// How many times the agent ran luksFormat: the runner logs each process it spawns (debug).
fn formats(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("blockstor_agent::runner") && l.contains("luksFormat"))
        .count()
}

/// An apply either answers (a LUKS apply stops at `kernel_feature_missing` without dm-crypt)
/// or converges; anything else is a failure.
fn assert_converged(r: (u16, String)) {
    match r.0 {
        200 => {}
        422 => assert!(r.1.contains("kernel_feature_missing"), "{}", r.1),
        _ => panic!("apply after restart: {} {}", r.0, r.1),
    }
}

fn write_at(path: &str, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn read_at(path: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Kills the agent after step `n` of an apply of `size_kib`, restarts it, re-applies.
/// Returns false when the apply had fewer than `n` steps (nothing was killed).
fn crash_and_reapply(dir: &Path, log: &Path, name: &str, doc: &str, n: u32) -> bool {
    let mut dying = Agent::start(dir, Some(n), log);
    let killed = match dying.put(name, doc) {
        Err(()) => true,
        Ok(r) => {
            assert_converged(r);
            false
        }
    };
    drop(dying);
    let mut agent = Agent::start(dir, None, log);
    assert_converged(agent.put(name, doc).expect("no crash without the variable"));
    // And again: a converged resource stays put.
    assert_converged(agent.put(name, doc).unwrap());
    killed
}

#[test]
fn sigkilled_after_each_step_of_a_luks_apply_the_restarted_agent_converges_on_one_header() {
    skip_unless!("cryptsetup", "losetup");
    if !crash_injection_built() {
        return;
    }
    let marker = b"payload written before the crash";
    for n in 1..=8u32 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let name = format!("pc_luks_{n}");
        let file = dir.path().join(format!("pool/{name}_00000.img"));
        let _cleanup = DetachOnDrop(vec![file.clone()]);
        let stack = r#"["LUKS","STORAGE"]"#;

        // Create, killed after step n.
        let killed_create =
            crash_and_reapply(dir.path(), &log, &name, &doc(&name, stack, 16384, PASS), n);
        let dev = attachments(&file).pop().expect("loop device attached");
        assert_eq!(attachments(&file).len(), 1, "step {n}: one loop device");
        let uuid = luks_uuid(&dev).expect("a LUKS header");
        assert_eq!(
            formats(&log),
            1,
            "step {n}: formatted exactly once: {}",
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter(|l| l.contains("luksFormat"))
                .collect::<Vec<_>>()
                .join("\n")
        );

        // Data in the payload area (last 4 KiB of the file, past the LUKS header), then a
        // grow killed after step n.
        let end = std::fs::metadata(&file).unwrap().len();
        write_at(&dev, end - 4096, marker);
        let killed_grow =
            crash_and_reapply(dir.path(), &log, &name, &doc(&name, stack, 32768, PASS), n);
        let dev_after = attachments(&file).pop().expect("still attached");
        assert_eq!(
            luks_uuid(&dev_after).as_deref(),
            Some(uuid.as_str()),
            "step {n}: same header"
        );
        assert_eq!(formats(&log), 1, "step {n}: never a second luksFormat");
        assert!(
            std::fs::metadata(&file).unwrap().len() > end,
            "step {n}: grown"
        );
        assert_eq!(
            read_at(&dev_after, end - 4096, marker.len()),
            marker,
            "step {n}: data intact"
        );

        let mut agent = Agent::start(dir.path(), None, &log);
        let (s, b) = http(agent.port, "DELETE", &format!("/v1/resources/{name}"), "").unwrap();
        assert_eq!(s, 200, "{b}");
        assert!(attachments(&file).is_empty() && !file.exists());
        let _ = &mut agent;
        if !killed_create && !killed_grow {
            assert!(n > 2, "the first steps of an apply are always reached");
            return;
        }
    }
    panic!("an apply with more than 8 steps: raise the bound");
}

#[test]
fn sigkilled_after_each_step_of_a_storage_grow_the_data_reads_back() {
    skip_unless!("cryptsetup", "losetup");
    if !crash_injection_built() {
        return;
    }
    let marker = b"storage data written before the crash";
    for n in 1..=8u32 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let name = format!("pc_st_{n}");
        let file = dir.path().join(format!("pool/{name}_00000.img"));
        let _cleanup = DetachOnDrop(vec![file.clone()]);
        let stack = r#"["STORAGE"]"#;
        let killed_create =
            crash_and_reapply(dir.path(), &log, &name, &doc(&name, stack, 8192, PASS), n);
        let dev = attachments(&file).pop().expect("attached");
        write_at(&dev, 4 << 20, marker);
        let killed_grow =
            crash_and_reapply(dir.path(), &log, &name, &doc(&name, stack, 16384, PASS), n);
        let after = attachments(&file);
        assert_eq!(
            after,
            vec![dev.clone()],
            "step {n}: same single loop device"
        );
        let sectors: u64 = std::fs::read_to_string(format!(
            "/sys/block/{}/size",
            dev.trim_start_matches("/dev/")
        ))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        assert_eq!(
            sectors * 512,
            16 << 20,
            "step {n}: the kernel sees the grown size"
        );
        assert_eq!(
            read_at(&dev, 4 << 20, marker.len()),
            marker,
            "step {n}: data intact"
        );
        let agent = Agent::start(dir.path(), None, &log);
        assert_eq!(
            http(agent.port, "DELETE", &format!("/v1/resources/{name}"), "").map(|r| r.0),
            Some(200)
        );
        if !killed_create && !killed_grow {
            assert!(n > 2, "the first steps of an apply are always reached");
            return;
        }
    }
    panic!("an apply with more than 8 steps: raise the bound");
}

/// A DRBD-over-STORAGE request; this host has no DRBD module, so an apply stops at DRBD
/// (`kernel_feature_missing`) after the storage steps, which is all this test needs.
fn drbd_doc(name: &str, size_kib: u64) -> String {
    format!(
        r#"{{"name":"{name}","layer_stack":["DRBD","STORAGE"],
            "volumes":[{{"number":0,"size_kib":{size_kib}}}],"storage":{{"pool":"files"}},
            "generation":1,"drbd":{{"node_id":0,"port":7000,"minors":[1000],
            "address":"10.0.0.1","peers":[{{"name":"n2","node_id":1,"address":"10.0.0.2",
            "port":7000}}],"shared_secret":"c2hhcmVkLXNlY3JldA"}}}}"#
    )
}

#[test]
fn sigkilled_right_after_growing_under_drbd_the_pending_resize_survives_in_the_store() {
    skip_unless!("cryptsetup", "losetup");
    if !crash_injection_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let name = "pc_drbd_grow";
    let file = dir.path().join(format!("pool/{name}_00000.img"));
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    {
        // Created; the apply stops at DRBD on this host, the storage stays.
        let mut agent = Agent::start(dir.path(), None, &log);
        agent.put(name, &drbd_doc(name, 8192)).expect("no crash");
        assert_eq!(attachments(&file).len(), 1, "storage created and attached");
    }
    // The grow is SIGKILLed right after its first step (the truncate): the storage is bigger
    // and nothing above has been told.
    let mut dying = Agent::start(dir.path(), Some(1), &log);
    assert!(
        dying.put(name, &drbd_doc(name, 16384)).is_err(),
        "killed after the truncate"
    );
    drop(dying);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20, "grown");
    let store = blockstor_agent::store::Store::open(&dir.path().join("state")).unwrap();
    let record = store.get(&name.parse().unwrap()).unwrap().expect("record");
    assert!(
        record.volumes[&0].pending_drbd_resize,
        "the pending DRBD resize was on disk before the grow: {:?}",
        record.volumes
    );
}

fn opens(dev: &str, pass: &str) -> bool {
    let mut child = Proc::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-", dev])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pass.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

#[test]
fn sigkilled_between_the_two_phases_of_a_rotation_the_rerun_finishes_it() {
    skip_unless!("cryptsetup", "losetup");
    if !crash_injection_built() {
        return;
    }
    const NEW: &str = "walrus-Passphrase-9912";
    let stack = r#"["LUKS","STORAGE"]"#;
    let rotation = |name: &str| {
        doc(name, stack, 16384, NEW).replace(
            &format!(r#""passphrase":"{NEW}""#),
            &format!(r#""passphrase":"{NEW}","previous_passphrase":"{PASS}""#),
        )
    };
    let marker = b"payload written before the rotation";
    // Step 1 of the rotation apply is luksAddKey, step 2 luksRemoveKey.
    for n in 1..=2u32 {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let name = format!("pc_rot_{n}");
        let file = dir.path().join(format!("pool/{name}_00000.img"));
        let _cleanup = DetachOnDrop(vec![file.clone()]);
        let mut agent = Agent::start(dir.path(), None, &log);
        assert_converged(agent.put(&name, &doc(&name, stack, 16384, PASS)).unwrap());
        drop(agent);
        let dev = attachments(&file).pop().expect("loop device attached");
        let uuid = luks_uuid(&dev).expect("a LUKS header");
        let end = std::fs::metadata(&file).unwrap().len();
        write_at(&dev, end - 4096, marker);

        let mut dying = Agent::start(dir.path(), Some(n), &log);
        assert!(
            dying.put(&name, &rotation(&name)).is_err(),
            "killed at step {n}"
        );
        drop(dying);
        match n {
            1 => assert!(opens(&dev, PASS) && opens(&dev, NEW), "half-way: both keys"),
            _ => assert!(!opens(&dev, PASS) && opens(&dev, NEW), "old slot removed"),
        }
        let log_text = std::fs::read_to_string(&log).unwrap();
        assert!(
            log_text.contains("luksAddKey") && !log_text.contains(NEW),
            "journalled step, no secret in the log"
        );

        let mut agent = Agent::start(dir.path(), None, &log);
        assert_converged(agent.put(&name, &rotation(&name)).unwrap());
        assert!(opens(&dev, NEW), "step {n}: the new passphrase opens");
        assert!(!opens(&dev, PASS), "step {n}: the old one does not");
        assert_eq!(
            luks_uuid(&dev).as_deref(),
            Some(uuid.as_str()),
            "same header"
        );
        assert_eq!(
            read_at(&dev, end - 4096, marker.len()),
            marker,
            "data intact"
        );
        let (s, b) = http(agent.port, "DELETE", &format!("/v1/resources/{name}"), "").unwrap();
        assert_eq!(s, 200, "{b}");
    }
}

/// Every process's argv, and the environment of the agent's children, while requests run.
fn watch_proc(needle: &'static [u8], stop: Arc<AtomicBool>, found: Arc<Mutex<Vec<String>>>) {
    let me = std::process::id().to_string();
    while !stop.load(Ordering::SeqCst) {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                continue;
            }
            for what in ["cmdline", "environ"] {
                if let Ok(bytes) = std::fs::read(entry.path().join(what)) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.lock().unwrap().push(format!("/proc/{pid}/{what}"));
                    }
                }
            }
        }
    }
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if p.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn the_passphrase_never_shows_in_argv_environ_logs_errors_or_the_store() {
    skip_unless!("cryptsetup", "losetup");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let file = dir.path().join("pool/sec_00000.img");
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let stop = Arc::new(AtomicBool::new(false));
    let found = Arc::new(Mutex::new(vec![]));
    let watcher = {
        let (stop, found) = (stop.clone(), found.clone());
        std::thread::spawn(move || watch_proc(PASS.as_bytes(), stop, found))
    };
    let mut bodies = vec![];
    {
        let mut agent = Agent::start(dir.path(), None, &log);
        let stack = r#"["LUKS","STORAGE"]"#;
        let (s, b) = agent.put("sec", &doc("sec", stack, 16384, PASS)).unwrap();
        assert_converged((s, b.clone()));
        bodies.push(b);
        // Wrong passphrase on the existing header: refused, the body must not echo either.
        let wrong = "wrong-Passphrase-0042";
        let wrong_doc =
            doc("sec", stack, 16384, wrong).replace(r#""generation":1"#, r#""generation":2"#);
        let (s, b) = agent.put("sec", &wrong_doc).unwrap();
        assert_eq!(s, 422, "{b}");
        assert!(b.contains("luks_passphrase_mismatch"), "{b}");
        assert!(!b.contains(wrong), "{b}");
        bodies.push(b);
        for (m, p) in [
            ("POST", "/v1/resources/sec/plan"),
            ("GET", "/v1/resources/sec"),
            ("GET", "/v1/resources"),
        ] {
            let (_, b) = http(agent.port, m, p, &doc("sec", stack, 16384, PASS)).unwrap();
            bodies.push(b);
        }
        let (s, b) = http(agent.port, "DELETE", "/v1/resources/sec", "").unwrap();
        assert_eq!(s, 200, "{b}");
        bodies.push(b);
    }
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        found.lock().unwrap().is_empty(),
        "{:?}",
        found.lock().unwrap()
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.lines().count() > 3,
        "trace logs captured: {log_text}"
    );
    assert!(!log_text.contains(PASS), "passphrase in the agent log");
    for b in &bodies {
        assert!(!b.contains(PASS), "{b}");
    }
    let hits = files_containing(&dir.path().join("state"), PASS.as_bytes());
    assert!(hits.is_empty(), "{hits:?}");
}
