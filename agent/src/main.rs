//! `blockstor-agent`: `serve --config FILE` (HTTP), `stdio --config FILE` (one request, for
//! SSH), `check` (tools and kernel features present, and what to install).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use blockstor_agent::config::Config;
use blockstor_agent::engine::Engine;
use blockstor_agent::host::RealHost;
use blockstor_agent::runner::SystemRunner;
use blockstor_agent::store::{Store, StoreError};
use blockstor_agent::{api, check};
use clap::{Parser, Subcommand};

/// How long a `stdio` request waits for another `stdio` process to release the store (when
/// the service runs, requests go to it and do not wait).
const STDIO_STORE_WAIT: Duration = Duration::from_secs(30 * 60);

#[derive(Parser)]
#[command(
    name = "blockstor-agent",
    version,
    about = "blockstor node agent: builds STORAGE, LUKS and DRBD layers on this node",
    long_about = "blockstor node agent: builds STORAGE, LUKS and DRBD layers on this node for \
                  the blockstor Terraform provider. Runs as root.",
    after_help = "Config file (TOML): node_name, state_dir, [http] listen/token_file/tls_cert/\
                  tls_key/max_connections/header_read_timeout_secs/\
                  tls_handshake_timeout_secs/max_body_bytes, [[pool]] name/backend (loopfile, lvm, lvm-thin, zfs). A commented \
                  example: agent/packaging/agent.toml.example.\n\
                  Environment: BLOCKSTOR_AGENT_TOKEN (token when http.token_file is unset), \
                  BLOCKSTOR_LOG (log filter, default info; logs go to stderr)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the agent API over HTTP(S) (the provider's `http {}` transport).
    ///
    /// Listens on http.listen (127.0.0.1:3370 by default); a non-loopback address needs
    /// http.tls_cert and http.tls_key. Every request needs the bearer token from
    /// http.token_file (or BLOCKSTOR_AGENT_TOKEN).
    Serve {
        /// Path of the agent's TOML config, e.g. /etc/blockstor/agent.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Answer one JSON request line from stdin on stdout (the provider's `ssh {}` transport).
    ///
    /// The provider runs this over SSH as its agent_command; no port opens. When the agent
    /// service (`serve`) runs with the same config, the request goes to it over its local
    /// socket (service_socket); otherwise concurrent invocations take turns on the store.
    Stdio {
        /// Path of the agent's TOML config, e.g. /etc/blockstor/agent.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Report the tools and kernel features present, and the Debian package for each missing one.
    ///
    /// Checks cryptsetup, drbdadm, lvm, zfs, loop devices, device-mapper
    /// (dm-crypt) and the DRBD kernel module. Needs no config.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries the stdio answer.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOCKSTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blockstor-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Check => {
            let items = check::probe(&SystemRunner, &RealHost).await;
            print!("{}", check::render(&items));
            Ok(())
        }
        Cmd::Serve { config } => {
            let config = Config::load(&config)?;
            let token = config.token()?;
            let listen = config.http.listen;
            let tls = config
                .http
                .tls_cert
                .clone()
                .zip(config.http.tls_key.clone());
            let limits = config.http.limits();
            let socket = config.service_socket();
            let store = Store::open(&config.state_dir)?;
            let engine = engine(config, store)?;
            // `stdio` on this node hands its requests here instead of waiting for the store.
            api::local::listen(engine.clone(), &socket)?;
            let served = api::http::serve(engine, token, listen, tls, limits).await;
            let _ = std::fs::remove_file(&socket);
            served?;
            Ok(())
        }
        Cmd::Stdio { config } => {
            let config = Config::load(&config)?;
            let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
            match reach(&config).await? {
                Reach::Service(service) => api::local::relay(service, stdin, stdout).await?,
                Reach::Store(store) => {
                    let engine = engine(config, store)?;
                    api::stdio::serve_one(&engine, stdin, stdout).await?;
                }
            }
            Ok(())
        }
    }
}

/// Where a `stdio` request is answered.
enum Reach {
    /// The agent service on this node, through its local socket.
    Service(tokio::net::UnixStream),
    /// This process, with the store to itself.
    Store(Store),
}

/// The service if one answers on the local socket, else the store. While another process
/// holds the store and no service answers (another `stdio` request in flight), waits for
/// either, at most [`STDIO_STORE_WAIT`], saying on stderr what it waits for.
async fn reach(config: &Config) -> Result<Reach, Box<dyn std::error::Error>> {
    let socket = config.service_socket();
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        if let Some(service) = api::local::connect(&socket).await {
            return Ok(Reach::Service(service));
        }
        match Store::open(&config.state_dir) {
            Ok(store) => return Ok(Reach::Store(store)),
            Err(StoreError::Db(e)) if matches!(*e, redb::Error::DatabaseAlreadyOpen) => {
                if start.elapsed() >= STDIO_STORE_WAIT {
                    return Err(format!(
                        "the store in {} stayed held by another blockstor-agent process for {} s \
                         and no agent service answered on {}: a long request over SSH may still \
                         run, or a service runs with another service_socket",
                        config.state_dir.display(),
                        STDIO_STORE_WAIT.as_secs(),
                        socket.display()
                    )
                    .into());
                }
                if !said {
                    tracing::warn!(store = %config.state_dir.display(), socket = %socket.display(),
                        wait_secs = STDIO_STORE_WAIT.as_secs(),
                        "waiting for the store, held by another blockstor-agent process \
                         (no agent service answers on the socket)");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reports steps a previous run left unfinished, and builds the engine on `store`.
fn engine(config: Config, store: Store) -> Result<Engine, Box<dyn std::error::Error>> {
    for (rd, entry) in store.reconcile()? {
        tracing::warn!(%rd, layer = %entry.layer, action = %entry.action,
            "step interrupted by a restart; the next apply re-observes and converges");
    }
    Ok(Engine::new(
        config,
        Arc::new(SystemRunner),
        Arc::new(RealHost),
        store,
    ))
}
