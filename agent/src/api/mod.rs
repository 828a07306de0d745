//! The agent API (docs/design.md §4): one set of handlers served over HTTP and over SSH stdio.

pub mod http;
pub mod stdio;

use blockstor_proto::wire::{
    Deleted, DesiredResource, NodeInfo, ObservedResource, PlannedSteps, StdioRequest,
};

use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Kind, Result};

/// Parses a request body, naming the offending field (`volumes[0].size_kib`) on failure.
pub fn parse_desired(body: &[u8]) -> Result<DesiredResource> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            None
        } else {
            Some(path)
        };
        let inner = e.into_inner().to_string();
        let field = field.or_else(|| {
            inner
                .contains("layer_stack")
                .then(|| "layer_stack".to_owned())
        });
        Error {
            kind: Kind::Invalid,
            code: ErrorCode::InvalidRequest,
            message: format!("invalid DesiredResource: {inner}"),
            field,
        }
    })
}

/// Runs one request of the contract ([`blockstor_proto::contract`]), whichever front end
/// it came through; the answer serialises to the same JSON over HTTP and stdio.
pub async fn handle(engine: &Engine, req: StdioRequest) -> Result<Answer> {
    Ok(match req {
        StdioRequest::Node => Answer::Node(engine.node().await?),
        StdioRequest::Apply { resource } => Answer::Resource(engine.apply(resource).await?),
        StdioRequest::Plan { resource } => Answer::Plan(engine.plan(resource).await?),
        StdioRequest::Get { name } => Answer::Resource(engine.get(&name).await?),
        StdioRequest::Delete { name } => Answer::Deleted(engine.delete(&name).await?),
        StdioRequest::List => Answer::Resources(engine.list().await?),
    })
}

/// The success answer of an operation: the contract's output type, serialised as itself.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Answer {
    Node(NodeInfo),
    Resource(ObservedResource),
    Resources(Vec<ObservedResource>),
    Plan(PlannedSteps),
    Deleted(Deleted),
}

#[cfg(test)]
mod tests;
