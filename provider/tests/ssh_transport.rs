//! The SSH transport against a real `sshd` on a loopback port with its own host key.
//!
//! The remote command is a stand-in agent (a shell script answering one canned line), so this
//! tests the transport alone: host-key verification, authentication, one request line in, one
//! answer line out, and error mapping. Needs root (sshd) and openssh-server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockstor_proto::NodeName;
use secrecy::SecretString;
use terraform_provider_blockstor::transport::{
    connect, HostKeyPolicy, NodeConfig, SshConfig, SshEndpoint, TransportConfig, TransportError,
};

struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Starts sshd, or returns the reason it cannot run here.
fn start_sshd() -> Result<Sshd, String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return Err("needs /usr/sbin/sshd (apt-get install openssh-server)".into());
    }
    if !nix_is_root() {
        return Err("needs root to run sshd and log in as root".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A stand-in agent: answers a node request, a not_found get, and an agent error.
    let script = d.join("fake-agent");
    std::fs::write(
        &script,
        r#"#!/bin/sh
read -r line
case "$line" in
  *'"op":"node"'*) echo '{"name":"n2","versions":{"agent":"test","cryptsetup":null,"drbd_kernel":null,"drbd_utils":null},"pools":[],"used_minors":[1000],"used_ports":[7000]}' ;;
  *'"op":"get"'*) echo '{"error":{"code":"not_found","message":"no such resource"}}' ;;
  *) echo '{"error":{"code":"luks_passphrase_mismatch","message":"wrong passphrase","field":"passphrase"}}' ;;
esac
"#,
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
         PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sshd did not start: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Sshd { dir, port, child })
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn node(sshd: &Sshd, host_keys: HostKeyPolicy) -> NodeConfig {
    let d = sshd.dir.path();
    NodeConfig {
        name: "n2".parse().unwrap(),
        address: "127.0.0.1".into(),
        transport: TransportConfig::Ssh(SshConfig {
            endpoint: SshEndpoint {
                host: "127.0.0.1".into(),
                port: sshd.port,
                user: "root".into(),
                private_key: Some(SecretString::from(read(d.join("client_key")))),
                host_keys,
            },
            use_agent: false,
            agent_command: d.join("fake-agent").display().to_string(),
            bastion: None,
            timeout: Duration::from_secs(20),
        }),
    }
}

fn known_hosts_line(sshd: &Sshd) -> String {
    let key = read(sshd.dir.path().join("host_key.pub"));
    format!("[127.0.0.1]:{} {}", sshd.port, key.trim())
}

macro_rules! sshd_or_skip {
    () => {
        match start_sshd() {
            Ok(s) => s,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

#[tokio::test]
async fn ssh_with_known_hosts_reaches_the_agent_and_maps_errors() {
    let sshd = sshd_or_skip!();
    let client = connect(&node(
        &sshd,
        HostKeyPolicy::KnownHosts(known_hosts_line(&sshd)),
    ))
    .unwrap();
    let info = client.node_info().await.expect("node info over ssh");
    assert_eq!(info.used_minors, [1000]);
    assert!(
        client.get(&"db".parse().unwrap()).await.unwrap().is_none(),
        "not_found is None"
    );
    let err = client
        .delete(&"db".parse().unwrap(), &Default::default())
        .await
        .unwrap_err();
    let agent = err.agent_error().expect("agent error");
    assert_eq!(
        (agent.code.as_str(), agent.field.as_deref()),
        ("luks_passphrase_mismatch", Some("passphrase"))
    );
    assert_eq!(err.node(), &"n2".parse::<NodeName>().unwrap());
}

#[tokio::test]
async fn ssh_with_pinned_host_key_works() {
    let sshd = sshd_or_skip!();
    let pinned = read(sshd.dir.path().join("host_key.pub"));
    let client = connect(&node(&sshd, HostKeyPolicy::Pinned(pinned))).unwrap();
    assert_eq!(client.node_info().await.unwrap().name.as_str(), "n2");
}

#[tokio::test]
async fn ssh_connections_are_dialled_without_nagle() {
    let sshd = sshd_or_skip!();
    let pinned = read(sshd.dir.path().join("host_key.pub"));
    let client = connect(&node(&sshd, HostKeyPolicy::Pinned(pinned))).unwrap();
    client.node_info().await.unwrap();
    let nodelay = own_sockets_to(sshd.port);
    assert!(!nodelay.is_empty(), "no connection to sshd found");
    assert!(
        nodelay.iter().all(|&on| on),
        "TCP_NODELAY must be set: small request frames would wait for sshd's delayed ACK"
    );
}

/// TCP_NODELAY of each of this process's sockets connected to 127.0.0.1:`port`.
fn own_sockets_to(port: u16) -> Vec<bool> {
    use std::os::fd::BorrowedFd;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for two getsockopt calls while the client,
        // which owns it, is alive; descriptors that are not sockets fail those calls.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.is_some_and(|p| p.port() == port && p.ip().is_loopback()) {
            found.push(socket.tcp_nodelay().unwrap());
        }
    }
    found
}

#[tokio::test]
async fn ssh_with_wrong_host_key_is_refused_naming_node_and_fingerprint() {
    let sshd = sshd_or_skip!();
    let other = sshd.dir.path().join("other_key");
    keygen(&other);
    let wrong = format!(
        "[127.0.0.1]:{} {}",
        sshd.port,
        read(other.with_extension("pub")).trim()
    );
    let client = connect(&node(&sshd, HostKeyPolicy::KnownHosts(wrong))).unwrap();
    let err = client.node_info().await.unwrap_err();
    let text = err.to_string();
    let fingerprint = fingerprint_of(&sshd.dir.path().join("host_key.pub"));
    assert!(matches!(err, TransportError::HostKey { .. }), "{text}");
    assert!(text.starts_with("node n2:"), "{text}");
    assert!(
        text.contains(&fingerprint),
        "{text} should name {fingerprint}"
    );
}

#[tokio::test]
async fn ssh_with_no_known_hosts_entry_is_refused() {
    let sshd = sshd_or_skip!();
    let client = connect(&node(&sshd, HostKeyPolicy::KnownHosts(String::new()))).unwrap();
    let err = client.node_info().await.unwrap_err();
    assert!(matches!(err, TransportError::HostKey { .. }), "{err}");
    assert!(err.to_string().contains("no entry"), "{err}");
    assert!(err
        .to_string()
        .contains(&fingerprint_of(&sshd.dir.path().join("host_key.pub"))));
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
fn fingerprint_of(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}
