//! Issue 16, defect 2: idle and half-open connections must not starve the agent. The real
//! binary runs with the file limit a systemd service gets by default (soft 1024); this test
//! raises its own limit, holds 1,100 connections that never finish a request (more than the
//! agent could hold open at once), and still gets an authenticated answer within 2 seconds,
//! over HTTP and over HTTPS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command as Proc;
use std::time::{Duration, Instant};

// Only the config and port helpers are used here.
#[allow(unused_macros)]
mod common;
use common::{config_text, free_port, wait_until_listening};

/// More connections than the agent's file limit (1024) could hold at once.
const HOSTILE: usize = 1100;
/// The requirement: a legitimate request is answered within this, whatever is held open.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const TOKEN: &str = "flood-token";

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Raises this test process's own file limit to its hard limit: it holds the hostile sockets.
fn raise_own_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur as usize > HOSTILE + 200,
        "this test needs a hard file limit above {}",
        HOSTILE + 200
    );
}

/// Starts the agent on `http_keys` with a soft file limit of 1024, as systemd gives a service.
fn start_agent(dir: &Path, port: u16, http_keys: &str) -> Server {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        config_text(
            dir,
            &format!("listen = \"{}\"\n{http_keys}", listen(port, http_keys)),
        ),
    )
    .unwrap();
    let mut cmd = Proc::new(env!("CARGO_BIN_EXE_blockstor-agent"));
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("BLOCKSTOR_AGENT_TOKEN", TOKEN)
        .env("BLOCKSTOR_LOG", "error");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = 1024;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = Server(cmd.spawn().unwrap());
    wait_until_listening(port);
    server
}

fn listen(port: u16, http_keys: &str) -> String {
    if http_keys.contains("tls_cert") {
        format!("0.0.0.0:{port}")
    } else {
        format!("127.0.0.1:{port}")
    }
}

/// `HOSTILE` connections: half send nothing, half send the start of something (`partial`)
/// and stop. Returned so they stay open.
fn hold_hostile_connections(port: u16, partial: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(HOSTILE);
    for i in 0..HOSTILE {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if i % 2 == 1 {
            let _ = s.write_all(partial);
        }
        held.push(s);
    }
    // Let the agent take them off its accept queue.
    std::thread::sleep(Duration::from_millis(500));
    held
}

/// One authenticated `GET /v1/node` over plain HTTP, all of it within the deadline.
fn node_over_http(port: u16) -> Result<String, String> {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), left())
        .map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left())).unwrap();
    write!(
        s,
        "GET /v1/node HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    s.set_read_timeout(Some(left())).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("no answer within {ANSWER_WITHIN:?}: {e}"))?;
    Ok(answer)
}

#[test]
fn held_idle_and_half_open_connections_do_not_starve_an_http_request() {
    raise_own_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _agent = start_agent(dir.path(), port, "");
    let _held = hold_hostile_connections(port, b"GET /v1/node HTTP/1.1\r\nHost: x\r\n");
    let start = Instant::now();
    let answer = node_over_http(port).unwrap();
    let took = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"name\":\"n1\""), "{answer}");
    assert!(took < ANSWER_WITHIN, "answered after {took:?}");
}

#[test]
fn held_idle_and_half_open_connections_do_not_starve_an_https_request() {
    for tool in ["openssl", "curl"] {
        if Proc::new(tool).arg("--version").output().is_err() {
            eprintln!("skipped: needs {tool}");
            return;
        }
    }
    raise_own_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Proc::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let port = free_port();
    let _agent = start_agent(
        dir.path(),
        port,
        &format!("tls_cert = {cert:?}\ntls_key = {key:?}"),
    );
    // A TLS record header that promises a ClientHello and never sends it.
    let _held = hold_hostile_connections(port, &[0x16, 0x03, 0x01, 0x02, 0x00]);
    let start = Instant::now();
    let out = Proc::new("curl")
        .args(["-sS", "--max-time", "2", "--cacert"])
        .arg(&cert)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/v1/node"))
        .output()
        .unwrap();
    let took = start.elapsed();
    let answer =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        answer.ends_with("200") && answer.contains("\"name\":\"n1\""),
        "{answer}"
    );
    assert!(took < ANSWER_WITHIN, "answered after {took:?}");
}
