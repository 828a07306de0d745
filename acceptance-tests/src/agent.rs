//! A real `blockstor-agent serve` on a free loopback port, with its own config, token, state
//! directory and loop-file pool, all under one directory. Killed on drop, after which every
//! loop device backed by its pool is detached.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::drbd_standin::DrbdStandIn;
use crate::{binaries, loops};

/// How long the agent may take to answer `GET /v1/node` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to write into the agent's config.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `node_name`.
    pub node_name: String,
    /// Name of the single loop-file pool.
    pub pool: String,
    /// The bearer token written to `token_file`.
    pub token: String,
    /// `linstor_res_dir`, where the agent looks for LINSTOR's `.res` files; `None` leaves
    /// the agent's default.
    pub linstor_res_dir: Option<PathBuf>,
    /// Run the agent with [`DrbdStandIn`] in place of the DRBD kernel module this host lacks.
    pub drbd_standin: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: "n1".into(),
            pool: "files".into(),
            // A per-process token: nothing guessable, nothing shared between test runs.
            token: format!("acc-{}-{}", std::process::id(), unique()),
            linstor_res_dir: None,
            drbd_standin: false,
        }
    }
}

/// A running agent. Dropping it kills the process and detaches its loop devices.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    config: AgentConfig,
    standin: Option<DrbdStandIn>,
}

impl AgentProcess {
    /// Writes the config under `dir` (created if needed), starts the agent and waits until
    /// `GET /v1/node` answers 200 with the token.
    ///
    /// # Panics
    /// When the agent exits or does not become ready in time; the agent's log is printed.
    pub fn start(dir: &Path, config: AgentConfig) -> Self {
        let addr = free_loopback_addr();
        let config_file = write_config(dir, &config, addr);
        let log = File::create(dir.join("agent.log")).expect("create agent log");
        let standin = config
            .drbd_standin
            .then(|| DrbdStandIn::install(&dir.join("drbd-standin")));
        let mut cmd = match &standin {
            Some(s) => s.command(
                &binaries::agent(),
                &config.node_name,
                &dir.join("state/drbd.d"),
            ),
            None => Command::new(binaries::agent()),
        };
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .env_remove("BLOCKSTOR_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binaries::agent().display()));
        let mut agent = AgentProcess {
            child,
            addr,
            dir: dir.to_path_buf(),
            config,
            standin,
        };
        agent.wait_ready();
        agent
    }

    /// `http://127.0.0.1:<port>`, for the provider's `http { endpoint }`.
    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The DRBD stand-in this agent runs with, when [`AgentConfig::drbd_standin`] asked for one.
    pub fn drbd_standin(&self) -> Option<&DrbdStandIn> {
        self.standin.as_ref()
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.config.token
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    /// The pool's directory (backing files live here).
    pub fn pool_dir(&self) -> PathBuf {
        self.dir.join("pools").join(&self.config.pool)
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// `GET path` with the bearer token: (status code, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        crate::http::request(self.addr, "GET", path, Some(&self.config.token), None)
    }

    /// `GET path` without any `Authorization` header: (status code, body).
    pub fn get_without_token(&self, path: &str) -> std::io::Result<(u16, String)> {
        crate::http::request(self.addr, "GET", path, None, None)
    }

    /// Backing files in the pool whose name starts with `prefix` (e.g. the RD name).
    pub fn pool_files(&self, prefix: &str) -> Vec<PathBuf> {
        loops::files_under(&self.pool_dir())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect()
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll agent") {
                panic!(
                    "blockstor-agent exited before it was ready ({status}):\n{}",
                    self.log()
                );
            }
            if let Ok((200, _)) = self.get("/v1/node") {
                return;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "blockstor-agent did not answer GET /v1/node within {READY_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        loops::detach_all_under(&self.dir);
    }
}

fn render_config(
    config: &AgentConfig,
    addr: SocketAddr,
    state_dir: &Path,
    token_file: &Path,
    pool_dir: &Path,
) -> String {
    let linstor = config
        .linstor_res_dir
        .as_ref()
        .map(|d| format!("linstor_res_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    format!(
        r#"node_name = "{node}"
state_dir = "{state}"
{linstor}
[http]
listen     = "{addr}"
token_file = "{token}"

[[pool]]
name      = "{pool}"
backend   = "loopfile"
directory = "{pool_dir}"
"#,
        node = config.node_name,
        state = state_dir.display(),
        token = token_file.display(),
        pool = config.pool,
        pool_dir = pool_dir.display(),
    )
}

/// Writes an agent config under `dir` (created if needed): `agent.toml`, the token file
/// (mode 0600), `state/` and the pool directory `pools/<pool>/`. Returns the config path,
/// for `blockstor-agent serve|stdio --config`. `addr` is the HTTP listen address.
pub fn write_config(dir: &Path, config: &AgentConfig, addr: SocketAddr) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create agent dir");
    let pool_dir = dir.join("pools").join(&config.pool);
    std::fs::create_dir_all(&pool_dir).expect("create pool dir");
    std::fs::create_dir_all(dir.join("state")).expect("create state dir");
    let token_file = dir.join("token");
    write_private(&token_file, &config.token);
    let config_file = dir.join("agent.toml");
    std::fs::write(
        &config_file,
        render_config(config, addr, &dir.join("state"), &token_file, &pool_dir),
    )
    .expect("write agent config");
    config_file
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr")
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create token file");
    f.write_all(contents.as_bytes()).expect("write token file");
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
