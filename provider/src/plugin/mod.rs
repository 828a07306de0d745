//! The go-plugin server Terraform talks to (TERRAFORM-PROTOCOL.md §1–2).
//!
//! [`serve`] negotiates the protocol version, listens on `127.0.0.1:<ephemeral>`, sets up
//! AutoMTLS ([`tls`]), prints the handshake line ([`handshake`]) and serves the tfplugin6
//! `Provider` (or, for a protocol 5 client, [`crate::server5`] over it) next to go-plugin's
//! `GRPCController` ([`controller`]), `GRPCStdio` ([`stdio`]) and
//! gRPC health, until Terraform calls Shutdown or the process gets SIGTERM. Logging is in
//! [`log`].
//!
//! The process does no other I/O at start-up: Terraform starts a fresh provider process for every
//! phase, and waits for each one.

pub mod controller;
pub mod handshake;
pub mod log;
pub mod stdio;
pub mod tls;

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use blockstor_proto::goplugin::grpc_controller_server::GrpcControllerServer;
use blockstor_proto::goplugin::grpc_stdio_server::GrpcStdioServer;
use blockstor_proto::tfplugin5::provider_server::ProviderServer as Provider5Server;
use blockstor_proto::tfplugin6::provider_server::{Provider, ProviderServer};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, Router};
use tonic::transport::Server;

use handshake::{HandshakeError, HandshakeLine, ProtocolVersion};
use tls::TlsError;

/// How long a graceful stop may wait for open connections before the process exits anyway.
/// Terraform SIGKILLs the plugin 2 s after Shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1000);
/// The same after Terraform's own Shutdown: no call is in flight, the reply is on its way, and
/// Terraform ignores a lost reply and only waits for the exit (go-plugin's own server stops
/// hard, without waiting). The graceful HTTP/2 stop took ~50 ms here, twice per
/// `terraform validate`; the reply is written well within 1 ms (strace), and every
/// millisecond here is one more of each provider process's life.
const SHUTDOWN_GRACE_ASKED: Duration = Duration::from_millis(1);
/// A client that connects but does not finish the TLS handshake is dropped after this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The gRPC health service name go-plugin clients query.
const HEALTH_SERVICE: &str = "plugin";
/// Largest gRPC message accepted or sent; schemas and states can exceed tonic's 4 MiB default.
const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// Why the plugin server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The handshake with Terraform is impossible (no common protocol version).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// AutoMTLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding the listener failed.
    #[error("[plugin.listen] cannot listen on 127.0.0.1: {0}")]
    Listen(io::Error),
    /// Writing the handshake line failed (Terraform closed our stdout?).
    #[error("[plugin.handshake_line] cannot write the handshake line to stdout: {0}")]
    Stdout(io::Error),
    /// The gRPC server failed.
    #[error("[plugin.grpc] the gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Runs the plugin server for `provider` until Terraform calls Shutdown or SIGTERM arrives.
///
/// Reads `PLUGIN_PROTOCOL_VERSIONS` and `PLUGIN_CLIENT_CERT` from the environment; the magic
/// cookie must have been checked before (see [`handshake::check_magic_cookie`]).
pub async fn serve<P: Provider>(provider: P) -> Result<(), ServeError> {
    let offered = ProtocolVersion::offered(
        std::env::var(handshake::RESTRICT_VERSIONS_KEY)
            .ok()
            .as_deref(),
    );
    let protocol = handshake::negotiate_protocol(
        std::env::var(handshake::PROTOCOL_VERSIONS_KEY)
            .ok()
            .as_deref(),
        &offered,
    )?;
    let client_cert = match std::env::var(tls::CLIENT_CERT_KEY) {
        Ok(pem) if !pem.trim().is_empty() => Some(tls::parse_client_cert(&pem)?),
        _ => None,
    };

    let shutdown = CancellationToken::new();
    spawn_signal_handlers(shutdown.clone());
    spawn_parent_watch(shutdown.clone());

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(ServeError::Listen)?;
    let address = listener.local_addr().map_err(ServeError::Listen)?;
    let router = router(provider, protocol, &shutdown).await;

    match client_cert {
        Some(client_cert) => {
            let identity = tls::ServerIdentity::generate()?;
            let config = tls::server_config(&identity, client_cert)?;
            let incoming = tls_incoming(listener, config.into(), shutdown.clone());
            announce(protocol, address, Some(identity.cert_der.to_vec()))?;
            run(router, incoming, shutdown).await
        }
        None => {
            tracing::warn!(
                "PLUGIN_CLIENT_CERT is not set (TF_DISABLE_PLUGIN_TLS?): serving plaintext gRPC"
            );
            announce(protocol, address, None)?;
            run(router, plaintext_incoming(listener), shutdown).await
        }
    }
}

/// All services of the plugin process on one gRPC server.
async fn router<P: Provider>(
    provider: P,
    protocol: ProtocolVersion,
    shutdown: &CancellationToken,
) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    // One provider service, for the negotiated protocol: protocol 5 clients get the adapter
    // over the same protocol 6 implementation.
    let mut builder = Server::builder();
    let router = match protocol {
        ProtocolVersion::V6 => builder.add_service(
            ProviderServer::new(provider)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        ),
        ProtocolVersion::V5 => builder.add_service(
            Provider5Server::new(crate::server5::Protocol5::new(provider))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        ),
    };
    router
        .add_service(GrpcControllerServer::new(controller::Controller::new(
            shutdown.clone(),
        )))
        .add_service(GrpcStdioServer::new(stdio::Stdio::new(shutdown.clone())))
        .add_service(health_service)
}

/// Prints the handshake line: the first and only thing this process writes to stdout, which
/// then points at /dev/null ([`close_stdout_pipe`]).
fn announce(
    protocol: ProtocolVersion,
    address: SocketAddr,
    server_cert_der: Option<Vec<u8>>,
) -> Result<(), ServeError> {
    let line = HandshakeLine {
        protocol,
        address,
        server_cert_der,
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .and_then(|()| close_stdout_pipe())
        .map_err(ServeError::Stdout)?;
    tracing::debug!(address = %address, protocol = protocol.number(), "plugin server listening");
    Ok(())
}

/// Points fd 1 at /dev/null once the handshake line is out, so Terraform's end of our stdout
/// pipe reads EOF now, while we run, and never again waits on it.
///
/// go-plugin 1.6.0 (Terraform up to 1.11 at least) scans that pipe in one goroutine and reaps
/// the process in another; when the process exits while the scan still waits, the reaper closes
/// the pipe under the scan, which logs "error encountered while scanning stdout: read |0: file
/// already closed" (hashicorp/go-plugin#298). Nothing is written to stdout after the line (logs
/// go to stderr), so this loses nothing. Called with the stdout lock held and flushed.
fn close_stdout_pipe() -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: dup2 only renumbers open descriptors: `null` is open for the whole call and fd 1
    // is replaced atomically; Rust's stdout handle holds no buffered bytes (just flushed).
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Serves until `shutdown` is cancelled, then stops gracefully, but never for longer than
/// [`SHUTDOWN_GRACE`]: a client holding a connection open must not cost a SIGKILL.
async fn run<I, IO, IE>(
    router: Router,
    incoming: I,
    shutdown: CancellationToken,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let serving = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::select! {
        result = serving => result?,
        () = async {
            shutdown.cancelled().await;
            let grace = if controller::shutdown_requested() { SHUTDOWN_GRACE_ASKED } else { SHUTDOWN_GRACE };
            tokio::time::sleep(grace).await;
        } => {
            tracing::debug!("connections still open after the shutdown grace period; exiting anyway");
        }
    }
    tracing::debug!("plugin server stopped");
    Ok(())
}

/// Plain TCP connections (TLS disabled by the user).
fn plaintext_incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    futures::stream::poll_fn(move |cx| match listener.poll_accept(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result.map(|(stream, _)| without_nagle(stream)))),
        Poll::Pending => Poll::Pending,
    })
}

/// Turns off Nagle's algorithm on an accepted connection. A gRPC reply goes out in several
/// small writes (headers, data, trailers); with Nagle on, the later ones wait for Terraform's
/// delayed ACK, about 40 ms per round trip. Go, on Terraform's side and in go-plugin servers,
/// sets `TCP_NODELAY` on every connection; tonic does it only for listeners it binds itself.
fn without_nagle(stream: TcpStream) -> TcpStream {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY; replies may be delayed");
    }
    stream
}

/// TLS connections: each TCP connection is handshaken in its own task, so one slow or rejected
/// client never blocks the others; only successful handshakes reach the gRPC server.
fn tls_incoming(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a connection failed");
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let tcp = without_nagle(tcp);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => tracing::warn!(
                        peer = %peer,
                        error = %err,
                        "TLS handshake failed: only the client holding the certificate from PLUGIN_CLIENT_CERT may connect"
                    ),
                    Err(_) => tracing::warn!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// SIGTERM stops the server gracefully. SIGINT is logged and otherwise ignored, as go-plugin
/// servers do: on Ctrl-C the terminal signals Terraform and its plugins alike, and Terraform then
/// cancels in-flight work through StopProvider, which needs this process alive.
fn spawn_signal_handlers(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will end the process abruptly");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::debug!("SIGTERM received: stopping the plugin server");
                    shutdown.cancel();
                    return;
                }
                _ = int.recv() => tracing::debug!("SIGINT ignored: Terraform stops providers through StopProvider"),
            }
        }
    });
}

/// Stops the server when Terraform is gone without calling Shutdown (it crashed or was killed):
/// an orphaned provider would otherwise live on, holding Terraform's inherited pipes open.
/// Polls the parent pid, because `PR_SET_PDEATHSIG` fires on the death of the forking *thread*,
/// which in a Go parent is not the process.
fn spawn_parent_watch(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if std::os::unix::process::parent_id() != parent {
                        tracing::warn!(parent, "Terraform (the parent process) is gone: stopping the plugin server");
                        shutdown.cancel();
                        return;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    use super::*;

    #[tokio::test]
    async fn plaintext_connections_are_served_without_nagle() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = Box::pin(plaintext_incoming(listener));
        let _client = TcpStream::connect(address).await.unwrap();
        let served = incoming.next().await.unwrap().unwrap();
        assert!(served.nodelay().unwrap(), "TCP_NODELAY must be set");
    }

    #[tokio::test]
    async fn tls_connections_are_served_without_nagle() {
        let client = tls::tests::p521_cert();
        let identity = tls::ServerIdentity::generate().unwrap();
        let config = tls::server_config(&identity, client.cert.der().clone()).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let mut incoming = Box::pin(tls_incoming(listener, config.into(), shutdown.clone()));
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(address).await.unwrap();
            let connector = tls_connector(identity.cert_der.to_vec(), &client);
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        });
        let served = incoming.next().await.unwrap().unwrap();
        assert!(
            served.get_ref().0.nodelay().unwrap(),
            "TCP_NODELAY must be set"
        );
        drop(connecting.await.unwrap());
        shutdown.cancel();
    }

    fn tls_connector(
        server_cert: Vec<u8>,
        client: &rcgen::CertifiedKey<rcgen::KeyPair>,
    ) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(server_cert)).unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client.signing_key.serialize_der()));
        let mut config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![client.cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}
