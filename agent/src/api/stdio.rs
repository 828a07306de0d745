//! SSH mode: read ONE JSON request line from stdin, answer ONE JSON line on stdout.
//! No bearer token: the SSH login already authenticated the caller.

use blockstor_proto::contract::{Input, Op, OPERATIONS};
use blockstor_proto::wire::StdioRequest;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Kind};

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
    // Through a `Value`, as always: its keys print sorted, so the line stays byte for byte.
    let body = match answer
        .and_then(|a| serde_json::to_value(a).map_err(|e| Error::internal(e.to_string())))
    {
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
    let Some(op) = Op::from_stdio(op) else {
        let names: Vec<&str> = OPERATIONS.iter().map(|s| s.stdio).collect();
        let (last, first) = names.split_last().expect("the contract has operations");
        return Err(invalid(
            format!("unknown op {op:?}; use {} or {last}", first.join(", ")),
            Some("op".into()),
        ));
    };
    let req = match op.spec().input {
        Input::None => StdioRequest::bare(op),
        Input::Name => StdioRequest::named(op, typed(take("name"), "name")?),
        Input::Resource => StdioRequest::with_resource(op, typed(take("resource"), "")?),
    };
    Ok(req.expect("the request matches the contract's input"))
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
        code: ErrorCode::InvalidRequest,
        message,
        field,
    }
}
