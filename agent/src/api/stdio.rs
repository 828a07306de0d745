//! SSH mode: read ONE JSON request line from stdin, answer ONE JSON line on stdout.
//! No bearer token: the SSH login already authenticated the caller.

use blockstor_proto::wire::StdioRequest;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::engine::Engine;
use crate::error::{Error, Kind};

/// Largest request line accepted (a DesiredResource is a few KiB).
const MAX_LINE: u64 = 1024 * 1024;

/// Serves one request from `input` to `output`.
pub async fn serve_one<R, W>(engine: &Engine, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = String::new();
    BufReader::new(input.take(MAX_LINE))
        .read_line(&mut line)
        .await?;
    let answer = match parse(&line) {
        Ok(req) => super::handle(engine, req).await,
        Err(e) => Err(e),
    };
    let body = match answer {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "error": e.to_wire() }),
    };
    let mut text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    output.write_all(text.as_bytes()).await?;
    output.flush().await
}

fn parse(line: &str) -> Result<StdioRequest, Error> {
    if line.trim().is_empty() {
        return Err(invalid(
            "expected one JSON request line on stdin, got nothing".into(),
            None,
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| invalid(format!("invalid request: {e}"), None))?;
    // Deserialise the payload of each op on its own, so a bad field is named by its path
    // (serde cannot track paths through an internally tagged enum).
    let op = value.get("op").and_then(|v| v.as_str()).unwrap_or_default();
    let take = |key: &str| value.get(key).cloned().unwrap_or(serde_json::Value::Null);
    match op {
        "node" => Ok(StdioRequest::Node),
        "list" => Ok(StdioRequest::List),
        "apply" => Ok(StdioRequest::Apply {
            resource: typed(take("resource"), "")?,
        }),
        "plan" => Ok(StdioRequest::Plan {
            resource: typed(take("resource"), "")?,
        }),
        "get" => Ok(StdioRequest::Get {
            name: typed(take("name"), "name")?,
        }),
        "delete" => Ok(StdioRequest::Delete {
            name: typed(take("name"), "name")?,
        }),
        other => Err(invalid(
            format!("unknown op {other:?}; use node, apply, plan, get, delete or list"),
            Some("op".into()),
        )),
    }
}

/// Deserialises `v`, naming the failing field (`volumes[0].size_kib`); `base` names `v` itself.
fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value, base: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            base.to_owned()
        } else {
            path
        };
        let inner = e.into_inner().to_string();
        let field = if field.is_empty() && inner.contains("layer_stack") {
            "layer_stack".to_owned()
        } else {
            field
        };
        invalid(
            format!("invalid request: {inner}"),
            (!field.is_empty()).then_some(field),
        )
    })
}

fn invalid(message: String, field: Option<String>) -> Error {
    Error {
        kind: Kind::Invalid,
        code: "invalid_request",
        message,
        field,
    }
}
