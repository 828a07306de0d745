//! Real tools on this host (tier 2): a loop-file pool with real `losetup`, LUKS2 headers with
//! real `cryptsetup`, and the whole HTTP apply through the built binary. Needs root, loop
//! devices and `cryptsetup` (Debian: `apt-get install -y cryptsetup-bin`); each test skips with
//! the reason when something is missing. On a kernel without device-mapper the LUKS apply must
//! stop at `cryptsetup open` with `kernel_feature_missing`, after the header is written.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstor_agent::config::Config;
use blockstor_agent::engine::Engine;
use blockstor_agent::host::{Host, RealHost};
use blockstor_agent::runner::SystemRunner;
use blockstor_agent::store::Store;
use blockstor_proto::wire::DesiredResource;

const PASS: &str = "real-tool pass phrase";

/// Why this host cannot run the test, if it cannot.
fn missing(tools: &[&str]) -> Option<String> {
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

macro_rules! skip_unless {
    ($($tool:expr),*) => {
        if let Some(why) = missing(&[$($tool),*]) {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn config_text(dir: &Path, extra_http: &str) -> String {
    let state = dir.join("state");
    let pool = dir.join("pool");
    format!(
        "node_name = \"n1\"\nstate_dir = {state:?}\n[http]\n{extra_http}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    )
}

fn engine(dir: &Path) -> Engine {
    let config = Config::parse(&config_text(dir, "")).unwrap();
    let store = Store::open(&config.state_dir).unwrap();
    Engine::new(config, Arc::new(SystemRunner), Arc::new(RealHost), store)
}

fn desired(name: &str, stack: &str, size_kib: u64, pass: Option<&str>) -> DesiredResource {
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

fn attachments(file: &Path) -> Vec<String> {
    let out = Proc::new("losetup").arg("-j").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(d, _)| d.to_owned()))
        .collect()
}

/// Size in bytes the kernel sees for a loop device.
fn loop_size(dev: &str) -> u64 {
    let name = dev.trim_start_matches("/dev/");
    let sectors: u64 = std::fs::read_to_string(format!("/sys/block/{name}/size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sectors * 512
}

#[tokio::test]
async fn loop_file_pool_creates_reuses_grows_and_deletes_with_real_loop_devices() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let file = dir.path().join("pool/rt_loop_00000.img");

    let first = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let dev = first.volumes[0]
        .backing_device
        .clone()
        .expect("a loop device");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        8 << 20,
        "exact size"
    );
    assert_eq!(attachments(&file), std::slice::from_ref(&dev));
    assert_eq!(first.volumes[0].device_path.as_deref(), Some(dev.as_str()));

    let again = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    assert_eq!(
        again.volumes[0].backing_device.as_deref(),
        Some(dev.as_str()),
        "re-apply reuses the device"
    );
    assert_eq!(attachments(&file).len(), 1);

    let grown = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 16384, None))
        .await
        .unwrap();
    assert_eq!(grown.volumes[0].size_kib, Some(16384));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20);
    assert_eq!(
        loop_size(&dev),
        16 << 20,
        "the capacity update made the kernel see the new size"
    );

    let err = e
        .apply(desired("rt_loop", r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap_err();
    assert_eq!(err.code, "shrink_refused");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 << 20);

    assert!(e.delete(&"rt_loop".parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    assert!(attachments(&file).is_empty());
    assert!(!e.delete(&"rt_loop".parse().unwrap()).await.unwrap().deleted);
}

/// Detaches, on drop, every loop device still bound to one of these files (a failed test must
/// not leave loop devices behind).
struct DetachOnDrop(Vec<PathBuf>);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            for dev in attachments(f) {
                let _ = Proc::new("losetup").args(["-d", &dev]).status();
            }
        }
    }
}

/// The file a loop device reads, from sysfs (`None` when unbound).
fn backing_file(dev: &str) -> Option<String> {
    let name = dev.trim_start_matches("/dev/");
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .ok()
        .map(|t| t.trim_end().to_owned())
}

/// Binds `file` to a free loop device with `losetup -f --show`.
fn losetup_attach(file: &Path) -> String {
    let out = Proc::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup -f --show {}", file.display());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes the store say volume 0 of `name` is on `device`: what the record holds after a
/// reboot or a manual `losetup -d` let another file take the recorded number. (Taking the
/// number for real races with other tests' attaches; the agent cannot tell the difference.)
fn record_loop_device(e: &Engine, name: &str, device: &str) {
    let mut record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    record.volume(0).loop_device = Some(device.to_owned());
    e.store.put(&record).unwrap();
}

#[tokio::test]
async fn a_stale_loop_device_record_never_touches_the_file_that_took_its_number() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_stale";
    let file = dir.path().join("pool/rt_stale_00000.img");
    let (other, third) = (dir.path().join("other.img"), dir.path().join("third.img"));
    let _cleanup = DetachOnDrop(vec![file.clone(), other.clone(), third.clone()]);
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();

    let first = e
        .apply(desired(name, r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let dev = first.volumes[0].backing_device.clone().unwrap();
    let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        record.volumes[&0].loop_device.as_deref(),
        Some(dev.as_str()),
        "the device is recorded at attach"
    );

    // Someone detaches our device, and the recorded number now backs another file. That file
    // has grown since it was bound: a wrong capacity update would show in its device's size.
    let st = Proc::new("losetup").args(["-d", &dev]).status().unwrap();
    assert!(st.success());
    std::fs::write(&other, vec![0u8; 4 << 20]).unwrap();
    let taken = losetup_attach(&other);
    record_loop_device(&e, name, &taken);
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_len(6 << 20)
        .unwrap();

    let seen = e.get(&name.parse().unwrap()).await.unwrap();
    assert_eq!(
        seen.volumes[0].backing_device, None,
        "the stale record is not reported"
    );
    let grown = e
        .apply(desired(name, r#"["STORAGE"]"#, 16384, None))
        .await
        .unwrap();
    let new_dev = grown.volumes[0].backing_device.clone().unwrap();
    assert_ne!(new_dev, taken, "attached anew, not the other file's device");
    assert_eq!(backing_file(&new_dev), Some(canonical(&file)));
    assert_eq!(loop_size(&new_dev), 16 << 20);
    assert_eq!(backing_file(&taken), Some(canonical(&other)), "left alone");
    assert_eq!(loop_size(&taken), 4 << 20, "its capacity was not touched");
    let record = e.store.get(&name.parse().unwrap()).unwrap().unwrap();
    assert_eq!(
        record.volumes[&0].loop_device.as_deref(),
        Some(new_dev.as_str()),
        "the record follows the new device"
    );

    // The same behind a delete: the recorded device backs a third file.
    std::fs::write(&third, vec![0u8; 1 << 20]).unwrap();
    let third_dev = losetup_attach(&third);
    record_loop_device(&e, name, &third_dev);
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    // (Another test may take the freed number at once, so only ask that it is not ours.)
    let ours = canonical(dir.path()) + "/pool/rt_stale_00000.img";
    assert!(
        !backing_file(&new_dev).is_some_and(|b| b.starts_with(&ours)),
        "our own device was found and detached"
    );
    assert_eq!(
        backing_file(&third_dev),
        Some(canonical(&third)),
        "not detached"
    );
    assert_eq!(
        backing_file(&taken),
        Some(canonical(&other)),
        "not detached"
    );
}

#[tokio::test]
async fn real_cryptsetup_formats_verifies_and_erases_a_loop_device() {
    skip_unless!("losetup", "truncate", "cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_luks";
    let file = dir.path().join("pool/rt_luks_00000.img");
    let dm = RealHost.device_mapper_available();

    let first = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 32768, Some(PASS)))
        .await;
    if dm {
        first.as_ref().expect("apply with device-mapper present");
    } else {
        let err = first.unwrap_err();
        assert_eq!(err.code, "kernel_feature_missing", "{err:?}");
        assert!(
            err.message.contains("dm_crypt") && err.message.contains("LUKS header written"),
            "{}",
            err.message
        );
        assert!(!err.message.contains(PASS));
    }
    let dev = attachments(&file)
        .pop()
        .expect("the loop device stays attached");
    let is_luks = Proc::new("cryptsetup")
        .args(["isLuks", &dev])
        .status()
        .unwrap();
    assert!(is_luks.success(), "header written on {dev}");

    // get reports the UUID that luksDump shows.
    let observed = e.get(&name.parse().unwrap()).await.unwrap();
    let uuid = observed.volumes[0]
        .luks
        .as_ref()
        .expect("LUKS observed")
        .uuid
        .clone();
    let dump = Proc::new("cryptsetup")
        .args(["luksDump", &dev])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&format!("UUID:          \t{uuid}")) || dump.contains(&uuid),
        "{dump}"
    );
    assert!(dump.contains("pbkdf2"), "fast pbkdf from props: {dump}");

    if !dm {
        // Wrong passphrase: a clear error, and the header is untouched.
        let err = e
            .apply(desired(
                name,
                r#"["LUKS","STORAGE"]"#,
                32768,
                Some("not the pass"),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("luks_passphrase_mismatch", Some("passphrase"))
        );
        let after = e.get(&name.parse().unwrap()).await.unwrap();
        assert_eq!(
            after.volumes[0].luks.as_ref().unwrap().uuid,
            uuid,
            "never reformatted"
        );
        // Right passphrase: verified, then the same kernel error at open (nothing re-done).
        let err = e
            .apply(desired(name, r#"["LUKS","STORAGE"]"#, 32768, Some(PASS)))
            .await
            .unwrap_err();
        assert_eq!(err.code, "kernel_feature_missing");
    }

    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    assert!(attachments(&file).is_empty());
    let store_bytes = std::fs::read(dir.path().join("state/agent.redb")).unwrap();
    assert!(
        !store_bytes
            .windows(PASS.len())
            .any(|w| w == PASS.as_bytes()),
        "no secret in the store"
    );
}

#[test]
fn real_cryptsetup_test_passphrase_accepts_right_and_rejects_wrong() {
    skip_unless!("cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hdr.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let with_stdin = |args: &[&str], secret: &str| {
        let mut child = Proc::new("cryptsetup")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(secret.as_bytes())
            .unwrap();
        child.wait().unwrap().code()
    };
    let f = file.to_str().unwrap();
    let fmt = [
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file=-",
        f,
    ];
    assert_eq!(with_stdin(&fmt, PASS), Some(0));
    assert!(Proc::new("cryptsetup")
        .args(["isLuks", f])
        .status()
        .unwrap()
        .success());
    let test = ["open", "--test-passphrase", "--key-file=-", f];
    assert_eq!(with_stdin(&test, PASS), Some(0));
    assert_eq!(
        with_stdin(&test, "wrong"),
        Some(2),
        "exit 2 = no key available"
    );
}

/// A free loopback port (bind 0, read it, release it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn http_apply_of_luks_over_storage_through_the_real_binary() {
    skip_unless!("losetup", "truncate", "cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token_file: PathBuf = dir.path().join("token");
    std::fs::write(&token_file, "tok-123\n").unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config_text(
            dir.path(),
            &format!("listen = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}"),
        ),
    )
    .unwrap();
    let _server = Server(
        Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("BLOCKSTOR_AGENT_TOKEN")
            .env("BLOCKSTOR_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agent did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(port, "GET", "/v1/node", "bad", "").0, 401);

    let doc = serde_json::to_string(&desired(
        "rt_http",
        r#"["LUKS","STORAGE"]"#,
        16384,
        Some(PASS),
    ))
    .unwrap();
    let (status, body) = http(port, "PUT", "/v1/resources/rt_http", "tok-123", &doc);
    let file = dir.path().join("pool/rt_http_00000.img");
    if RealHost.device_mapper_available() {
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["volumes"][0]["device_path"],
            "/dev/mapper/rt_http-0-luks"
        );
    } else {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "kernel_feature_missing");
        let msg = body["message"].as_str().unwrap();
        assert!(
            msg.contains("device-mapper") && msg.contains("dm_crypt"),
            "{msg}"
        );
        assert!(!msg.contains(PASS));
        // Everything before open is really done: file, loop device, LUKS header.
        let dev = attachments(&file).pop().expect("loop device attached");
        assert!(Proc::new("cryptsetup")
            .args(["isLuks", &dev])
            .status()
            .unwrap()
            .success());
        let (s, got) = http(port, "GET", "/v1/resources/rt_http", "tok-123", "");
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["volumes"][0]["backing_device"], dev.as_str());
        assert_eq!(got["volumes"][0]["luks"]["open"], false);
    }
    let (s, del) = http(port, "DELETE", "/v1/resources/rt_http", "tok-123", "");
    assert_eq!((s, del["deleted"].as_bool()), (200, Some(true)), "{del}");
    assert!(!file.exists());
    assert!(attachments(&file).is_empty());
    let (s, gone) = http(port, "GET", "/v1/resources/rt_http", "tok-123", "");
    assert_eq!((s, gone["code"].as_str()), (404, Some("not_found")));
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config_text(dir.path(), "")).unwrap();
    let out = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("BLOCKSTOR_AGENT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BLOCKSTOR_AGENT_TOKEN"));
}

/// A non-loopback listen needs TLS: serve HTTPS with a self-signed certificate made by
/// `openssl`, and check with `curl` that the token is still required over TLS.
#[test]
fn serve_over_tls_on_a_non_loopback_address() {
    for tool in ["openssl", "curl"] {
        if Proc::new(tool).arg("--version").output().is_err() {
            eprintln!("skipped: needs {tool}");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Proc::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config_text(
            dir.path(),
            &format!("listen = \"0.0.0.0:{port}\"\ntls_cert = {cert:?}\ntls_key = {key:?}"),
        ),
    )
    .unwrap();
    let _server = Server(
        Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("BLOCKSTOR_AGENT_TOKEN", "tls-token")
            .env("BLOCKSTOR_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agent did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let curl = |token: &str| {
        let out = Proc::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args([
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!("https://127.0.0.1:{port}/v1/node"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let ok = curl("tls-token");
    assert!(
        ok.ends_with("200") && ok.contains("\"name\":\"n1\""),
        "{ok}"
    );
    assert!(curl("nope").ends_with("401"));
}

/// SSH mode: one JSON line in, one JSON line out, through the real binary; no token needed.
#[test]
fn stdio_mode_answers_one_line_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config_text(dir.path(), "")).unwrap();
    let run = |line: &str| {
        let mut child = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
            .args(["stdio", "--config"])
            .arg(&cfg)
            .env_remove("BLOCKSTOR_AGENT_TOKEN")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let node = run("{\"op\":\"node\"}\n");
    assert_eq!(node.lines().count(), 1, "{node}");
    let v: serde_json::Value = serde_json::from_str(&node).unwrap();
    assert_eq!(v["name"], "n1");
    assert_eq!(v["pools"][0]["name"], "files");
    let err: serde_json::Value =
        serde_json::from_str(&run("{\"op\":\"get\",\"name\":\"missing_rd\"}\n")).unwrap();
    assert_eq!(err["error"]["code"], "not_found");
}

/// The agent's store is lost (reinstall): GET still finds the resource in the pool, with its
/// LUKS header, so `terraform import` works; a later apply adopts it without reformatting.
#[tokio::test]
async fn get_rediscovers_a_resource_after_the_store_is_lost() {
    skip_unless!("losetup", "truncate", "cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let name = "rt_import";
    let file = dir.path().join("pool/rt_import_00000.img");
    let uuid = {
        let e = engine(dir.path());
        let _ = e
            .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some(PASS)))
            .await;
        e.get(&name.parse().unwrap()).await.unwrap().volumes[0]
            .luks
            .clone()
            .unwrap()
            .uuid
    };
    std::fs::remove_file(dir.path().join("state/agent.redb")).unwrap();
    let e = engine(dir.path());
    let found = e.get(&name.parse().unwrap()).await.unwrap();
    assert_eq!(found.layer_stack.names(), ["LUKS", "STORAGE"]);
    assert_eq!(found.volumes[0].size_kib, Some(16384));
    assert_eq!(found.volumes[0].luks.as_ref().unwrap().uuid, uuid);
    let err = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(err.code, "luks_passphrase_mismatch");
    let _ = e
        .apply(desired(name, r#"["LUKS","STORAGE"]"#, 16384, Some(PASS)))
        .await;
    assert_eq!(
        e.get(&name.parse().unwrap()).await.unwrap().volumes[0]
            .luks
            .clone()
            .unwrap()
            .uuid,
        uuid
    );
    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists() && attachments(&file).is_empty());
}

/// DRBD through the real drbd-utils on a loop device: the `.res` is rendered and accepted,
/// `drbdadm create-md` writes metadata once, and without the kernel module apply stops before
/// `adjust` with a clear error. Needs drbd-utils (`apt-get install -y drbd-utils`).
#[tokio::test]
async fn drbd_metadata_is_created_once_with_real_drbd_utils() {
    skip_unless!("losetup", "truncate", "drbdadm");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (state, pool) = (dir.path().join("state"), dir.path().join("pool"));
    let config = Config::parse(&format!(
        "node_name = \"{hostname}\"\nstate_dir = {state:?}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    ))
    .unwrap();
    let e = Engine::new(
        config,
        Arc::new(SystemRunner),
        Arc::new(RealHost),
        Store::open(&state).unwrap(),
    );
    let d: DesiredResource = serde_json::from_str(
        r#"{"name":"rt_drbd","layer_stack":["DRBD","STORAGE"],"volumes":[{"number":0,"size_kib":16384}],
            "storage":{"pool":"files"},
            "drbd":{"node_id":0,"port":7789,"minors":[1789],"address":"127.0.0.1",
                    "peers":[{"name":"peer-x","node_id":1,"address":"127.0.0.2","port":7789}],
                    "shared_secret":"c2VjcmV0"}}"#,
    )
    .unwrap();
    let file = pool.join("rt_drbd_00000.img");
    let drbd_loaded = RealHost.drbd_available();
    let first = e.apply(d.clone()).await;
    let dev = attachments(&file).pop().expect("loop device");
    let md = |dev: &str| {
        Proc::new("drbdmeta")
            .args(["--force", "1789", "v09", dev, "internal", "dump-md"])
            .output()
            .unwrap()
            .status
            .success()
    };
    if !drbd_loaded {
        let err = first.unwrap_err();
        assert_eq!(err.code, "kernel_feature_missing", "{err:?}");
        assert!(err.message.contains("modprobe drbd"), "{}", err.message);
        assert!(md(&dev), "create-md wrote metadata on {dev}");
        let res = std::fs::read_to_string(state.join("drbd.d/rt_drbd.res")).unwrap();
        assert!(res.contains(&format!("disk {dev};")), "{res}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("drbd.d/rt_drbd.res"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the .res holds the shared secret: owner only"
        );
        // Again: metadata exists, so create-md does not run a second time.
        let err = e.apply(d.clone()).await.unwrap_err();
        assert_eq!(err.code, "kernel_feature_missing");
        let record = e.store.get(&"rt_drbd".parse().unwrap()).unwrap().unwrap();
        let create_mds = record
            .journal
            .iter()
            .filter(|j| j.action.contains("create-md"))
            .count();
        assert_eq!(create_mds, 1, "{:#?}", record.journal);
    } else {
        first.expect("apply with the drbd module loaded");
    }
    assert!(e.delete(&"rt_drbd".parse().unwrap()).await.unwrap().deleted);
    assert!(!state.join("drbd.d/rt_drbd.res").exists());
    assert!(!file.exists() && attachments(&file).is_empty());
}

/// `systemctl stop` sends SIGTERM: the server stops accepting and exits cleanly.
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let mut child = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("BLOCKSTOR_AGENT_TOKEN", "t")
        .env("BLOCKSTOR_LOG", "warn")
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agent did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Proc::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn delete_detaches_a_second_attachment_made_by_hand_too() {
    skip_unless!("losetup");
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let name = "rt_twice";
    let file = dir.path().join("pool/rt_twice_00000.img");
    let _cleanup = DetachOnDrop(vec![file.clone()]);
    let ours = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("pool/rt_twice_00000.img")
        .display()
        .to_string();

    let applied = e
        .apply(desired(name, r#"["STORAGE"]"#, 8192, None))
        .await
        .unwrap();
    let recorded = applied.volumes[0].backing_device.clone().unwrap();
    // An operator attaches the same file a second time (e.g. to inspect it).
    let by_hand = losetup_attach(&file);
    assert_ne!(by_hand, recorded);

    assert!(e.delete(&name.parse().unwrap()).await.unwrap().deleted);
    assert!(!file.exists());
    // (Another test may take a freed number at once, so only ask that it no longer backs ours.)
    for dev in [&recorded, &by_hand] {
        assert!(
            !backing_file(dev).is_some_and(|b| b.starts_with(&ours)),
            "{dev} still holds the removed file"
        );
    }
}
