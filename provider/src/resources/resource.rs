//! The two traits every resource type and data source type implements, and what their calls
//! take and give. The server decodes a request against [`Resource::schema`], calls one method,
//! and encodes the result; it knows no type by name (see [`super::registry`]).

use std::sync::Arc;

use blockstor_proto::NodeName;

use super::diag::{AttrPath, Diagnostics};
use crate::controller::Cluster;
use crate::schema::Schema;
use crate::values::Value;

/// What a call can reach: the agents of the provider configuration.
#[derive(Clone, Default)]
pub struct Cx {
    /// The configured nodes; empty until ConfigureProvider.
    pub cluster: Arc<Cluster>,
    /// Whether ConfigureProvider has run (an empty cluster is then a real answer).
    pub configured: bool,
}

impl Cx {
    /// The configured node names, or `None` before ConfigureProvider.
    pub fn configured_names(&self) -> Option<Vec<NodeName>> {
        self.configured.then(|| self.cluster.names())
    }
}

/// PlanResourceChange, decoded. `proposed` is null for a destroy.
pub struct PlanRequest<'a> {
    pub prior: &'a Value,
    pub proposed: &'a Value,
    pub config: &'a Value,
    pub prior_private: &'a [u8],
}

/// The reply to PlanResourceChange.
#[derive(Debug, Default)]
pub struct Planned {
    pub state: Value,
    pub requires_replace: Vec<AttrPath>,
    pub private: Vec<u8>,
    pub diags: Diagnostics,
}

/// ApplyResourceChange, decoded. `planned` is null for a destroy.
pub struct ApplyRequest<'a> {
    pub prior: &'a Value,
    pub planned: &'a Value,
    pub config: &'a Value,
    pub planned_private: &'a [u8],
}

/// The reply to ApplyResourceChange.
#[derive(Debug, Default)]
pub struct Applied {
    pub state: Value,
    pub private: Vec<u8>,
    pub diags: Diagnostics,
}

/// The reply to ImportResourceState; a null `state` imports nothing.
#[derive(Debug, Default)]
pub struct Imported {
    pub state: Value,
    pub private: Vec<u8>,
    pub diags: Diagnostics,
}

/// A managed resource type: its schema and what it does on each protocol call. The server
/// nulls write-only attributes in every result and refuses them for old clients, so an
/// implementation does neither.
#[async_trait::async_trait]
pub trait Resource: Send + Sync {
    /// The Terraform type name, e.g. `blockstor_resource_group`.
    fn type_name(&self) -> &'static str;

    /// The schema every value of this type is decoded and encoded against.
    fn schema(&self) -> &Schema;

    /// Configuration checks, tolerant of unknown values. ValidateResourceConfig shows only
    /// the errors; plan runs the same checks with values known and shows the warnings.
    fn validate(&self, config: &Value) -> Diagnostics;

    /// Computes the planned state, what forces replacement, and the planned private state.
    async fn plan(&self, cx: &Cx, request: PlanRequest<'_>) -> Planned;

    /// Makes the planned state real (or deletes the object when `planned` is null).
    async fn apply(&self, cx: &Cx, request: ApplyRequest<'_>) -> Applied;

    /// Refreshes a non-null stored state; by default the state is kept as it is.
    async fn read(&self, _cx: &Cx, state: &Value, _private: &[u8]) -> (Value, Diagnostics) {
        (state.clone(), Diagnostics::default())
    }

    /// Builds the state of an existing object from the id given to `terraform import`.
    async fn import(&self, cx: &Cx, id: &str) -> Imported;
}

/// A data source type: its schema and its read.
#[async_trait::async_trait]
pub trait DataSource: Send + Sync {
    /// The Terraform type name, e.g. `blockstor_nodes`.
    fn type_name(&self) -> &'static str;

    /// The schema the configuration is decoded and the state encoded against.
    fn schema(&self) -> &Schema;

    /// Reads the data source; on errors the state is not sent.
    async fn read(&self, cx: &Cx, config: &Value) -> (Value, Diagnostics);
}
