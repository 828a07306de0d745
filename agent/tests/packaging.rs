//! What `agent/packaging/` ships works with this agent: the example config loads with the
//! agent's own loader, the systemd unit is valid and starts `serve` with the packaged config,
//! and `--help` names every subcommand.

use std::path::{Path, PathBuf};
use std::process::Command;

use blockstor_agent::config::{BackendConfig, Config};

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

#[test]
fn example_config_loads_with_the_agents_config_loader() {
    let config = Config::load(&packaging("agent.toml.example")).expect("the example must load");
    assert_eq!(config.node_name.as_str(), "n1");
    assert_eq!(config.state_dir, Path::new("/var/lib/blockstor"));
    assert_eq!(
        config.http.token_file.as_deref(),
        Some(Path::new("/etc/blockstor/token"))
    );
    assert!(config.http.listen.ip().is_loopback());
    assert!(matches!(
        config.pools.as_slice(),
        [p] if matches!(p.backend, BackendConfig::Loopfile { .. })
    ));
}

#[test]
fn example_config_commented_pools_load_when_uncommented() {
    let text = std::fs::read_to_string(packaging("agent.toml.example")).unwrap();
    // Uncomment every `# key = value` and `# [[pool]]` line below the first pool.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[[pool]]") || is_setting(rest) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let uncommented =
        uncommented.replace("listen = \"127.0.0.1:3370\"", "listen = \"10.0.0.1:3370\"");
    let config = Config::parse(&uncommented).expect("every documented option must parse");
    let kinds: Vec<&str> = config.pools.iter().map(|p| p.backend.kind()).collect();
    assert_eq!(kinds, ["loopfile", "lvm", "lvm-thin", "zfs"]);
    assert!(config.http.tls_cert.is_some() && config.http.tls_key.is_some());
}

#[test]
fn systemd_unit_starts_serve_with_the_packaged_config_and_restarts_on_failure() {
    let unit = std::fs::read_to_string(packaging("blockstor-agent.service")).unwrap();
    let lines: Vec<&str> = unit.lines().collect();
    for want in [
        "ExecStart=/usr/local/bin/blockstor-agent serve --config /etc/blockstor/agent.toml",
        "Restart=on-failure",
        "User=root",
        "WantedBy=multi-user.target",
    ] {
        assert!(lines.contains(&want), "missing {want:?}");
    }
    // Options that would hide the devices a storage agent must open.
    for forbidden in [
        "PrivateDevices=yes",
        "DevicePolicy=",
        "ProtectKernelModules=yes",
    ] {
        assert!(!unit.contains(forbidden), "{forbidden} breaks loop/dm/drbd");
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: needs systemd-analyze (apt-get install systemd)");
        return;
    };
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(packaging("blockstor-agent.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/blockstor-agent",
            env!("CARGO_BIN_EXE_blockstor-agent"),
        );
    let path = dir.path().join("blockstor-agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings (exit 0): any line about our unit fails.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("blockstor-agent.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn help_names_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_blockstor-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "stdio", "check"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from --help:\n{help}"
        );
    }
    let serve = Command::new(env!("CARGO_BIN_EXE_blockstor-agent"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&serve.stdout).contains("--config <FILE>"));
}

/// `key = value` with a bare TOML key, as opposed to prose.
fn is_setting(line: &str) -> bool {
    line.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}
