//! The agent over HTTP(S): reqwest with rustls, a bearer token on every request.

use async_trait::async_trait;
use blockstor_proto::contract::{ops, Method as OpMethod, Op, Operation};
use blockstor_proto::wire::{
    AgentError, DesiredResource, NodeInfo, ObservedResource, PlannedSteps,
};
use blockstor_proto::{ErrorCode, NodeName, ResourceName};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

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
        self.call(O::OP, rd, body).await
    }

    /// Sends one request with the method and path the contract gives `op`, and decodes the
    /// agent's JSON answer; `Ok(None)` on 404 `not_found`.
    async fn call<T: DeserializeOwned>(
        &self,
        op: Op,
        rd: Option<&ResourceName>,
        body: Option<&DesiredResource>,
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

    async fn delete(&self, name: &ResourceName) -> Result<(), TransportError> {
        // Any answer will do (older agents, proxies answering 204): only failure matters.
        self.call::<serde_json::Value>(Op::Delete, Some(name), None)
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<ObservedResource>, TransportError> {
        self.typed::<ops::List>(None, None)
            .await?
            .ok_or_else(|| self.missing(&Op::List.path(None)))
    }
}
