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
        return Err(Error::new(
            Kind::Invalid,
            "invalid_request",
            "expected one JSON request line on stdin, got nothing",
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(line);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error {
            kind: Kind::Invalid,
            code: "invalid_request",
            message: format!("invalid request: {}", e.into_inner()),
            field: (path != "." && !path.is_empty()).then_some(path),
        }
    })
}
