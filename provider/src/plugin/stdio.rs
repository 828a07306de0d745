//! `plugin.GRPCStdio/StreamStdio`: go-plugin clients open this stream to mirror the plugin's
//! stdout/stderr. Without it Terraform logs "stdio service not available". Our stdout carries
//! only the handshake line and stderr goes to Terraform directly, so the stream carries no data:
//! it stays open until the server shuts down, then ends cleanly (an open stream would otherwise
//! hold the graceful stop).

use std::pin::Pin;

use blockstor_proto::goplugin::grpc_stdio_server::GrpcStdio;
use blockstor_proto::goplugin::StdioData;
use futures::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Serves an empty stdio stream that ends when `shutdown` is cancelled.
#[derive(Debug, Clone)]
pub struct Stdio {
    shutdown: CancellationToken,
}

impl Stdio {
    /// A stdio service whose streams end when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { shutdown }
    }
}

/// The stream [`Stdio`] returns (tonic's `BoxStream`).
pub type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    async fn stream_stdio(&self, _request: Request<()>) -> Result<Response<StdioStream>, Status> {
        let stream = futures::stream::pending().take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stdio_stream_stays_open_until_shutdown_then_ends() {
        let token = CancellationToken::new();
        let stdio = Stdio::new(token.clone());
        let mut stream = stdio
            .stream_stdio(Request::new(()))
            .await
            .unwrap()
            .into_inner();
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(early.is_err(), "the stream must stay open while serving");
        token.cancel();
        assert!(
            stream.next().await.is_none(),
            "the stream must end on shutdown"
        );
    }
}
