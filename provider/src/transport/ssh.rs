//! The agent over SSH: exec `agent_command` (`blockstor-agent stdio`) on the node, one JSON
//! request line in, one JSON response line out. No port opens on the node.
//!
//! One SSH connection per node is kept for the provider process (Terraform starts one process
//! per phase), and every request opens a fresh exec channel on it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use blockstor_proto::contract::{ops, Operation};
use blockstor_proto::wire::{
    AgentError, DeleteOptions, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
    StdioRequest,
};
use blockstor_proto::{ErrorCode, NodeName, ResourceName};
use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient as SshAgent;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::ChannelMsg;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::client::{AgentClient, TransportError};
use super::config::{SshConfig, SshEndpoint};
use super::known_hosts;

/// Environment variable read when no `private_key` is configured.
pub const PRIVATE_KEY_ENV: &str = "BLOCKSTOR_SSH_PRIVATE_KEY";

/// Largest response accepted from an agent; a `list` of many resources stays far below it.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

pub struct SshAgentClient {
    node: NodeName,
    cfg: SshConfig,
    session: tokio::sync::Mutex<Option<Arc<Handle<HostKeyCheck>>>>,
    /// Bounds the channels open at once on the session (see [`MAX_CHANNELS`]).
    channels: tokio::sync::Semaphore,
}

/// Channels one session may have open at once. OpenSSH refuses more than `MaxSessions`
/// (default 10) per connection, and Terraform applies up to 10 resources in parallel, each
/// with several requests: without a bound the extra channel opens fail with ConnectFailed.
const MAX_CHANNELS: usize = 8;

/// Checks the server's host key against the endpoint's policy and remembers why it refused.
struct HostKeyCheck {
    endpoint: SshEndpoint,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: &PublicKey = match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                *self.refusal.lock().expect("refusal lock") = Some(format!(
                    "{}:{} offered an SSH host certificate; certificate authorities are not supported, \
                     pin the host's plain key with host_key or known_hosts",
                    self.endpoint.host, self.endpoint.port
                ));
                return Ok(false);
            }
        };
        match known_hosts::verify(
            &self.endpoint.host_keys,
            &self.endpoint.host,
            self.endpoint.port,
            key,
        ) {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refusal.lock().expect("refusal lock") = Some(why);
                Ok(false)
            }
        }
    }
}

impl SshAgentClient {
    pub fn new(node: NodeName, cfg: SshConfig) -> Self {
        Self {
            node,
            cfg,
            session: tokio::sync::Mutex::new(None),
            channels: tokio::sync::Semaphore::new(MAX_CHANNELS),
        }
    }

    fn unreachable(&self, message: String) -> TransportError {
        TransportError::Unreachable {
            node: self.node.clone(),
            message,
        }
    }

    /// The node's session, connecting (through the bastion, if any) on first use.
    async fn session(&self) -> Result<Arc<Handle<HostKeyCheck>>, TransportError> {
        let mut slot = self.session.lock().await;
        if let Some(handle) = slot.as_ref().filter(|h| !h.is_closed()) {
            return Ok(handle.clone());
        }
        let handle = Arc::new(self.connect().await?);
        *slot = Some(handle.clone());
        Ok(handle)
    }

    async fn connect(&self) -> Result<Handle<HostKeyCheck>, TransportError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(self.cfg.timeout),
            // Requests and replies are small frames: with Nagle's algorithm each reply could
            // wait for the peer's delayed ACK (~40 ms).
            nodelay: true,
            ..Default::default()
        });
        let target = &self.cfg.endpoint;
        let (handler, refusal) = self.checker(target);
        let handle = match &self.cfg.bastion {
            None => client::connect(config, (target.host.as_str(), target.port), handler).await,
            Some(bastion) => {
                let (bastion_handler, bastion_refusal) = self.checker(bastion);
                let jump = client::connect(
                    config.clone(),
                    (bastion.host.as_str(), bastion.port),
                    bastion_handler,
                )
                .await
                .map_err(|e| self.connect_error("bastion", bastion, &bastion_refusal, e))?;
                let mut jump = jump;
                self.authenticate(&mut jump, bastion, "bastion").await?;
                let channel = jump
                    .channel_open_direct_tcpip(
                        target.host.clone(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| {
                        self.unreachable(format!(
                            "bastion {} could not open a tunnel to {}:{}: {e}",
                            bastion.host, target.host, target.port
                        ))
                    })?;
                // The jump session must outlive the tunnel: leak its handle into the stream's
                // owner by keeping it alive in a task that ends when the tunnel closes.
                let stream = channel.into_stream();
                let keep = Arc::new(jump);
                tokio::spawn(async move {
                    let _keep = keep;
                    std::future::pending::<()>().await
                });
                client::connect_stream(config, stream, handler).await
            }
        };
        let mut handle = handle.map_err(|e| self.connect_error("ssh", target, &refusal, e))?;
        self.authenticate(&mut handle, target, "ssh").await?;
        Ok(handle)
    }

    fn checker(&self, endpoint: &SshEndpoint) -> (HostKeyCheck, Arc<Mutex<Option<String>>>) {
        let refusal = Arc::new(Mutex::new(None));
        (
            HostKeyCheck {
                endpoint: endpoint.clone(),
                refusal: refusal.clone(),
            },
            refusal,
        )
    }

    fn connect_error(
        &self,
        what: &str,
        endpoint: &SshEndpoint,
        refusal: &Mutex<Option<String>>,
        e: russh::Error,
    ) -> TransportError {
        if let Some(why) = refusal.lock().expect("refusal lock").take() {
            return TransportError::HostKey {
                node: self.node.clone(),
                message: format!("{what}: {why}"),
            };
        }
        self.unreachable(format!(
            "{what}: cannot connect to {}:{}: {e}",
            endpoint.host, endpoint.port
        ))
    }

    /// Private key from config (or `BLOCKSTOR_SSH_PRIVATE_KEY`), else the ssh-agent when
    /// `use_agent` is set.
    async fn authenticate(
        &self,
        handle: &mut Handle<HostKeyCheck>,
        endpoint: &SshEndpoint,
        what: &str,
    ) -> Result<(), TransportError> {
        let user = endpoint.user.clone();
        let pem = endpoint
            .private_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .or_else(|| {
                std::env::var(PRIVATE_KEY_ENV)
                    .ok()
                    .filter(|k| !k.trim().is_empty())
            });
        if let Some(pem) = pem {
            let key = russh::keys::decode_secret_key(&pem, None)
                .map_err(|e| self.unreachable(format!("{what}.private_key cannot be read: {e}")))?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| self.unreachable(format!("{what}: {e}")))?
                .flatten();
            let result = handle
                .authenticate_publickey(
                    user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| self.unreachable(format!("{what}: authentication failed: {e}")))?;
            if result.success() {
                return Ok(());
            }
            return Err(self.unreachable(format!(
                "{what}: {}@{} refused the private key; add its public key to the user's authorized_keys",
                user, endpoint.host
            )));
        }
        if !self.cfg.use_agent {
            return Err(self.unreachable(format!(
                "{what}: no credentials: set private_key, {PRIVATE_KEY_ENV}, or use_agent = true"
            )));
        }
        let mut agent = SshAgent::connect_env().await.map_err(|e| {
            self.unreachable(format!(
                "{what}: use_agent is set but SSH_AUTH_SOCK is unusable: {e}"
            ))
        })?;
        let identities = agent.request_identities().await.map_err(|e| {
            self.unreachable(format!("{what}: the ssh-agent did not list keys: {e}"))
        })?;
        for identity in identities {
            let key = identity.public_key().into_owned();
            if let Ok(result) = handle
                .authenticate_publickey_with(user.clone(), key, None, &mut agent)
                .await
            {
                if result.success() {
                    return Ok(());
                }
            }
        }
        Err(self.unreachable(format!(
            "{what}: {}@{} accepted none of the ssh-agent's keys",
            user, endpoint.host
        )))
    }

    /// One operation of the contract, its answer decoded as the contract's output type.
    async fn typed<O: Operation>(
        &self,
        request: &StdioRequest,
    ) -> Result<Option<O::Response>, TransportError> {
        debug_assert_eq!(request.op(), O::OP);
        self.call(request).await
    }

    /// Runs one request through `agent_command` and decodes the answer line.
    async fn call<T: DeserializeOwned>(
        &self,
        request: &StdioRequest,
    ) -> Result<Option<T>, TransportError> {
        let work = async {
            let _permit = self.channels.acquire().await.expect("never closed");
            let handle = self.session().await?;
            let mut channel = handle
                .channel_open_session()
                .await
                .map_err(|e| self.unreachable(format!("ssh: cannot open a channel: {e}")))?;
            channel
                .exec(true, self.cfg.agent_command.as_str())
                .await
                .map_err(|e| self.unreachable(format!("ssh: cannot run agent_command: {e}")))?;
            let mut line = serde_json::to_vec(request).expect("requests always serialise");
            line.push(b'\n');
            channel
                .data(&line[..])
                .await
                .map_err(|e| self.unreachable(format!("ssh: sending the request failed: {e}")))?;
            channel
                .eof()
                .await
                .map_err(|e| self.unreachable(format!("ssh: {e}")))?;
            let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    _ => {}
                }
                if stdout.len() + stderr.len() > MAX_RESPONSE_BYTES {
                    return Err(self.unreachable("ssh: the agent's answer exceeds 16 MiB".into()));
                }
            }
            Ok::<_, TransportError>((stdout, stderr, status))
        };
        let (stdout, stderr, status) = tokio::time::timeout(self.cfg.timeout, work)
            .await
            .map_err(|_| {
                self.unreachable(format!("ssh: no answer within {:?}", self.cfg.timeout))
            })??;
        self.decode(&stdout, &stderr, status)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        stdout: &[u8],
        stderr: &[u8],
        status: Option<u32>,
    ) -> Result<Option<T>, TransportError> {
        let first_line = stdout.split(|b| *b == b'\n').next().unwrap_or_default();
        let value: serde_json::Value = match serde_json::from_slice(first_line) {
            Ok(v) => v,
            Err(_) => {
                let stderr = String::from_utf8_lossy(stderr);
                let stderr = stderr.trim();
                return Err(self.unreachable(format!(
                    "ssh: agent_command {:?} exited with {} and no agent answer{}",
                    self.cfg.agent_command,
                    status.map_or("no status".to_owned(), |s| format!("status {s}")),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", truncate(stderr, 2000))
                    }
                )));
            }
        };
        if let Some(error) = value
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("error"))
        {
            let error: AgentError = serde_json::from_value(error.clone())
                .map_err(|e| self.unreachable(format!("ssh: malformed agent error: {e}")))?;
            if error.is(ErrorCode::NotFound) {
                return Ok(None);
            }
            return Err(TransportError::Agent {
                node: self.node.clone(),
                error,
            });
        }
        serde_json::from_value(value).map(Some).map_err(|e| {
            self.unreachable(format!(
                "ssh: the agent's answer is not what this provider expects: {e}"
            ))
        })
    }

    fn missing(&self, what: &str) -> TransportError {
        self.unreachable(format!("ssh: the agent reported not_found for {what}"))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[async_trait]
impl AgentClient for SshAgentClient {
    fn node(&self) -> &NodeName {
        &self.node
    }

    async fn node_info(&self) -> Result<NodeInfo, TransportError> {
        self.typed::<ops::Node>(&StdioRequest::Node)
            .await?
            .ok_or_else(|| self.missing("node"))
    }

    async fn apply(&self, desired: &DesiredResource) -> Result<ObservedResource, TransportError> {
        let request = StdioRequest::Apply {
            resource: desired.clone(),
        };
        self.typed::<ops::Apply>(&request)
            .await?
            .ok_or_else(|| self.missing("apply"))
    }

    async fn plan(&self, desired: &DesiredResource) -> Result<PlannedSteps, TransportError> {
        let request = StdioRequest::Plan {
            resource: desired.clone(),
        };
        self.typed::<ops::Plan>(&request)
            .await?
            .ok_or_else(|| self.missing("plan"))
    }

    async fn get(&self, name: &ResourceName) -> Result<Option<ObservedResource>, TransportError> {
        self.typed::<ops::Get>(&StdioRequest::Get { name: name.clone() })
            .await
    }

    async fn delete(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<(), TransportError> {
        // Any answer will do: only failure matters.
        let request = StdioRequest::Delete {
            name: name.clone(),
            options: options.clone(),
        };
        self.call::<serde_json::Value>(&request).await.map(|_| ())
    }

    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
        self.typed::<ops::List>(&StdioRequest::List)
            .await?
            .ok_or_else(|| self.missing("list"))
    }
}
