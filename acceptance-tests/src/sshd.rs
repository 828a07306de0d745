//! A private `sshd` on a free loopback port, for the provider's SSH transport: its own host
//! key, one authorized client key, and the known_hosts line that pins the host key. Killed on
//! drop. Nothing of the machine's own SSH setup is read or changed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::free_loopback_addr;

/// Where Debian installs the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd accepting one client key for root.
#[derive(Debug)]
pub struct SshServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl SshServer {
    /// Generates keys under `dir`, writes an sshd_config there and starts sshd on 127.0.0.1.
    ///
    /// # Panics
    /// When a key cannot be generated or sshd does not listen within 10 s (its log is shown).
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create sshd dir");
        keygen(&dir.join("host_ed25519"));
        keygen(&dir.join("client_ed25519"));
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys"))
            .expect("write authorized_keys");
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let port = free_loopback_addr().port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host}\n\
                 AuthorizedKeysFile {auth}\nPidFile {pid}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nLogLevel VERBOSE\n",
                host = dir.join("host_ed25519").display(),
                auth = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .expect("write sshd_config");
        let log = std::fs::File::create(dir.join("sshd.log")).expect("create sshd log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        let mut server = SshServer {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        server.wait_listening();
        server
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client's private key (OpenSSH format), for the provider's `private_key`.
    pub fn client_private_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("client_ed25519")).expect("read client key")
    }

    /// A known_hosts line pinning this server's host key: `[127.0.0.1]:<port> ssh-ed25519 …`.
    pub fn known_hosts(&self) -> String {
        let public = std::fs::read_to_string(self.dir.join("host_ed25519.pub"))
            .expect("read host public key");
        let mut parts = public.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self.child.try_wait().expect("poll sshd") {
                panic!("sshd exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!("sshd did not listen on {addr} within 10 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "blockstor-acceptance",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen (package openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}
