//! HTTP(S) front end: axum routes of docs/design.md §4, a bearer token on every route (compared in
//! constant time), errors as `{code,message,field}` with their HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use blockstor_proto::contract::{Input, Method, Spec, OPERATIONS};
use blockstor_proto::wire::{DeleteOptions, StdioRequest};
use blockstor_proto::ResourceName;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tower::ServiceExt as _;

use super::connections::{Admitted, Connections};
use crate::config::HttpLimits;

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

/// The router with every route behind the bearer-token check, bodies up to `max_body_bytes`.
pub fn router(engine: Engine, token: SecretString, max_body_bytes: usize) -> Router {
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
        .method_not_allowed_fallback(|| async {
            Error::new(
                Kind::MethodNotAllowed,
                ErrorCode::InvalidRequest,
                "this path does not take this method; see docs/design.md §4 in the blockstor \
                 repository",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
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

/// The optional options body of a DELETE: absent or blank means the defaults.
pub(super) fn delete_options(body: &[u8]) -> Result<DeleteOptions, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeleteOptions::default());
    }
    super::parse_json(body, "DeleteOptions")
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
            move |State(s): State<AppState>,
                  Path(rd): Path<String>,
                  body: Result<Bytes, BytesRejection>| async move {
                let d = desired_for(&rd, &body.map_err(body_error)?)?;
                let req = StdioRequest::with_resource(op, d).expect("the contract says resource");
                answer(&s, req).await
            },
        ),
        Input::NameAndDeleteOptions => on(
            filter,
            move |State(s): State<AppState>, Path(rd): Path<String>, body: Bytes| async move {
                let (rd, options) = (rd_param(&rd)?, delete_options(&body)?);
                let req = StdioRequest::with_delete_options(op, rd, options)
                    .expect("the contract says name and delete options");
                answer(&s, req).await
            },
        ),
    }
}

/// A body that could not be read (too large, broken chunked encoding), in the JSON error shape.
fn body_error(rejection: BytesRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            Kind::TooLarge,
            ErrorCode::InvalidRequest,
            "the request body is larger than this agent accepts (http.max_body_bytes)",
        )
    } else {
        Error::new(
            Kind::Invalid,
            ErrorCode::InvalidRequest,
            format!("cannot read the request body: {}", rejection.body_text()),
        )
    }
}

async fn answer(s: &AppState, req: StdioRequest) -> Result<Response, Error> {
    Ok(Json(super::handle(&s.engine, req).await?).into_response())
}

/// Serves until SIGTERM/SIGINT: plain HTTP on loopback, HTTPS (rustls) when `tls` is set, with
/// `limits` against clients that hold connections open or send too much (docs/design.md §4).
pub async fn serve(
    engine: Engine,
    token: SecretString,
    listen: SocketAddr,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let app = router(engine, token, limits.max_body_bytes);
    let tls = match tls {
        Some((cert, key)) => {
            // With both aws-lc-rs and ring compiled in (feature unification across the
            // workspace), rustls refuses to guess: pick one explicitly. Err = already set.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let loaded = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            // HTTP/1.1 only: a client offered h2 must not pick it.
            let mut config = (*loaded.get_inner()).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, tls = tls.is_some(), "serving HTTP");
    let table = Connections::new(limits.max_connections);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    // Out of file descriptors or similar: the table frees some as
                    // connections close; try again shortly instead of spinning.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = table.admit() else {
            tracing::warn!(
                max_connections = limits.max_connections,
                "every connection is serving a request; refusing a new one (http.max_connections)"
            );
            continue;
        };
        without_nagle(&tcp);
        let conn = Connection {
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
        };
        tokio::spawn(conn.run(tcp, tls.clone(), admitted));
    }
    drop(listener);
    let _ = stop.send(true);
    table.close_idle();
    let start = std::time::Instant::now();
    while !table.is_empty() && start.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What one connection's task needs.
struct Connection {
    app: Router,
    limits: HttpLimits,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// Serves one connection until it closes, its handshake or headers time out, the table
    /// closes it to make room, or the agent stops.
    async fn run(
        self,
        tcp: tokio::net::TcpStream,
        tls: Option<tokio_rustls::TlsAcceptor>,
        admitted: Admitted,
    ) {
        let work = async {
            match tls {
                None => self.http1(tcp, &admitted).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        self.limits.tls_handshake_timeout,
                        acceptor.accept(tcp),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => self.http1(stream, &admitted).await,
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!(
                            "TLS handshake timed out (http.tls_handshake_timeout_secs)"
                        ),
                    }
                }
            }
        };
        // Dropping the connection closes its socket.
        tokio::select! {
            _ = admitted.evicted() => {}
            _ = work => {}
        }
    }

    async fn http1<Io>(&self, io: Io, admitted: &Admitted)
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let slot = admitted.slot();
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let in_flight = slot.request();
            let app = app.clone();
            async move {
                let Some(_in_flight) = in_flight else {
                    // Closed to make room a moment ago; the client retries elsewhere.
                    return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
                };
                app.oneshot(req.map(axum::body::Body::new)).await
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopped = self.stopped.clone();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(err) = done {
                    tracing::debug!(error = %err, "connection ended");
                }
            }
            () = async { let _ = stopped.wait_for(|s| *s).await; } => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Turns off Nagle's algorithm on an accepted connection, so a reply written in more than one
/// piece is not held back until the provider's delayed ACK (~40 ms).
fn without_nagle(tcp: &tokio::net::TcpStream) {
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
        tokio::spawn(super::serve(
            engine,
            "t".into(),
            listen,
            None,
            crate::config::HttpLimits::default(),
        ));
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

/// Answers hyper and axum would give as plain text (wrong method, body too large, broken
/// chunked body) come in the JSON error shape too, through the real server.
#[cfg(test)]
mod error_shape_tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    use crate::config::HttpLimits;

    async fn start(limits: HttpLimits) -> SocketAddr {
        let (dir, engine, _runner) = super::super::tests::engine();
        std::mem::forget(dir);
        let listen = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        tokio::spawn(super::serve(engine, "t".into(), listen, None, limits));
        listen
    }

    /// Sends `raw` (retrying while the server starts) and returns (status, JSON body).
    fn exchange(listen: SocketAddr, raw: String) -> (u16, serde_json::Value) {
        for _ in 0..200 {
            let Ok(mut stream) = TcpStream::connect(listen) else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            stream.write_all(raw.as_bytes()).unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
            let body = answer.split_once("\r\n\r\n").unwrap().1;
            // A chunked answer: the JSON is between the chunk size line and the final chunk.
            let json = body
                .lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_else(|| panic!("no JSON in {answer:?}"));
            return (status, serde_json::from_str(json).unwrap());
        }
        panic!("the agent never listened on {listen}");
    }

    fn put(body_headers: &str, body: &str) -> String {
        format!(
            "PUT /v1/resources/db HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
             Content-Type: application/json\r\nConnection: close\r\n{body_headers}\r\n{body}"
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn wrong_method_too_large_and_broken_chunked_bodies_answer_json() {
        let limits = HttpLimits {
            max_body_bytes: 64,
            ..HttpLimits::default()
        };
        let listen = start(limits).await;
        let checks = tokio::task::spawn_blocking(move || {
            let wrong_method = exchange(
                listen,
                "PATCH /v1/resources/db HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
                 Connection: close\r\n\r\n"
                    .into(),
            );
            let big = "x".repeat(65);
            let too_large = exchange(
                listen,
                put(&format!("Content-Length: {}\r\n", big.len()), &big),
            );
            let chunked = exchange(
                listen,
                put("Transfer-Encoding: chunked\r\n", "zz\r\nnot a chunk\r\n"),
            );
            (wrong_method, too_large, chunked)
        })
        .await
        .unwrap();
        let (wrong_method, too_large, chunked) = checks;
        assert_eq!(wrong_method.0, 405, "{wrong_method:?}");
        assert_eq!(
            wrong_method.1["code"], "invalid_request",
            "{wrong_method:?}"
        );
        assert_eq!(too_large.0, 413, "{too_large:?}");
        assert_eq!(too_large.1["code"], "invalid_request", "{too_large:?}");
        assert!(
            too_large.1["message"]
                .as_str()
                .unwrap()
                .contains("http.max_body_bytes"),
            "{too_large:?}"
        );
        assert_eq!(chunked.0, 400, "{chunked:?}");
        assert_eq!(chunked.1["code"], "invalid_request", "{chunked:?}");
    }
}
