//! HTTP(S) front end: axum routes of docs/design.md §4, a bearer token on every route (compared in
//! constant time), errors as `{code,message,field}` with their HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use blockstor_proto::contract::{Input, Method, Spec, OPERATIONS};
use blockstor_proto::wire::StdioRequest;
use blockstor_proto::ResourceName;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Kind};

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    token: Arc<SecretString>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        (status, Json(self.to_wire())).into_response()
    }
}

/// The router with every route behind the bearer-token check.
pub fn router(engine: Engine, token: SecretString) -> Router {
    let state = AppState {
        engine,
        token: Arc::new(token),
    };
    OPERATIONS
        .iter()
        .fold(Router::new(), |r, spec| r.route(spec.path, route(spec)))
        .fallback(|| async {
            Error::new(
                Kind::NotFound,
                ErrorCode::NotFound,
                "no such route; see docs/design.md §4 in the blockstor repository",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(s.token.expose_secret().as_bytes())) && !given.is_empty() {
        next.run(req).await
    } else {
        Error::new(
            Kind::Unauthorized,
            ErrorCode::Unauthorized,
            "missing or wrong bearer token: send `Authorization: Bearer <token>` with the agent's token",
        )
        .into_response()
    }
}

fn rd_param(raw: &str) -> Result<ResourceName, Error> {
    raw.parse().map_err(|e: blockstor_proto::NameError| {
        Error::invalid(ErrorCode::InvalidName, "name", e.to_string())
    })
}

/// Parses the body and checks it names the same resource as the path.
fn desired_for(rd: &str, body: &[u8]) -> Result<blockstor_proto::wire::DesiredResource, Error> {
    let rd = rd_param(rd)?;
    let d = super::parse_desired(body)?;
    if d.name != rd {
        return Err(Error::invalid(
            ErrorCode::NameMismatch,
            "name",
            format!(
                "the path names {rd} but the body names {}; they must be equal",
                d.name
            ),
        ));
    }
    Ok(d)
}

/// The route of one operation of the contract: its method, and the request built from the
/// path and body as its [`Input`] says, answered by the same handler as stdio.
fn route(spec: &Spec) -> MethodRouter<AppState> {
    let op = spec.op;
    let filter = match spec.method {
        Method::Get => MethodFilter::GET,
        Method::Put => MethodFilter::PUT,
        Method::Post => MethodFilter::POST,
        Method::Delete => MethodFilter::DELETE,
    };
    match spec.input {
        Input::None => on(filter, move |State(s): State<AppState>| async move {
            let req = StdioRequest::bare(op).expect("the contract says no input");
            answer(&s, req).await
        }),
        Input::Name => on(
            filter,
            move |State(s): State<AppState>, Path(rd): Path<String>| async move {
                let req = StdioRequest::named(op, rd_param(&rd)?).expect("the contract says name");
                answer(&s, req).await
            },
        ),
        Input::Resource => on(
            filter,
            move |State(s): State<AppState>, Path(rd): Path<String>, body: Bytes| async move {
                let d = desired_for(&rd, &body)?;
                let req = StdioRequest::with_resource(op, d).expect("the contract says resource");
                answer(&s, req).await
            },
        ),
    }
}

async fn answer(s: &AppState, req: StdioRequest) -> Result<Response, Error> {
    Ok(Json(super::handle(&s.engine, req).await?).into_response())
}

/// Serves until the process ends: plain HTTP on loopback, HTTPS (rustls) when `tls` is set.
pub async fn serve(
    engine: Engine,
    token: SecretString,
    listen: SocketAddr,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> std::io::Result<()> {
    let app = router(engine, token);
    match tls {
        Some((cert, key)) => {
            // With both aws-lc-rs and ring compiled in (feature unification across the
            // workspace), rustls refuses to guess: pick one explicitly. Err = already set.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            tracing::info!(%listen, "serving HTTPS");
            let handle = axum_server::Handle::new();
            let on_signal = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                on_signal.graceful_shutdown(Some(DRAIN));
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::bind(listen)
                .acceptor(acceptor)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
        None => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(listen = %listener.local_addr()?, "serving HTTP");
            let listener = listener.tap_io(without_nagle);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    }
}

/// Turns off Nagle's algorithm on an accepted connection, so a reply written in more than one
/// piece is not held back until the provider's delayed ACK (~40 ms). The HTTPS listener does the
/// same through `NoDelayAcceptor`.
fn without_nagle(tcp: &mut tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY; replies may be delayed");
    }
}

/// How long a stop waits for requests in flight: a step cut short is recovered by the journal,
/// but finishing it is kinder.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(600);

/// SIGTERM (systemd stop) or SIGINT: stop accepting, let requests in flight finish.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}

#[cfg(test)]
mod nagle_tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd as _, FromRawFd as _};

    #[tokio::test]
    async fn plain_http_connections_are_served_without_nagle() {
        let (_dir, engine, _runner) = super::super::tests::engine();
        let listen = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        tokio::spawn(super::serve(engine, "t".into(), listen, None));
        let client = tokio::task::spawn_blocking(move || connect_and_get(listen))
            .await
            .unwrap();
        let served = server_side_of(&client).expect("the agent's end of the connection");
        assert!(served.nodelay().unwrap(), "TCP_NODELAY must be set");
    }

    /// Connects (retrying while the server starts) and completes one request, so the server
    /// has accepted the connection.
    fn connect_and_get(listen: SocketAddr) -> TcpStream {
        for _ in 0..200 {
            if let Ok(mut stream) = TcpStream::connect(listen) {
                stream
                    .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut first = [0u8; 12];
                stream.read_exact(&mut first).unwrap();
                assert!(first.starts_with(b"HTTP/1.1"));
                return stream;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the agent never listened on {listen}");
    }

    /// This process's socket whose peer is `client`, found through `/proc/self/fd`.
    fn server_side_of(client: &TcpStream) -> Option<TcpStream> {
        let want = client.local_addr().unwrap();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if fd == client.as_raw_fd() {
                continue;
            }
            // SAFETY: `dup` gives this test its own descriptor; dropping the stream closes the
            // duplicate only, never the server's descriptor.
            let dup = unsafe { libc::dup(fd) };
            if dup < 0 {
                continue;
            }
            let stream = unsafe { TcpStream::from_raw_fd(dup) };
            if stream.peer_addr().ok() == Some(want) {
                return Some(stream);
            }
        }
        None
    }
}
