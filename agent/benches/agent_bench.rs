//! Benchmarks (not tests), docs/design.md §12: the agent's idle RSS, and its wall time for a
//! loop-file STORAGE apply + delete over HTTP divided by the time of the same raw commands
//! (`truncate`, `losetup -f --show`, `losetup -d`, `rm`) run directly. Needs root and loop
//! devices; prints why and exits 0 otherwise.
//!
//! `cargo bench -p blockstor-agent` (cargo builds the release agent with it); `BENCH_ROUNDS=<n>` (default 20).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acceptance_tests::http::{loopback, request};

const TOKEN: &str = "bench-token";

fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    request(loopback(port), method, path, Some(TOKEN), Some(body)).unwrap()
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{argv:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root || !Path::new("/dev/loop-control").exists() {
        println!("agent_bench skipped: needs root and loop devices (/dev/loop-control)");
        return;
    }
    // Cargo builds the agent binary with the bench's (release) profile.
    let bin = env!("CARGO_BIN_EXE_blockstor-agent");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (state, pool) = (dir.path().join("state"), dir.path().join("pool"));
    std::fs::create_dir_all(&pool).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "node_name = \"n1\"\nstate_dir = {state:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {token_file:?}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
        ),
    )
    .unwrap();
    let mut agent = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("BLOCKSTOR_LOG", "warn")
        .env_remove("BLOCKSTOR_AGENT_TOKEN")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle = vm_rss_kib(agent.id());

    let doc = r#"{"name":"bench","layer_stack":["STORAGE"],"volumes":[{"number":0,"size_kib":65536}],"storage":{"pool":"files"}}"#;
    let (mut agent_t, mut raw_t) = (vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let (s, b) = http(port, "PUT", "/v1/resources/bench", doc);
        assert_eq!(s, 200, "{b}");
        let (s, b) = http(port, "DELETE", "/v1/resources/bench", "");
        assert_eq!(s, 200, "{b}");
        agent_t.push(t.elapsed());

        let file = pool.join("raw_00000.img");
        let f = file.to_str().unwrap();
        let t = Instant::now();
        run(&["truncate", "-s", "64M", f]);
        let dev = run(&["losetup", "-f", "--show", f]);
        run(&["losetup", "-d", dev.trim()]);
        run(&["rm", "-f", f]);
        raw_t.push(t.elapsed());
    }
    let busy = vm_rss_kib(agent.id());
    let _ = agent.kill();
    let _ = agent.wait();
    let (a, r) = (median(agent_t), median(raw_t));
    println!("agent idle RSS: {idle} KiB (after {rounds} applies: {busy} KiB)");
    println!(
        "loop-file STORAGE apply+delete: agent over HTTP {:.1} ms, raw commands {:.1} ms, ratio {:.2} (median of {rounds})",
        a.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        a.as_secs_f64() / r.as_secs_f64()
    );
}
