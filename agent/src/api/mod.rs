//! The agent API (docs/design.md §4): one set of handlers served over HTTP and over SSH stdio.

pub mod http;
pub mod stdio;

use blockstor_proto::wire::{DesiredResource, StdioRequest};

use crate::engine::Engine;
use crate::error::{Error, Kind, Result};

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
            code: "invalid_request",
            message: format!("invalid DesiredResource: {inner}"),
            field,
        }
    })
}

/// Runs one stdio request through the same engine calls as the HTTP routes; the success value
/// is exactly the HTTP response body.
pub async fn handle(engine: &Engine, req: StdioRequest) -> Result<serde_json::Value> {
    match req {
        StdioRequest::Node => json(engine.node().await),
        StdioRequest::Apply { resource } => json(engine.apply(resource).await),
        StdioRequest::Plan { resource } => json(engine.plan(resource).await),
        StdioRequest::Get { name } => json(engine.get(&name).await),
        StdioRequest::Delete { name } => json(engine.delete(&name).await),
        StdioRequest::List => json(engine.list().await),
    }
}

fn json<T: serde::Serialize>(v: Result<T>) -> Result<serde_json::Value> {
    serde_json::to_value(v?).map_err(|e| Error::internal(e.to_string()))
}

#[cfg(test)]
mod tests;
