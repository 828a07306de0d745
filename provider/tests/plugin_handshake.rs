//! The provider binary as Terraform sees it: the magic cookie, the handshake line, AutoMTLS with
//! a Terraform-like client certificate (self-signed ECDSA P-521 CA), GetProviderSchema, and a
//! prompt exit after Shutdown. Runs the real binary; needs no terraform.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use blockstor_proto::goplugin::grpc_controller_client::GrpcControllerClient;
use blockstor_proto::goplugin::grpc_stdio_client::GrpcStdioClient;
use blockstor_proto::goplugin::Empty;
use blockstor_proto::tfplugin6::get_provider_schema;
use blockstor_proto::tfplugin6::provider_client::ProviderClient;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BINARY: &str = env!("CARGO_BIN_EXE_terraform-provider-blockstor");
const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A client certificate shaped like Terraform's: self-signed ECDSA P-521, CA:TRUE, SAN localhost.
fn terraform_like_client_cert() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "HashiCorp");
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.self_signed(&key).unwrap();
    rcgen::CertifiedKey {
        cert,
        signing_key: key,
    }
}

/// The plugin process plus its parsed handshake line.
struct Plugin {
    child: Child,
    address: SocketAddr,
    server_cert: Option<Vec<u8>>,
    stderr: mpsc::Receiver<String>,
    /// stderr line by line, as the plugin writes it.
    stderr_lines: mpsc::Receiver<String>,
    /// Receives once our end of the plugin's stdout pipe reads EOF.
    stdout_eof: mpsc::Receiver<()>,
}

impl Plugin {
    fn start(client_cert_pem: Option<&str>) -> Plugin {
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
            .env("TF_LOG_PROVIDER", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pem) = client_cert_pem {
            command.env("PLUGIN_CLIENT_CERT", pem);
        }
        let mut child = command.spawn().expect("start the provider binary");

        let stdout = child.stdout.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel();
        let (eof_tx, eof_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = line_tx.send(line);
            // Anything after the handshake line is a bug: report it through the test below.
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            let _ = eof_tx.send(());
            assert!(rest.is_empty(), "the plugin wrote more to stdout: {rest:?}");
        });
        let stderr = child.stderr.take().unwrap();
        let (err_tx, err_rx) = mpsc::channel();
        let (err_line_tx, err_line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Each line as it comes (to wait for one), and the whole text at EOF.
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                let _ = err_line_tx.send(line);
            }
            let _ = err_tx.send(text);
        });

        let line = line_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the handshake line within 10 s");
        assert!(
            line.ends_with('\n'),
            "handshake line must be newline-terminated: {line:?}"
        );
        let fields: Vec<&str> = line.trim_end().split('|').collect();
        assert_eq!(fields.len(), 6, "{line:?}");
        assert_eq!(&fields[..3], ["1", "6", "tcp"], "{line:?}");
        assert_eq!(fields[4], "grpc", "{line:?}");
        let address: SocketAddr = fields[3].parse().unwrap();
        assert!(address.ip().is_loopback(), "{line:?}");
        let server_cert = if fields[5].is_empty() {
            None
        } else {
            assert!(
                !fields[5].contains('='),
                "cert must be base64 without padding: {line:?}"
            );
            Some(
                STANDARD_NO_PAD
                    .decode(fields[5])
                    .expect("standard base64 alphabet"),
            )
        };
        Plugin {
            child,
            address,
            server_cert,
            stderr: err_rx,
            stderr_lines: err_line_rx,
            stdout_eof: eof_rx,
        }
    }

    /// Waits for the process to exit, at most `limit`; returns how long it took.
    fn wait_exit(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "plugin exit status {status}");
                return start.elapsed();
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("plugin still running {limit:?} after Shutdown");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect_tls(
    address: SocketAddr,
    server_cert: &[u8],
    client: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_cert.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client.signing_key.serialize_der()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(address).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

async fn schema_then_shutdown(plugin: &mut Plugin, channel: Channel) {
    // Terraform opens the stdio stream first and keeps it open: Shutdown must still end the
    // process promptly, and the stream must end cleanly rather than with an error.
    let mut stdio = GrpcStdioClient::new(channel.clone())
        .stream_stdio(())
        .await
        .expect("StreamStdio")
        .into_inner();

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .expect("grpc.health.v1.Health/Check")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let schema = ProviderClient::new(channel.clone())
        .get_provider_schema(get_provider_schema::Request {})
        .await
        .expect("GetProviderSchema")
        .into_inner();
    assert!(
        schema.provider.is_some(),
        "the provider schema must be present"
    );

    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .expect("Shutdown must be answered before the server stops");
    let ended = tokio::time::timeout(Duration::from_secs(2), stdio.message())
        .await
        .expect("the stdio stream must end on Shutdown");
    assert!(
        matches!(ended, Ok(None)),
        "stdio stream ended with {ended:?}"
    );
    let took = plugin.wait_exit(Duration::from_secs(2));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
}

#[test]
fn without_the_magic_cookie_it_prints_one_line_and_fails() {
    let output = Command::new(BINARY)
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing may reach stdout");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("Terraform plugin"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_session_with_a_p521_client_serves_schema_and_exits_after_shutdown() {
    let client = terraform_like_client_cert();
    let mut plugin = Plugin::start(Some(&client.cert.pem()));
    let server_cert = plugin
        .server_cert
        .clone()
        .expect("a server cert when TLS is on");
    let channel = connect_tls(plugin.address, &server_cert, &client)
        .await
        .expect("mTLS connection with the pinned client certificate");
    schema_then_shutdown(&mut plugin, channel).await;

    let stderr = plugin.stderr.recv_timeout(Duration::from_secs(2)).unwrap();
    for line in stderr.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
        assert!(
            value["@level"].is_string() && value["@message"].is_string(),
            "{line}"
        );
        assert_eq!(value["@module"], "provider.blockstor", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_pinned_certificate_is_refused() {
    let pinned = terraform_like_client_cert();
    let intruder = terraform_like_client_cert();
    let mut plugin = Plugin::start(Some(&pinned.cert.pem()));
    let server_cert = plugin.server_cert.clone().unwrap();
    let refused = async {
        let channel = connect_tls(plugin.address, &server_cert, &intruder).await?;
        ProviderClient::new(channel)
            .get_provider_schema(get_provider_schema::Request {})
            .await
            .map_err(|status| status.to_string())
            .map(|_| ())
            .map_err(Into::into)
    };
    let result: Result<(), Box<dyn std::error::Error>> = refused.await;
    assert!(
        result.is_err(),
        "a foreign client certificate must not get an answer"
    );
    // The client may give up before the server has logged its side: wait for the line
    // (bounded), then stop the plugin.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut logged = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match plugin.stderr_lines.recv_timeout(left) {
            Ok(line) if line.contains("TLS handshake failed") => break,
            Ok(line) => logged.push(line),
            Err(_) => panic!(
                "the server must log the refused handshake; it logged: {}",
                logged.join("\n")
            ),
        }
    }
    plugin.child.kill().unwrap();
    plugin.child.wait().unwrap();
    let stderr = plugin.stderr.recv_timeout(Duration::from_secs(2)).unwrap();
    assert!(
        stderr.contains("TLS handshake failed"),
        "the server must log the refused handshake: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_disabled_it_serves_plaintext_and_prints_an_empty_cert() {
    let mut plugin = Plugin::start(None);
    assert_eq!(plugin.server_cert, None);
    let channel = Endpoint::try_from(format!("http://{}", plugin.address))
        .unwrap()
        .connect()
        .await
        .expect("plaintext connection");
    schema_then_shutdown(&mut plugin, channel).await;
}

/// go-plugin 1.6.0 (Terraform ≤ 1.11) scans the plugin's stdout in one goroutine and reaps the
/// process in another; when the process exits while the scan still waits, the reaper closes the
/// pipe under it: "error encountered while scanning stdout: read |0: file already closed"
/// (hashicorp/go-plugin#298). The scan must end at EOF right after the handshake line, while the
/// plugin still runs.
#[test]
fn stdout_reaches_eof_after_the_handshake_while_the_plugin_runs() {
    let mut plugin = Plugin::start(None);
    plugin
        .stdout_eof
        .recv_timeout(Duration::from_secs(2))
        .expect("stdout at EOF within 2 s of the handshake line");
    assert!(
        plugin.child.try_wait().unwrap().is_none(),
        "the plugin still runs"
    );
    let fd1 = std::fs::read_link(format!("/proc/{}/fd/1", plugin.child.id())).unwrap();
    assert_eq!(fd1, std::path::Path::new("/dev/null"));
}

#[test]
fn an_orphaned_plugin_stops_when_terraform_is_gone() {
    // The shell starts the plugin in the background and exits a second later without any
    // Shutdown, as a crashed Terraform would: the plugin is re-parented and must stop by itself.
    let out = std::process::Command::new("sh")
        .args(["-c", "\"$0\" >/dev/null 2>&1 & echo $!; sleep 1", BINARY])
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .env_remove("PLUGIN_CLIENT_CERT")
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_running(&proc_dir) {
        assert!(
            std::time::Instant::now() < deadline,
            "orphaned plugin {pid} still running after 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A zombie (state Z) has exited; only its parent has not reaped it yet.
fn is_running(proc_dir: &std::path::Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}
