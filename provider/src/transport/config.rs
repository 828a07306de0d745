//! How each node is reached, as the provider configuration says; secrets in it (the bearer token,
//! SSH private keys) are `SecretString` and `Debug` is written by hand to show none.

use std::time::Duration;

use blockstor_proto::NodeName;
use secrecy::SecretString;

/// One `node "name" {}` block of the provider configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: NodeName,
    /// DRBD replication address of this node.
    pub address: String,
    pub transport: TransportConfig,
}

#[derive(Debug, Clone)]
pub enum TransportConfig {
    Http(HttpConfig),
    Ssh(SshConfig),
}

/// `node { http { endpoint, token, ca_cert_pem } }`. Holds the token: `Debug` is written by
/// hand (below) and shows none of it.
#[derive(Clone)]
pub struct HttpConfig {
    /// `http://127.0.0.1:3370` or `https://host:3370`.
    pub endpoint: String,
    /// Bearer token; falls back to `BLOCKSTOR_TOKEN` when the provider config leaves it null.
    pub token: Option<SecretString>,
    /// Extra CA to trust for `https` endpoints.
    pub ca_cert_pem: Option<String>,
    pub timeout: Duration,
}

/// `node { ssh { … } }`: exec `agent_command` on the node over SSH.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub endpoint: SshEndpoint,
    pub use_agent: bool,
    pub agent_command: String,
    pub bastion: Option<SshEndpoint>,
    pub timeout: Duration,
}

/// One SSH hop (the node itself, or a bastion): where, who, and which host key to trust.
/// Holds the private key: `Debug` is written by hand (below) and shows none of it.
#[derive(Clone)]
pub struct SshEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub private_key: Option<SecretString>,
    pub host_keys: HostKeyPolicy,
}

/// Host keys are always verified, unless the configuration says otherwise in writing.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Contents of a known_hosts file.
    KnownHosts(String),
    /// One pinned key, `ssh-ed25519 AAAA…`.
    Pinned(String),
    /// `insecure_ignore_host_key = true`: the provider warns on every plan.
    InsecureIgnore,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Debug for SshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("host_keys", &self.host_keys)
            .finish()
    }
}

/// The default command run on an SSH node.
pub const DEFAULT_AGENT_COMMAND: &str = "blockstor-agent stdio --config /etc/blockstor/agent.toml";
