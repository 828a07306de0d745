//! SSH mode: read ONE JSON request line from stdin, answer ONE JSON line on stdout.
//! No bearer token: the SSH login already authenticated the caller.

use blockstor_proto::contract::{Input, Op, OPERATIONS};
use blockstor_proto::wire::{DeleteOptions, DesiredResource, StdioRequest};
use blockstor_proto::{NodeName, ResourceName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Kind};

/// Largest request line accepted (a DesiredResource is a few KiB).
pub(crate) const MAX_LINE: u64 = 1024 * 1024;

/// Serves one request from `input` to `output`.
pub async fn serve_one<R, W>(engine: &Engine, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Bytes, not a String: a line that is not UTF-8 still gets a JSON answer.
    let mut line = Vec::new();
    BufReader::new(input.take(MAX_LINE))
        .read_until(b'\n', &mut line)
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

/// The request line: exactly these keys, each at most once (the same parser as the HTTP body,
/// [`super::parse_json`]), `name` or `resource` as the op's input says, and a delete's
/// [`DeleteOptions`] next to `name`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    op: String,
    #[serde(default)]
    name: Option<ResourceName>,
    #[serde(default)]
    resource: Option<DesiredResource>,
    // DeleteOptions, spelled out: serde cannot flatten into a struct that denies unknown keys.
    #[serde(default)]
    force: bool,
    #[serde(default)]
    remaining: Vec<NodeName>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

impl Envelope {
    fn delete_options(&mut self) -> DeleteOptions {
        DeleteOptions {
            force: std::mem::take(&mut self.force),
            remaining: std::mem::take(&mut self.remaining),
            wait_seconds: self.wait_seconds.take(),
        }
    }
}

pub(super) fn parse(line: &[u8]) -> Result<StdioRequest, Error> {
    if line.trim_ascii().is_empty() {
        return Err(invalid(
            "expected one JSON request line on stdin, got nothing".into(),
            None,
        ));
    }
    let mut envelope: Envelope = super::parse_json(line, "request").map_err(|mut e| {
        // The resource's own fields are named as over HTTP: `volumes[0].size_kib`.
        e.field = e.field.map(|f| match f.strip_prefix("resource.") {
            Some(inner) => inner.to_owned(),
            None => f,
        });
        e
    })?;
    let Some(op) = Op::from_stdio(&envelope.op) else {
        let names: Vec<&str> = OPERATIONS.iter().map(|s| s.stdio).collect();
        let (last, first) = names.split_last().expect("the contract has operations");
        return Err(invalid(
            format!(
                "unknown op {:?}; use {} or {last}",
                envelope.op,
                first.join(", ")
            ),
            Some("op".into()),
        ));
    };
    let options = envelope.delete_options();
    if op.spec().input != Input::NameAndDeleteOptions && !options.is_default() {
        return Err(invalid(
            format!(
                "op {:?} takes no delete options (force, remaining, wait_seconds)",
                envelope.op
            ),
            Some("op".into()),
        ));
    }
    let missing = |key: &str| {
        invalid(
            format!("op {:?} needs {key:?}", envelope.op),
            Some(key.into()),
        )
    };
    let req = match op.spec().input {
        Input::None => StdioRequest::bare(op),
        Input::Name => StdioRequest::named(op, envelope.name.ok_or_else(|| missing("name"))?),
        Input::Resource => {
            StdioRequest::with_resource(op, envelope.resource.ok_or_else(|| missing("resource"))?)
        }
        Input::NameAndDeleteOptions => StdioRequest::with_delete_options(
            op,
            envelope.name.ok_or_else(|| missing("name"))?,
            options,
        ),
    };
    Ok(req.expect("the request matches the contract's input"))
}

fn invalid(message: String, field: Option<String>) -> Error {
    Error {
        kind: Kind::Invalid,
        code: ErrorCode::InvalidRequest,
        message,
        field,
    }
}
