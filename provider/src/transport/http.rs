//! The agent over HTTP(S): reqwest with rustls, a bearer token on every request.

use async_trait::async_trait;
use blockstor_proto::contract::{ops, Method as OpMethod, Op, Operation};
use blockstor_proto::wire::{
    AgentError, DeleteOptions, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
};
use blockstor_proto::{ErrorCode, NodeName, ResourceName};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{AgentClient, TransportError};
use super::config::HttpConfig;

/// Environment variable read when the node's `http { token }` is not set.
pub const TOKEN_ENV: &str = "BLOCKSTOR_TOKEN";

pub struct HttpAgentClient {
    node: NodeName,
    base: String,
    token: Option<SecretString>,
    client: reqwest::Client,
}

impl HttpAgentClient {
    pub fn new(node: NodeName, cfg: &HttpConfig) -> Result<Self, TransportError> {
        let unreachable = |message: String| TransportError::Unreachable {
            node: node.clone(),
            message,
        };
        let base = cfg.endpoint.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(unreachable(format!(
                "http.endpoint {base:?} must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder().timeout(cfg.timeout).no_proxy();
        if let Some(pem) = &cfg.ca_cert_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                unreachable(format!("http.ca_cert_pem is not a PEM certificate: {e}"))
            })?;
            builder = builder.add_root_certificate(ca);
        }
        let client = builder
            .build()
            .map_err(|e| unreachable(format!("cannot build the HTTP client: {e}")))?;
        let token = cfg.token.clone().or_else(|| {
            std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
                .map(SecretString::from)
        });
        Ok(Self {
            node,
            base,
            token,
            client,
        })
    }

    /// One operation of the contract, its answer decoded as the contract's output type.
    async fn typed<O: Operation>(
        &self,
        rd: Option<&ResourceName>,
        body: Option<&DesiredResource>,
    ) -> Result<Option<O::Response>, TransportError> {
        self.call::<_, DesiredResource>(O::OP, rd, body).await
    }

    /// Sends one request with the method and path the contract gives `op`, and decodes the
    /// agent's JSON answer; `Ok(None)` on 404 `not_found`.
    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        op: Op,
        rd: Option<&ResourceName>,
        body: Option<&B>,
    ) -> Result<Option<T>, TransportError> {
        let method = match op.spec().method {
            OpMethod::Get => Method::GET,
            OpMethod::Put => Method::PUT,
            OpMethod::Post => Method::POST,
            OpMethod::Delete => Method::DELETE,
        };
        let url = format!("{}{}", self.base, op.path(rd));
        let mut req = self.client.request(method, &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| {
            self.unreachable(format!(
                "cannot reach the agent at {}: {}",
                self.base,
                error_chain(&e)
            ))
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable(format!("reading the agent's answer failed: {e}")))?;
        if status.is_success() {
            if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                return serde_json::from_slice(b"null")
                    .map(Some)
                    .map_err(|e| self.unreachable(format!("the agent sent an empty answer: {e}")));
            }
            return serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                self.unreachable(format!(
                    "the agent's answer is not what this provider expects: {e}"
                ))
            });
        }
        match serde_json::from_slice::<AgentError>(&bytes) {
            Ok(error) if status == StatusCode::NOT_FOUND && error.is(ErrorCode::NotFound) => Ok(None),
            Ok(error) => Err(TransportError::Agent { node: self.node.clone(), error }),
            Err(_) if status == StatusCode::UNAUTHORIZED => Err(self.unreachable(format!(
                "the agent at {} refused the token (401): set http.token or {TOKEN_ENV} to the agent's token",
                self.base
            ))),
            Err(_) => Err(self.unreachable(format!(
                "the agent at {} answered {status} without an agent error body",
                self.base
            ))),
        }
    }

    fn unreachable(&self, message: String) -> TransportError {
        TransportError::Unreachable {
            node: self.node.clone(),
            message,
        }
    }

    fn missing(&self, what: &str) -> TransportError {
        self.unreachable(format!(
            "the agent at {} has no route for {what} (404)",
            self.base
        ))
    }
}

/// reqwest's top-level error hides the cause ("error sending request"); show the whole chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl AgentClient for HttpAgentClient {
    fn node(&self) -> &NodeName {
        &self.node
    }

    async fn node_info(&self) -> Result<NodeInfo, TransportError> {
        self.typed::<ops::Node>(None, None)
            .await?
            .ok_or_else(|| self.missing(&Op::Node.path(None)))
    }

    async fn apply(&self, desired: &DesiredResource) -> Result<ObservedResource, TransportError> {
        self.typed::<ops::Apply>(Some(&desired.name), Some(desired))
            .await?
            .ok_or_else(|| self.missing(&Op::Apply.path(Some(&desired.name))))
    }

    async fn plan(&self, desired: &DesiredResource) -> Result<PlannedSteps, TransportError> {
        self.typed::<ops::Plan>(Some(&desired.name), Some(desired))
            .await?
            .ok_or_else(|| self.missing(&Op::Plan.path(Some(&desired.name))))
    }

    async fn get(&self, name: &ResourceName) -> Result<Option<ObservedResource>, TransportError> {
        self.typed::<ops::Get>(Some(name), None).await
    }

    async fn delete(
        &self,
        name: &ResourceName,
        options: &DeleteOptions,
    ) -> Result<(), TransportError> {
        // The defaults travel as no body at all, so the request is the one older agents know.
        let body = (!options.is_default()).then_some(options);
        // Any answer will do (older agents, proxies answering 204): only failure matters.
        self.call::<serde_json::Value, DeleteOptions>(Op::Delete, Some(name), body)
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
        self.typed::<ops::List>(None, None)
            .await?
            .ok_or_else(|| self.missing(&Op::List.path(None)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A stand-in agent on loopback that answers every request `{"name":"db","deleted":true}`
    /// and hands back each raw request it read.
    async fn recording_agent() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as many body bytes as Content-Length says.
                loop {
                    let n = tcp.read(&mut buf).await.unwrap();
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if raw.len() >= end + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                tx.send(String::from_utf8(raw).unwrap()).unwrap();
                let body = r#"{"name":"db","deleted":true}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                tcp.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (base, rx)
    }

    #[tokio::test]
    async fn delete_sends_its_options_as_a_body_and_the_defaults_as_none() {
        let (base, mut requests) = recording_agent().await;
        let client = HttpAgentClient::new(
            "n1".parse().unwrap(),
            &HttpConfig {
                endpoint: base,
                token: Some(SecretString::from("t".to_owned())),
                ca_cert_pem: None,
                timeout: Duration::from_secs(10),
            },
        )
        .unwrap();
        let rd: ResourceName = "db".parse().unwrap();
        client.delete(&rd, &DeleteOptions::default()).await.unwrap();
        let plain = requests.recv().await.unwrap();
        assert!(plain.starts_with("DELETE /v1/resources/db "), "{plain}");
        assert!(
            plain.ends_with("\r\n\r\n"),
            "no body for the defaults: {plain}"
        );

        let options = DeleteOptions {
            force: true,
            remaining: vec!["n2".parse().unwrap()],
            wait_seconds: Some(30),
        };
        client.delete(&rd, &options).await.unwrap();
        let with = requests.recv().await.unwrap();
        assert!(with.starts_with("DELETE /v1/resources/db "), "{with}");
        assert!(
            with.ends_with(r#"{"force":true,"remaining":["n2"],"wait_seconds":30}"#),
            "{with}"
        );
    }
}
