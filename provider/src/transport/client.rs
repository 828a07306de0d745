//! The calls the controller makes on an agent, and how a call fails; every transport implements
//! this, so it sits apart from the module that picks a transport.

use async_trait::async_trait;
use blockstor_proto::wire::{
    AgentError, DeleteOptions, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
};
use blockstor_proto::{NodeName, ResourceName};

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
    /// `DELETE /v1/resources/{rd}`: idempotent teardown, as `options` say (the defaults send no
    /// body).
    async fn delete(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<(), TransportError>;
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
