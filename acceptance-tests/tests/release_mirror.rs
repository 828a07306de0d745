//! The release artifacts as a user installs them: `scripts/release.sh` writes the zip,
//! SHA256SUMS, the registry manifest and a network-mirror layout; the mirror is served over
//! HTTPS (a throwaway CA, trusted through `SSL_CERT_FILE`) on 127.0.0.1, and a real
//! `terraform init` installs the provider from it with a version constraint, records the
//! script's hashes in `.terraform.lock.hcl`, and a plan runs the installed binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acceptance_tests::host::{self, USER_SEAT};
use acceptance_tests::{binaries, process, require, AgentConfig, AgentProcess, Terraform};

const NAME: &str = binaries::PROVIDER;
const VERSION: &str = binaries::PROVIDER_VERSION;

/// A static HTTPS file server: Python's, with TLS and `.json` served as application/json
/// (Terraform's mirror client insists on that content type). Prints its port, then serves.
const SERVER_PY: &str = r#"
import functools, http.server, ssl, sys
root, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

#[test]
fn terraform_init_installs_the_release_from_a_network_mirror_with_matching_hashes() {
    if !require(USER_SEAT) || !tools_present(&["openssl", "python3", "zip", "sha256sum"]) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("blockstor-release-")
        .tempdir()
        .expect("temp dir");
    let dist = tmp.path().join("dist");
    let out = run_release_script(&dist);
    let hashes = ScriptHashes::read(&dist);

    // SHA256SUMS covers the zip and the manifest, and both still match it.
    let sums = std::fs::read_to_string(dist.join(format!("{NAME}_{VERSION}_SHA256SUMS")))
        .expect("SHA256SUMS");
    let zip = format!("{NAME}_{VERSION}_linux_amd64.zip");
    let manifest = format!("{NAME}_{VERSION}_manifest.json");
    for file in [&zip, &manifest] {
        assert!(
            sums.lines().any(|l| l.ends_with(&format!("  {file}"))),
            "SHA256SUMS lacks {file}:\n{sums}\n{out}"
        );
    }
    let mut check = Command::new("sha256sum");
    check.arg("--check").arg("--strict").current_dir(&dist);
    check.arg(format!("{NAME}_{VERSION}_SHA256SUMS"));
    process::run(check, "sha256sum --check".into(), Duration::from_secs(30)).assert_success();
    assert_eq!(
        hashes.zh,
        format!("zh:{}", sha256_hex(&dist.join(&zip))),
        "zh: is the sha256 of the zip"
    );
    let manifest_json = read_json(&dist.join(&manifest));
    assert_eq!(
        manifest_json["metadata"]["protocol_versions"],
        serde_json::json!(["5.0", "6.0"])
    );

    // The mirror's own documents agree with the script's hashes.
    let mirror = dist.join("mirror");
    let provider_dir = mirror.join("registry.terraform.io/cozystack/blockstor");
    let index = read_json(&provider_dir.join("index.json"));
    assert!(
        index["versions"][VERSION].is_object(),
        "index.json: {index}"
    );
    let version_doc = read_json(&provider_dir.join(format!("{VERSION}.json")));
    let archive = &version_doc["archives"]["linux_amd64"];
    assert_eq!(archive["url"], zip.as_str());
    assert_eq!(
        archive["hashes"],
        serde_json::json!([hashes.h1, hashes.zh]),
        "{VERSION}.json"
    );

    let tls = TestCa::new(&tmp.path().join("tls"));
    let server = MirrorServer::start(&mirror, &tls);
    let cli_config = tmp.path().join("cli.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"{}\"\n  }}\n}}\n",
            server.url()
        ),
    )
    .expect("write CLI config");

    // 1. A fresh init: installs from the mirror and locks the script's h1: hash.
    let agent = AgentProcess::start(&tmp.path().join("agent"), AgentConfig::default());
    let first = tf_dir(tmp.path(), "first");
    let tf = terraform(&first, &cli_config, &tls, &agent);
    tf.init()
        .assert_success()
        .assert_contains(&format!("Installed cozystack/blockstor v{VERSION}"));
    let locked = locked_hashes(&first);
    assert!(
        locked.contains(&hashes.h1),
        "the lock file should hold the script's {}, has {locked:?}",
        hashes.h1
    );
    for hash in &locked {
        assert!(
            *hash == hashes.h1 || *hash == hashes.zh,
            "the lock file holds {hash}, which the script did not compute ({hashes:?})"
        );
    }
    // The installed binary runs: the plan reads a data source through the agent.
    tf.plan().assert_code(0);

    // 2. A lock file holding only the script's zh: hash: init verifies the zip against it.
    let second = tf_dir(tmp.path(), "second");
    write_lock(&second, &hashes.zh);
    let tf = terraform(&second, &cli_config, &tls, &agent);
    tf.init().assert_success();
    assert!(locked_hashes(&second).contains(&hashes.zh));

    // 3. Control: a zh: hash the zip does not have makes init refuse the package.
    let third = tf_dir(tmp.path(), "third");
    let wrong_zh = format!("zh:{}", "0".repeat(64));
    write_lock(&third, &wrong_zh);
    let tf = terraform(&third, &cli_config, &tls, &agent);
    let refused = tf.init();
    refused.assert_failure();
    // Terraform wraps its error text: compare with the line breaks folded into spaces.
    let words = refused
        .combined()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains("doesn't match any of the checksums previously recorded"),
        "init should refuse a package whose zh: hash differs:\n{refused}"
    );
}

/// The hashes the release script reported for linux_amd64 (`hashes.txt`).
#[derive(Debug)]
struct ScriptHashes {
    h1: String,
    zh: String,
}

impl ScriptHashes {
    fn read(dist: &Path) -> Self {
        let text = std::fs::read_to_string(dist.join("hashes.txt")).expect("hashes.txt");
        let line = text
            .lines()
            .find(|l| l.starts_with("linux_amd64 "))
            .unwrap_or_else(|| panic!("hashes.txt has no linux_amd64 line:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "hashes.txt line: {line}");
        assert!(
            fields[1].starts_with("h1:") && fields[2].starts_with("zh:"),
            "{line}"
        );
        ScriptHashes {
            h1: fields[1].to_string(),
            zh: fields[2].to_string(),
        }
    }
}

fn run_release_script(dist: &Path) -> acceptance_tests::Outcome {
    let script = binaries::workspace_root().join("scripts/release.sh");
    let mut cmd = Command::new(script);
    cmd.arg(dist)
        // The binary the test suite built; the script builds one itself when this is unset.
        .env("BLOCKSTOR_PROVIDER_BINARY", binaries::provider());
    let out = process::run(cmd, "scripts/release.sh".into(), Duration::from_secs(120));
    out.assert_success();
    out
}

/// A terraform working directory `name` with the test's configuration.
fn tf_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create tf dir");
    std::fs::write(dir.join("main.tf"), MAIN_TF).expect("write main.tf");
    dir
}

const MAIN_TF: &str = r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor", version = "~> 0.1" }
  }
}

variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

provider "blockstor" {
  node "n1" {
    address = "127.0.0.1"
    http {
      endpoint = var.endpoint
      token    = var.token
    }
  }
}

data "blockstor_nodes" "all" {}
"#;

fn terraform(dir: &Path, cli_config: &Path, tls: &TestCa, agent: &AgentProcess) -> Terraform {
    let mut tf = Terraform::new(dir, cli_config);
    tf.env("SSL_CERT_FILE", tls.ca_cert.display().to_string())
        .var("endpoint", agent.endpoint())
        .var("token", agent.token());
    tf
}

fn write_lock(dir: &Path, hash: &str) {
    std::fs::write(
        dir.join(".terraform.lock.hcl"),
        format!(
            "provider \"registry.terraform.io/cozystack/blockstor\" {{\n  version     = \"{VERSION}\"\n  \
             constraints = \"~> 0.1\"\n  hashes = [\n    \"{hash}\",\n  ]\n}}\n"
        ),
    )
    .expect("write lock file");
}

/// Every quoted `h1:`/`zh:` string of the working directory's `.terraform.lock.hcl`.
fn locked_hashes(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).expect("lock file");
    text.split('"')
        .filter(|s| s.starts_with("h1:") || s.starts_with("zh:"))
        .map(str::to_string)
        .collect()
}

/// A throwaway CA and a server certificate for 127.0.0.1 it signed (openssl CLI).
struct TestCa {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl TestCa {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create tls dir");
        let ca = TestCa {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("write ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-subj", "/CN=blockstor test CA", "-days", "1"],
            ],
            &[("-keyout", &ca_key), ("-out", &ca.ca_cert)],
        );
        openssl(
            &[&["req"], &ec[..], &["-subj", "/CN=127.0.0.1"]],
            &[("-keyout", &ca.server_key), ("-out", &csr)],
        );
        openssl(
            &[&["x509", "-req", "-days", "1", "-CAcreateserial"]],
            &[
                ("-in", &csr),
                ("-CA", &ca.ca_cert),
                ("-CAkey", &ca_key),
                ("-extfile", &ext),
                ("-out", &ca.server_cert),
            ],
        );
        ca
    }
}

fn openssl(args: &[&[&str]], paths: &[(&str, &PathBuf)]) {
    let mut cmd = Command::new("openssl");
    for part in args {
        cmd.args(*part);
    }
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    process::run(cmd, "openssl".into(), Duration::from_secs(30)).assert_success();
}

/// The HTTPS static server over the mirror directory; killed on drop.
struct MirrorServer {
    child: Child,
    port: u16,
}

impl MirrorServer {
    fn start(root: &Path, tls: &TestCa) -> Self {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SERVER_PY)
            .arg(root)
            .arg(&tls.server_cert)
            .arg(&tls.server_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 https server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("server stdout"))
            .read_line(&mut line)
            .expect("read server port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the mirror server did not print its port: {line:?}")
        });
        MirrorServer { child, port }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| host::which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("needs {} on PATH", missing.join(", "));
    assert!(!host::in_ci(), "CI must provide it: {reason}");
    eprintln!("skipped: {reason}");
    false
}

fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn sha256_hex(path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = process::run(cmd, "sha256sum".into(), Duration::from_secs(30));
    out.assert_success();
    out.stdout
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}
