//! The agent's error: a stable code, a message that says what to do, the DesiredResource field
//! it concerns, and the HTTP status class. At the API edge it becomes [`AgentError`].

use blockstor_proto::wire::AgentError;
pub use blockstor_proto::ErrorCode;

use crate::runner::RunError;

/// How an error maps to HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: the request is malformed or refers to something this node does not have.
    Invalid,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: nothing of this resource exists here.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: collides with what exists (minor/port in use, foreign data, changed stack).
    Conflict,
    /// 422: the request is well-formed but the system refuses it (wrong passphrase, missing
    /// kernel feature).
    Unprocessable,
    /// 413: the request body is larger than `http.max_body_bytes`.
    TooLarge,
    /// 500: a tool failed or the agent itself broke.
    Internal,
}

/// An error with a stable code. Never carries a secret: messages are built from argv (which holds
/// none) and tool stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub kind: Kind,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

/// Shorthand for agent results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the DesiredResource field this error concerns.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(Kind::Invalid, code, message).field(field)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Kind::Internal, ErrorCode::Internal, message)
    }

    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self.kind {
            Kind::Invalid => 400,
            Kind::Unauthorized => 401,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::TooLarge => 413,
            Kind::Conflict => 409,
            Kind::Unprocessable => 422,
            Kind::Internal => 500,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> AgentError {
        AgentError {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        let code = match e {
            RunError::NotInstalled { .. } => ErrorCode::ToolMissing,
            RunError::Timeout { .. } => ErrorCode::ToolTimeout,
            RunError::Spawn { .. } | RunError::Failed { .. } => ErrorCode::ToolFailed,
        };
        Error::new(Kind::Internal, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::new(Kind::Internal, ErrorCode::StoreFailed, e.to_string())
    }
}
