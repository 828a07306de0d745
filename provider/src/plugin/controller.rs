//! `plugin.GRPCController/Shutdown`: Terraform's "I am done with you". It waits 2 s for the
//! process to exit and then SIGKILLs it ("plugin failed to exit gracefully"), so the reply is
//! sent first and the server stops right after.

use blockstor_proto::goplugin::grpc_controller_server::GrpcController;
use blockstor_proto::goplugin::Empty;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Set once Terraform called Shutdown: it then has no call in flight and only waits for the
/// process to exit, so the server need not wait for its connections to wind down.
static ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the stop under way is Terraform's Shutdown (not SIGTERM, not a lost parent).
pub fn shutdown_requested() -> bool {
    ASKED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Answers Shutdown and then cancels `shutdown`, which stops the whole server.
#[derive(Debug, Clone)]
pub struct Controller {
    shutdown: CancellationToken,
}

impl Controller {
    /// A controller that cancels `shutdown` when Terraform asks the plugin to stop.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { shutdown }
    }
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("Terraform asked the plugin to shut down");
        // Cancel from a task of its own: the reply is already on its way when the server
        // begins its graceful stop, which waits for in-flight calls like this one.
        let shutdown = self.shutdown.clone();
        ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move { shutdown.cancel() });
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_replies_and_then_cancels_the_server() {
        let token = CancellationToken::new();
        let controller = Controller::new(token.clone());
        controller.shutdown(Request::new(Empty {})).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), token.cancelled())
            .await
            .expect("shutdown must cancel the server token");
    }
}
