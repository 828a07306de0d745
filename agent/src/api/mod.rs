//! The agent API (docs/design.md §4): one set of handlers served over HTTP and over SSH stdio.

mod connections;
pub mod http;
pub mod local;
pub mod stdio;

use blockstor_proto::wire::{
    Deleted, DesiredResource, NodeInfo, ObservedResource, PlannedSteps, StdioRequest,
};

use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::redact::RequestSecrets;

/// Parses a request body, naming the offending field (`volumes[0].size_kib`) on failure.
pub fn parse_desired(body: &[u8]) -> Result<DesiredResource> {
    parse_json(body, "DesiredResource")
}

/// Deserialises `what` straight from the request's bytes, for HTTP bodies and stdio lines
/// alike: serde refuses a repeated key in any struct, so `{"op":"list","op":"delete"}` is an
/// error, never "the last one wins". A failure names the field by its path; JSON that does not
/// parse at all names no field, and the message gives the line and column.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let field = known_path(e.path());
        invalid_json(what, e.into_inner(), field)
    })?;
    // Trailing text after the document (a second object on the line) is refused too.
    de.end().map_err(|e| invalid_json(what, e, None))?;
    Ok(value)
}

fn invalid_json(what: &str, inner: serde_json::Error, field: Option<String>) -> Error {
    let message = format!("invalid {what}: {inner}");
    let field = field.or_else(|| {
        message
            .contains("layer_stack")
            .then(|| "layer_stack".to_owned())
    });
    Error {
        kind: Kind::Invalid,
        code: ErrorCode::InvalidRequest,
        message,
        field,
    }
}

/// The path up to its first segment serde could not name (`?`), or `None` if that leaves
/// nothing: never a `field` of `"?"`.
fn known_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Runs one request of the contract ([`blockstor_proto::contract`]), whichever front end
/// it came through; the answer serialises to the same JSON over HTTP and stdio. Its error has
/// passed through the redaction point ([`RequestSecrets`]): the front ends answer and log it
/// as it is.
pub async fn handle(engine: &Engine, req: StdioRequest) -> Result<Answer> {
    let secrets = RequestSecrets::of(&req, &engine.drbd_res_dir());
    run(engine, req).await.map_err(|e| secrets.redact(e))
}

async fn run(engine: &Engine, req: StdioRequest) -> Result<Answer> {
    Ok(match req {
        StdioRequest::Node => Answer::Node(engine.node().await?),
        StdioRequest::Apply { resource } => Answer::Resource(engine.apply(resource).await?),
        StdioRequest::Plan { resource } => Answer::Plan(engine.plan(resource).await?),
        StdioRequest::Get { name } => Answer::Resource(engine.get(&name).await?),
        StdioRequest::Delete { name, options } => {
            Answer::Deleted(engine.delete_with(&name, &options).await?)
        }
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
