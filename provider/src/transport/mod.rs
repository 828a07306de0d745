//! How the provider reaches a node's agent: one [`AgentClient`] trait, one implementation per
//! transport (HTTP(S) in [`http`], SSH exec of `blockstor-agent stdio` in [`ssh`]).
//!
//! Every request carries one JSON document and gets one back (docs/design.md §4), so the transports
//! differ only in how the bytes travel; the error mapping is shared here.

mod cache;
pub mod http;
mod known_hosts;
pub mod ssh;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use blockstor_proto::wire::{
    AgentError, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
};
use blockstor_proto::{NodeName, ResourceName};
use secrecy::SecretString;

/// The calls the controller makes on one node's agent.
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// The node this client talks to, for error messages.
    fn node(&self) -> &NodeName;
    /// `GET /v1/node`: versions, pools with free/total, used minors and ports.
    async fn node_info(&self) -> Result<NodeInfo, TransportError>;
    /// `PUT /v1/resources/{rd}`: converge the node to `desired`.
    async fn apply(&self, desired: &DesiredResource) -> Result<ObservedResource, TransportError>;
    /// `POST /v1/resources/{rd}/plan`: the argv steps apply would run, secrets redacted.
    async fn plan(&self, desired: &DesiredResource) -> Result<PlannedSteps, TransportError>;
    /// `GET /v1/resources/{rd}`: `None` when the node has nothing of this resource.
    async fn get(&self, name: &ResourceName) -> Result<Option<ObservedResource>, TransportError>;
    /// `DELETE /v1/resources/{rd}`: idempotent teardown.
    async fn delete(&self, name: &ResourceName) -> Result<(), TransportError>;
    /// `GET /v1/resources`: everything the node has, for import and data sources.
    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError>;
}

/// Why a call to an agent failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The agent answered with one of its stable error codes.
    #[error("node {node}: {error}")]
    Agent { node: NodeName, error: AgentError },
    /// The agent could not be reached, refused our credentials, or answered something that is
    /// not the agent protocol.
    #[error("node {node}: {message}")]
    Unreachable { node: NodeName, message: String },
    /// The SSH host key did not match what the configuration pins.
    #[error("node {node}: {message}")]
    HostKey { node: NodeName, message: String },
}

impl TransportError {
    /// The agent's error, when the agent itself refused the request.
    pub fn agent_error(&self) -> Option<&AgentError> {
        match self {
            TransportError::Agent { error, .. } => Some(error),
            _ => None,
        }
    }

    pub fn node(&self) -> &NodeName {
        match self {
            TransportError::Agent { node, .. }
            | TransportError::Unreachable { node, .. }
            | TransportError::HostKey { node, .. } => node,
        }
    }
}

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

/// Builds the client for one node. No I/O happens until the first call. Reads of single
/// resources are answered from one list per process (see [`cache`]).
pub fn connect(node: &NodeConfig) -> Result<Arc<dyn AgentClient>, TransportError> {
    let inner: Arc<dyn AgentClient> = match &node.transport {
        TransportConfig::Http(cfg) => Arc::new(http::HttpAgentClient::new(node.name.clone(), cfg)?),
        TransportConfig::Ssh(cfg) => {
            Arc::new(ssh::SshAgentClient::new(node.name.clone(), cfg.clone()))
        }
    };
    Ok(Arc::new(cache::ListCached::new(inner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_node_config_shows_neither_token_nor_private_key() {
        let endpoint = |key: &str| SshEndpoint {
            host: "n1".into(),
            port: 22,
            user: "root".into(),
            private_key: Some(SecretString::from(key.to_owned())),
            host_keys: HostKeyPolicy::InsecureIgnore,
        };
        let http = NodeConfig {
            name: "n1".parse().unwrap(),
            address: "10.0.0.1".into(),
            transport: TransportConfig::Http(HttpConfig {
                endpoint: "https://n1:3370".into(),
                token: Some(SecretString::from("t0ken-s3cret".to_owned())),
                ca_cert_pem: None,
                timeout: Duration::from_secs(1),
            }),
        };
        let ssh = NodeConfig {
            transport: TransportConfig::Ssh(SshConfig {
                endpoint: endpoint("node-key-s3cret"),
                use_agent: false,
                agent_command: DEFAULT_AGENT_COMMAND.into(),
                bastion: Some(endpoint("bastion-key-s3cret")),
                timeout: Duration::from_secs(1),
            }),
            ..http.clone()
        };
        let shown = format!("{http:?} {ssh:?}");
        for secret in ["t0ken-s3cret", "node-key-s3cret", "bastion-key-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("https://n1:3370") && shown.contains("REDACTED"),
            "{shown}"
        );
    }
}
