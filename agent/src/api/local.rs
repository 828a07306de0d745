//! The service's local socket (docs/design.md §4): one node can run the agent as its service
//! (`serve`) and also be reached over SSH (`stdio`) with the same config. The service holds the
//! store for its lifetime, so `stdio` does not wait for it: it hands its request line to the
//! service over a Unix socket and relays the answer line. The socket is the stdio protocol
//! itself (one line in, one line out), mode 0600, and only peers with the service's own uid
//! are answered; no token, as over SSH the login already authenticated the caller.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::Engine;

/// Binds `path` (replacing a socket a killed service left behind) with mode 0600, and answers
/// stdio request lines on it until the process ends.
pub fn listen(engine: Engine, path: &Path) -> io::Result<()> {
    let listener = bind_private(path)?;
    tracing::info!(socket = %path.display(), "serving stdio requests on the local socket");
    tokio::spawn(accept_loop(engine, listener));
    Ok(())
}

/// Binds under a temporary name, narrows it to 0600, then renames it into place: the socket
/// is never reachable with wider modes, and a stale socket is replaced atomically.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let listener = UnixListener::bind(&tmp).map_err(with_path)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(with_path)?;
    std::fs::rename(&tmp, path).map_err(with_path)?;
    Ok(listener)
}

async fn accept_loop(engine: Engine, listener: UnixListener) {
    // SAFETY: geteuid has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept on the local socket");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == own_uid => {}
            other => {
                tracing::warn!(peer = ?other.map(|c| c.uid()).ok(),
                    "local socket: refused a peer that is not this agent's user");
                continue;
            }
        }
        let engine = engine.clone();
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            if let Err(err) = super::stdio::serve_one(&engine, read, write).await {
                tracing::debug!(error = %err, "local socket request ended early");
            }
        });
    }
}

/// Connects to the service's socket; `None` when no service answers there (no socket file, or
/// one a stopped service left).
pub async fn connect(path: &Path) -> Option<UnixStream> {
    UnixStream::connect(path).await.ok()
}

/// Sends the one request line from `input` to the service and copies its answer to `output`.
pub async fn relay<R, W>(service: UnixStream, input: R, mut output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut from_service, mut to_service) = service.into_split();
    let mut line = Vec::new();
    tokio::io::BufReader::new(input.take(super::stdio::MAX_LINE))
        .read_until(b'\n', &mut line)
        .await?;
    to_service.write_all(&line).await?;
    // The service reads to the newline or to the end: close our half so a line without a
    // newline still ends.
    to_service.shutdown().await?;
    tokio::io::copy(&mut from_service, &mut output).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn a_request_line_is_relayed_to_the_service_and_its_answer_back() {
        let (dir, engine, _runner) = super::super::tests::engine();
        let socket = dir.path().join("agent.sock");
        // A stale socket file from a killed service is replaced.
        std::fs::write(&socket, "stale").unwrap();
        super::listen(engine, &socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let service = super::connect(&socket).await.expect("the service answers");
        let mut out = Vec::new();
        super::relay(service, &b"{\"op\":\"node\"}\n"[..], &mut out)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["name"], "n1", "{v}");
    }

    #[tokio::test]
    async fn no_service_means_no_connection() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::connect(&dir.path().join("agent.sock"))
            .await
            .is_none());
    }
}
