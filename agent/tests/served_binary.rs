//! The built `blockstor-agent` binary: the whole HTTP apply, the token, TLS on a non-loopback
//! address, one stdio line, and a clean stop on SIGTERM. The HTTP apply needs root, loop devices
//! and `cryptsetup`, and skips with the reason when something is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command as Proc;
use std::time::{Duration, Instant};

use acceptance_tests::http::{loopback, request};
use blockstor_agent::host::{Host, RealHost};

#[macro_use]
mod common;
use common::{attachments, config_text, desired, free_port, wait_until_listening, PASS};

/// One request through the shared test client; a body that is not JSON reads as `Null`.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, body) = request(loopback(port), method, path, Some(token), Some(body)).unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
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
    skip_unless!("losetup", "cryptsetup");
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
    wait_until_listening(port);
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
    wait_until_listening(port);
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

/// Issue 16, defect 11: with the service running on a config, `stdio` on the same config is
/// answered at once (through the service's local socket) instead of waiting for the store the
/// service holds; after the service stops, `stdio` opens the store itself.
#[test]
fn stdio_is_answered_while_the_service_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let stdio = |line: &str| -> Option<String> {
        let mut child = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
            .args(["stdio", "--config"])
            .arg(&cfg)
            .env("BLOCKSTOR_LOG", "warn")
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
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        Some(String::from_utf8(out.stdout).unwrap())
    };
    let mut server = Server(
        Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("BLOCKSTOR_AGENT_TOKEN", "svc-token")
            .env("BLOCKSTOR_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    wait_until_listening(port);
    let socket = dir.path().join("state/agent.sock");
    let mode = std::fs::metadata(&socket)
        .expect("the service's local socket")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let node = stdio("{\"op\":\"node\"}\n").expect("stdio answered while the service runs");
    assert!(node.contains("\"name\":\"n1\""), "{node}");
    let twice = stdio("{\"op\":\"list\",\"op\":\"node\"}\n").unwrap();
    assert!(twice.contains("invalid_request"), "{twice}");

    // SIGTERM: the service stops and removes its socket; stdio then opens the store itself.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
    server.0.wait().unwrap();
    assert!(
        !socket.exists(),
        "the service removes its socket when it stops"
    );
    let list = stdio("{\"op\":\"list\"}\n").expect("stdio answered without the service");
    assert_eq!(list.trim(), "[]");
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
    wait_until_listening(port);
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
