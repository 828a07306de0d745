//! The [`Resource`] implementation: which module answers each protocol call. The plan
//! includes the preview of the agents' steps once the provider is configured.

use super::{apply, plan, preview, read, schema, validate};
use crate::resources::diag::Diagnostics;
use crate::resources::resource::{
    Applied, ApplyRequest, Cx, Imported, PlanRequest, Planned, Resource,
};
use crate::schema::Schema;
use crate::values::Value;

/// The Terraform type name.
pub const TYPE_NAME: &str = "blockstor_resource_definition";

/// `blockstor_resource_definition`.
pub struct ResourceDefinition {
    schema: Schema,
}

impl ResourceDefinition {
    pub fn new() -> Self {
        ResourceDefinition {
            schema: schema::schema(),
        }
    }
}

impl Default for ResourceDefinition {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Resource for ResourceDefinition {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        validate::validate(config)
    }

    async fn plan(&self, cx: &Cx, r: PlanRequest<'_>) -> Planned {
        let names = cx.configured_names();
        let mut p = plan::plan(
            r.prior,
            r.proposed,
            r.config,
            r.prior_private,
            names.as_deref(),
        );
        if names.is_some() && !p.diags.has_errors() {
            preview::fill(
                &cx.cluster,
                r.prior,
                &mut p.state,
                r.config,
                &p.secrets,
                &p.private,
                &mut p.diags,
            )
            .await;
        }
        Planned {
            state: p.state,
            requires_replace: p.requires_replace,
            private: p.private,
            diags: p.diags,
        }
    }

    async fn apply(&self, cx: &Cx, r: ApplyRequest<'_>) -> Applied {
        let a = apply::apply(&cx.cluster, r.prior, r.planned, r.config, r.planned_private).await;
        Applied {
            state: a.state,
            private: a.private,
            diags: a.diags,
        }
    }

    async fn read(&self, cx: &Cx, state: &Value, _private: &[u8]) -> (Value, Diagnostics) {
        read::read(&cx.cluster, state).await
    }

    async fn import(&self, cx: &Cx, id: &str) -> Imported {
        let (state, private, diags) = read::import(&cx.cluster, id).await;
        Imported {
            state,
            private,
            diags,
        }
    }
}
