//! The agent's TOML config (docs/design.md §4) and the bearer token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blockstor_proto::{NodeName, StoragePoolName};
use secrecy::SecretString;
use serde::Deserialize;

/// Where `serve` reads the token when `token_file` is not set.
pub const TOKEN_ENV: &str = "BLOCKSTOR_AGENT_TOKEN";

/// Why the config was refused; the message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config {path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("no bearer token: set http.token_file or the {TOKEN_ENV} environment variable")]
    NoToken,
    #[error("cannot read token_file {path}: {error}")]
    TokenFile {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The whole agent config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node_name: NodeName,
    /// Store, journal and rendered `.res` files.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    /// Where LINSTOR's satellite writes its `.res` files: read (never written) to recognise
    /// LINSTOR-built resources for import and to refuse taking over DRBD while LINSTOR's
    /// file is still there.
    #[serde(default = "default_linstor_res_dir")]
    pub linstor_res_dir: PathBuf,
    /// The Unix socket on which `serve` answers `stdio` requests from the same node, so both
    /// transports work at once (default `<state_dir>/agent.sock`, mode 0600).
    #[serde(default)]
    service_socket: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/blockstor")
}

fn default_linstor_res_dir() -> PathBuf {
    PathBuf::from(crate::linstor::DEFAULT_RES_DIR)
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections held open at once. At the cap, the oldest connection with no request in
    /// flight is closed to make room, so held-open sockets cannot lock out a real request.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers (also the idle time allowed
    /// between requests on a kept-alive connection).
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a client may take to finish the TLS handshake.
    #[serde(default = "default_tls_handshake_timeout_secs")]
    pub tls_handshake_timeout_secs: u64,
    /// Largest request body accepted, in bytes; larger bodies are answered 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            token_file: None,
            tls_cert: None,
            tls_key: None,
            max_connections: default_max_connections(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            tls_handshake_timeout_secs: default_tls_handshake_timeout_secs(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

impl HttpConfig {
    /// The limits the HTTP(S) server enforces.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// The HTTP(S) server's limits against clients that hold connections or send too much
/// (`[http]` keys of the same names; agent/README.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpConfig::default().limits()
    }
}

/// Well under the 1024 open files a systemd service gets by default, leaving room for the
/// store, tools' pipes and devices.
fn default_max_connections() -> usize {
    256
}

fn default_header_read_timeout_secs() -> u64 {
    10
}

fn default_tls_handshake_timeout_secs() -> u64 {
    10
}

/// A DesiredResource is a few KiB; the stdio line has the same limit.
fn default_max_body_bytes() -> usize {
    1024 * 1024
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:3370".parse().expect("valid address")
}

/// One `[[pool]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolConfig {
    pub name: StoragePoolName,
    #[serde(flatten)]
    pub backend: BackendConfig,
}

/// The backend of a pool, chosen by `backend = "…"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendConfig {
    /// Sparse files attached to loop devices.
    Loopfile { directory: PathBuf },
    /// Thick LVs in a volume group.
    Lvm { volume_group: String },
    /// Thin LVs in a thin pool.
    LvmThin {
        volume_group: String,
        thin_pool: String,
    },
    /// zvols under a dataset.
    Zfs { dataset: String },
}

impl BackendConfig {
    /// The name used in config and in `NodeInfo`.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Loopfile { .. } => "loopfile",
            BackendConfig::Lvm { .. } => "lvm",
            BackendConfig::LvmThin { .. } => "lvm-thin",
            BackendConfig::Zfs { .. } => "zfs",
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { error, .. } => ConfigError::Parse {
                path: path.to_owned(),
                error,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            error: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.state_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "state_dir {:?} must be an absolute path",
                self.state_dir
            )));
        }
        if !self.linstor_res_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "linstor_res_dir {:?} must be an absolute path (LINSTOR's default is {})",
                self.linstor_res_dir,
                crate::linstor::DEFAULT_RES_DIR
            )));
        }
        if self
            .service_socket
            .as_ref()
            .is_some_and(|p| !p.is_absolute())
        {
            return Err(ConfigError::Invalid(format!(
                "service_socket {:?} must be an absolute path",
                self.service_socket
            )));
        }
        let http = &self.http;
        if http.tls_cert.is_some() != http.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key must be set together".into(),
            ));
        }
        if !http.listen.ip().is_loopback() && http.tls_cert.is_none() {
            return Err(ConfigError::Invalid(format!(
                "http.listen {} is not a loopback address: set http.tls_cert and http.tls_key, \
                 or listen on 127.0.0.1",
                http.listen
            )));
        }
        if http.max_connections == 0
            || http.header_read_timeout_secs == 0
            || http.tls_handshake_timeout_secs == 0
            || http.max_body_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "http.max_connections, http.header_read_timeout_secs, \
                 http.tls_handshake_timeout_secs and http.max_body_bytes must be above 0"
                    .into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for pool in &self.pools {
            if !seen.insert(pool.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "pool {:?} is defined twice",
                    pool.name.as_str()
                )));
            }
            validate_backend(&pool.name, &pool.backend)?;
        }
        Ok(())
    }

    /// Where `serve` answers, and `stdio` first tries, local requests.
    pub fn service_socket(&self) -> PathBuf {
        self.service_socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("agent.sock"))
    }

    /// The pool called `name`, if configured.
    pub fn pool(&self, name: &StoragePoolName) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| &p.name == name)
    }

    /// The bearer token: `http.token_file`, else `BLOCKSTOR_AGENT_TOKEN`. `serve` refuses to
    /// start without one. A secret from here on: its `Debug` prints nothing.
    pub fn token(&self) -> Result<SecretString, ConfigError> {
        let token = match &self.http.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| ConfigError::TokenFile {
                    path: path.clone(),
                    error,
                })?
                .trim()
                .to_owned(),
            None => std::env::var(TOKEN_ENV)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        if token.is_empty() {
            return Err(ConfigError::NoToken);
        }
        Ok(SecretString::from(token))
    }
}

/// LVM and ZFS names reach argv: refuse anything that could read as an option or a path trick.
fn validate_backend(pool: &StoragePoolName, backend: &BackendConfig) -> Result<(), ConfigError> {
    let ok_name = |s: &str, slash: bool| {
        !s.is_empty()
            && !s.starts_with(['-', '.', '/'])
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c) || (slash && c == '/'))
    };
    let bad = |key: &str, v: &str| {
        Err(ConfigError::Invalid(format!(
            "pool {pool}: {key} {v:?} is not a valid name (letters, digits, '_-.+', not starting with '-')"
        )))
    };
    match backend {
        BackendConfig::Loopfile { directory } if !directory.is_absolute() => {
            return Err(ConfigError::Invalid(format!(
                "pool {pool}: directory {directory:?} must be an absolute path"
            )));
        }
        BackendConfig::Lvm { volume_group } if !ok_name(volume_group, false) => {
            return bad("volume_group", volume_group)
        }
        BackendConfig::LvmThin {
            volume_group,
            thin_pool,
        } => {
            if !ok_name(volume_group, false) {
                return bad("volume_group", volume_group);
            }
            if !ok_name(thin_pool, false) {
                return bad("thin_pool", thin_pool);
            }
        }
        BackendConfig::Zfs { dataset } if !ok_name(dataset, true) => {
            return bad("dataset", dataset)
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const EXAMPLE: &str = r#"
node_name = "n1"
state_dir = "/var/lib/blockstor"
[http]
listen     = "127.0.0.1:3370"
token_file = "/etc/blockstor/token"
[[pool]]
name      = "files"
backend   = "loopfile"
directory = "/var/lib/blockstor/pools/files"
[[pool]]
name         = "thin"
backend      = "lvm-thin"
volume_group = "vg0"
thin_pool    = "tp"
[[pool]]
name    = "zp"
backend = "zfs"
dataset = "tank/blockstor"
"#;

    #[test]
    fn parses_the_design_example() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.node_name.as_str(), "n1");
        assert_eq!(c.pools.len(), 3);
        assert_eq!(
            c.pools[1].backend,
            BackendConfig::LvmThin {
                volume_group: "vg0".into(),
                thin_pool: "tp".into()
            }
        );
        assert_eq!(c.pools[2].backend.kind(), "zfs");
        assert_eq!(c.linstor_res_dir, Path::new("/var/lib/linstor.d"));
    }

    #[test]
    fn linstor_res_dir_is_configurable_and_must_be_absolute() {
        let c = Config::parse(&format!("{EXAMPLE}\n").replace(
            "state_dir =",
            "linstor_res_dir = \"/srv/linstor.d\"\nstate_dir =",
        ))
        .unwrap();
        assert_eq!(c.linstor_res_dir, Path::new("/srv/linstor.d"));
        let e = Config::parse(&EXAMPLE.replace(
            "state_dir =",
            "linstor_res_dir = \"linstor.d\"\nstate_dir =",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("linstor_res_dir"), "{e}");
    }

    #[test]
    fn refuses_non_loopback_listen_without_tls() {
        let text = EXAMPLE.replace("127.0.0.1:3370", "0.0.0.0:3370");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("not a loopback") && err.contains("tls_cert"),
            "{err}"
        );
        let with_tls = text.replace(
            "token_file",
            "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntoken_file",
        );
        Config::parse(&with_tls).unwrap();
    }

    #[test]
    fn http_limits_have_safe_defaults_are_settable_and_zero_is_refused() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(
            c.http.limits(),
            HttpLimits {
                max_connections: 256,
                header_read_timeout: Duration::from_secs(10),
                tls_handshake_timeout: Duration::from_secs(10),
                max_body_bytes: 1024 * 1024,
            }
        );
        let set = EXAMPLE.replace(
            "token_file =",
            "max_connections = 64\nheader_read_timeout_secs = 3\n\
             tls_handshake_timeout_secs = 4\nmax_body_bytes = 4096\ntoken_file =",
        );
        let l = Config::parse(&set).unwrap().http.limits();
        assert_eq!(
            (
                l.max_connections,
                l.header_read_timeout,
                l.tls_handshake_timeout,
                l.max_body_bytes
            ),
            (64, Duration::from_secs(3), Duration::from_secs(4), 4096)
        );
        let zero = EXAMPLE.replace("token_file =", "max_connections = 0\ntoken_file =");
        let err = Config::parse(&zero).unwrap_err().to_string();
        assert!(err.contains("http.max_connections"), "{err}");
    }

    #[test]
    fn service_socket_defaults_under_the_state_dir_and_is_settable() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(
            c.service_socket(),
            Path::new("/var/lib/blockstor/agent.sock")
        );
        let set = EXAMPLE.replace(
            "state_dir =",
            "service_socket = \"/run/blockstor/agent.sock\"\nstate_dir =",
        );
        let c = Config::parse(&set).unwrap();
        assert_eq!(c.service_socket(), Path::new("/run/blockstor/agent.sock"));
        let relative = EXAMPLE.replace("state_dir =", "service_socket = \"a.sock\"\nstate_dir =");
        let err = Config::parse(&relative).unwrap_err().to_string();
        assert!(err.contains("service_socket"), "{err}");
    }

    #[test]
    fn refuses_unknown_backend_and_option_like_names() {
        let err = Config::parse(&EXAMPLE.replace("\"zfs\"", "\"btrfs\"")).unwrap_err();
        assert!(err.to_string().contains("btrfs"), "{err}");
        let err = Config::parse(&EXAMPLE.replace("\"vg0\"", "\"--force\"")).unwrap_err();
        assert!(err.to_string().contains("volume_group"), "{err}");
    }

    #[test]
    fn token_comes_from_the_file_trimmed_and_empty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  t0ken\n").unwrap();
        let mut c = Config::parse(EXAMPLE).unwrap();
        c.http.token_file = Some(path.clone());
        assert_eq!(c.token().unwrap().expose_secret(), "t0ken");
        assert!(!format!("{:?}", c.token().unwrap()).contains("t0ken"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(c.token(), Err(ConfigError::NoToken)));
    }
}
