//! How the provider reaches a node's agent: one [`AgentClient`] trait, one implementation per
//! transport (HTTP(S) in [`http`], SSH exec of `blockstor-agent stdio` in [`ssh`]).
//!
//! Every request carries one JSON document and gets one back (docs/design.md §4), so the transports
//! differ only in how the bytes travel; the error mapping is shared here.

mod cache;
mod client;
mod config;
pub mod http;
mod known_hosts;
pub mod ssh;

use std::sync::Arc;

pub use client::{AgentClient, TransportError};
pub use config::{
    HostKeyPolicy, HttpConfig, NodeConfig, SshConfig, SshEndpoint, TransportConfig,
    DEFAULT_AGENT_COMMAND,
};

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
    use std::time::Duration;

    use secrecy::SecretString;

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
