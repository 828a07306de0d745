//! The tfplugin6 `Provider` service: the protocol codec. It finds the resource or data source
//! by type name in the [`registry`], decodes each request against that type's schema, calls
//! its [`Resource`] or [`DataSource`] method, and encodes the reply as msgpack. It has no
//! branch per type: a new type is registered in `resources/registry.rs`.
//!
//! Terraform starts a fresh provider process per phase, so `new()` does no I/O; agents are
//! reached only from ConfigureProvider on.

use std::sync::{Arc, RwLock};

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use tonic::{Request, Response, Status};

use crate::controller::{Cluster, ClusterNode};
use crate::resources::diag::Diagnostics;
use crate::resources::registry::registry;
use crate::resources::resource::{ApplyRequest, Cx, DataSource, PlanRequest, Resource};
use crate::resources::{provider_config, write_only};
use crate::schema::Schema;
use crate::transport;
use crate::values::{json, msgpack, Value};

/// The blockstor provider.
#[derive(Default)]
pub struct BlockstorProvider {
    /// The configured nodes; `None` until ConfigureProvider.
    cluster: RwLock<Option<Arc<Cluster>>>,
}

impl BlockstorProvider {
    /// A provider with no configuration yet; does no I/O.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider already configured with `cluster` (tests).
    pub fn with_cluster(cluster: Cluster) -> Self {
        BlockstorProvider {
            cluster: RwLock::new(Some(Arc::new(cluster))),
        }
    }

    /// What a call can reach: the configured cluster (empty before ConfigureProvider).
    fn cx(&self) -> Cx {
        match self.cluster.read().expect("cluster lock").clone() {
            Some(cluster) => Cx {
                cluster,
                configured: true,
            },
            None => Cx::default(),
        }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

/// Decodes a DynamicValue (msgpack, else JSON; absent means null).
fn decode(dv: Option<&tf::DynamicValue>, schema: &Schema) -> Result<Value, Status> {
    let Some(dv) = dv else { return Ok(Value::Null) };
    let result = if !dv.msgpack.is_empty() {
        msgpack::decode(&dv.msgpack, schema.ty())
    } else if !dv.json.is_empty() {
        json::decode(&dv.json, schema.ty())
    } else {
        return Ok(Value::Null);
    };
    result.map_err(|e| Status::invalid_argument(format!("cannot decode value: {e}")))
}

/// Encodes a value as msgpack; always conforming to the schema.
fn encode(value: &Value, schema: &Schema) -> tf::DynamicValue {
    tf::DynamicValue {
        msgpack: msgpack::encode(value, schema.ty()),
        json: Vec::new(),
    }
}

/// Whether the client handles write-only attributes (Terraform ≥ 1.11 says so; older clients
/// send no capabilities at all).
fn write_only_allowed(caps: Option<&tf::ClientCapabilities>) -> bool {
    caps.is_some_and(|c| c.write_only_attributes_allowed)
}

fn resource(type_name: &str) -> Result<&'static dyn Resource, Diagnostics> {
    registry().resource(type_name)
}

fn data_source(type_name: &str) -> Result<&'static dyn DataSource, Diagnostics> {
    registry().data_source(type_name)
}

#[tonic::async_trait]
impl Provider for BlockstorProvider {
    async fn get_metadata(
        &self,
        _request: Request<tf::get_metadata::Request>,
    ) -> Rpc<tf::get_metadata::Response> {
        Ok(Response::new(tf::get_metadata::Response {
            resources: registry()
                .resources()
                .map(|r| tf::get_metadata::ResourceMetadata {
                    type_name: r.type_name().to_owned(),
                })
                .collect(),
            data_sources: registry()
                .data_sources()
                .map(|d| tf::get_metadata::DataSourceMetadata {
                    type_name: d.type_name().to_owned(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<tf::get_provider_schema::Request>,
    ) -> Rpc<tf::get_provider_schema::Response> {
        let r = registry();
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(r.provider_schema().to_proto()),
            resource_schemas: r
                .resources()
                .map(|t| (t.type_name().to_owned(), t.schema().to_proto()))
                .collect(),
            data_source_schemas: r
                .data_sources()
                .map(|t| (t.type_name().to_owned(), t.schema().to_proto()))
                .collect(),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> Rpc<tf::validate_provider_config::Response> {
        let config = decode(
            request.get_ref().config.as_ref(),
            registry().provider_schema(),
        )?;
        let (_, diags) = provider_config::parse(&config);
        Ok(Response::new(tf::validate_provider_config::Response {
            diagnostics: diags.0,
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<tf::validate_resource_config::Request>,
    ) -> Rpc<tf::validate_resource_config::Response> {
        let req = request.get_ref();
        let diags = match resource(&req.type_name) {
            Err(d) => d,
            Ok(resource) => {
                let schema = resource.schema();
                let config = decode(req.config.as_ref(), schema)?;
                // Errors only: plan runs the same checks with every value known and gives
                // the warnings there, so Terraform shows each once.
                let mut diags = resource.validate(&config).errors_only();
                let allowed = write_only_allowed(req.client_capabilities.as_ref());
                write_only::check_allowed(&config, schema, allowed, &mut diags);
                diags
            }
        };
        Ok(Response::new(tf::validate_resource_config::Response {
            diagnostics: diags.0,
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<tf::validate_data_resource_config::Request>,
    ) -> Rpc<tf::validate_data_resource_config::Response> {
        let req = request.get_ref();
        let diags = match data_source(&req.type_name) {
            Err(d) => d,
            Ok(_) => Diagnostics::default(),
        };
        Ok(Response::new(tf::validate_data_resource_config::Response {
            diagnostics: diags.0,
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> Rpc<tf::upgrade_resource_state::Response> {
        let req = request.get_ref();
        let schema = match resource(&req.type_name) {
            Ok(r) => r.schema(),
            Err(d) => {
                return Ok(Response::new(tf::upgrade_resource_state::Response {
                    upgraded_state: None,
                    diagnostics: d.0,
                }))
            }
        };
        let mut diags = Diagnostics::default();
        let raw = req.raw_state.as_ref();
        let state = match raw {
            Some(r) if !r.json.is_empty() => json::decode(&r.json, schema.ty())
                .map_err(|e| Status::invalid_argument(format!("cannot read stored state: {e}")))?,
            Some(r) if !r.flatmap.is_empty() => {
                diags.error_global("Unsupported state format", "This state was written by Terraform before 0.12 (flatmap); blockstor never wrote such state. Remove the resource from state and import it.");
                Value::Null
            }
            _ => Value::Null,
        };
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: Some(encode(&state, schema)),
            diagnostics: diags.0,
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<tf::configure_provider::Request>,
    ) -> Rpc<tf::configure_provider::Response> {
        let config = decode(
            request.get_ref().config.as_ref(),
            registry().provider_schema(),
        )?;
        let (nodes, mut diags) = provider_config::parse(&config);
        let mut cluster = Cluster::default();
        for node in nodes {
            match transport::connect(&node) {
                Ok(client) => {
                    cluster.nodes.insert(
                        node.name.clone(),
                        ClusterNode {
                            address: node.address.clone(),
                            client,
                        },
                    );
                }
                Err(e) => diags.transport("Configure", &e),
            }
        }
        *self.cluster.write().expect("cluster lock") = Some(Arc::new(cluster));
        Ok(Response::new(tf::configure_provider::Response {
            diagnostics: diags.0,
        }))
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> Rpc<tf::read_resource::Response> {
        let req = request.get_ref();
        let resource = match resource(&req.type_name) {
            Ok(r) => r,
            Err(d) => {
                return Ok(Response::new(tf::read_resource::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let schema = resource.schema();
        let state = decode(req.current_state.as_ref(), schema)?;
        let (mut new_state, diags) = if state.is_null() {
            (state, Diagnostics::default())
        } else {
            resource.read(&self.cx(), &state, &req.private).await
        };
        write_only::null_out(&mut new_state, schema);
        Ok(Response::new(tf::read_resource::Response {
            new_state: Some(encode(&new_state, schema)),
            diagnostics: diags.0,
            private: req.private.clone(),
            deferred: None,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> Rpc<tf::plan_resource_change::Response> {
        let req = request.get_ref();
        let resource = match resource(&req.type_name) {
            Ok(r) => r,
            Err(d) => {
                return Ok(Response::new(tf::plan_resource_change::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let schema = resource.schema();
        let prior = decode(req.prior_state.as_ref(), schema)?;
        let proposed = decode(req.proposed_new_state.as_ref(), schema)?;
        let config = decode(req.config.as_ref(), schema)?;
        let mut refused = Diagnostics::default();
        let allowed = write_only_allowed(req.client_capabilities.as_ref());
        write_only::check_allowed(&config, schema, allowed, &mut refused);
        if refused.has_errors() {
            return Ok(Response::new(tf::plan_resource_change::Response {
                diagnostics: refused.0,
                ..Default::default()
            }));
        }
        let planned = resource
            .plan(
                &self.cx(),
                PlanRequest {
                    prior: &prior,
                    proposed: &proposed,
                    config: &config,
                    prior_private: &req.prior_private,
                },
            )
            .await;
        let mut state = planned.state;
        // Terraform ≥ 1.11 rejects a plan that holds a write-only value; the value itself is
        // read from `config` again at apply.
        write_only::null_out(&mut state, schema);
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: Some(encode(&state, schema)),
            requires_replace: planned
                .requires_replace
                .iter()
                .map(|p| p.to_proto())
                .collect(),
            planned_private: planned.private,
            diagnostics: planned.diags.0,
            legacy_type_system: false,
            deferred: None,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Rpc<tf::apply_resource_change::Response> {
        let req = request.get_ref();
        let resource = match resource(&req.type_name) {
            Ok(r) => r,
            Err(d) => {
                return Ok(Response::new(tf::apply_resource_change::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let schema = resource.schema();
        let prior = decode(req.prior_state.as_ref(), schema)?;
        let planned = decode(req.planned_state.as_ref(), schema)?;
        let config = decode(req.config.as_ref(), schema)?;
        let applied = resource
            .apply(
                &self.cx(),
                ApplyRequest {
                    prior: &prior,
                    planned: &planned,
                    config: &config,
                    planned_private: &req.planned_private,
                },
            )
            .await;
        let mut state = applied.state;
        write_only::null_out(&mut state, schema);
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state: Some(encode(&state, schema)),
            private: applied.private,
            diagnostics: applied.diags.0,
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> Rpc<tf::import_resource_state::Response> {
        let req = request.get_ref();
        let resource = match resource(&req.type_name) {
            Ok(r) => r,
            Err(d) => {
                return Ok(Response::new(tf::import_resource_state::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let imported = resource.import(&self.cx(), &req.id).await;
        let imported_resources = if imported.state.is_null() {
            vec![]
        } else {
            vec![tf::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: Some(encode(&imported.state, resource.schema())),
                private: imported.private,
            }]
        };
        Ok(Response::new(tf::import_resource_state::Response {
            imported_resources,
            diagnostics: imported.diags.0,
            deferred: None,
        }))
    }

    async fn move_resource_state(
        &self,
        _request: Request<tf::move_resource_state::Request>,
    ) -> Rpc<tf::move_resource_state::Response> {
        let mut d = Diagnostics::default();
        d.error_global(
            "Moving resource state is not supported",
            "blockstor resources cannot be moved from another resource type.",
        );
        Ok(Response::new(tf::move_resource_state::Response {
            diagnostics: d.0,
            ..Default::default()
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<tf::read_data_source::Request>,
    ) -> Rpc<tf::read_data_source::Response> {
        let req = request.get_ref();
        let data_source = match data_source(&req.type_name) {
            Ok(d) => d,
            Err(d) => {
                return Ok(Response::new(tf::read_data_source::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let schema = data_source.schema();
        let config = decode(req.config.as_ref(), schema)?;
        let (state, diags) = data_source.read(&self.cx(), &config).await;
        Ok(Response::new(tf::read_data_source::Response {
            state: if diags.has_errors() {
                None
            } else {
                Some(encode(&state, schema))
            },
            diagnostics: diags.0,
            deferred: None,
        }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        _request: Request<tf::validate_ephemeral_resource_config::Request>,
    ) -> Rpc<tf::validate_ephemeral_resource_config::Response> {
        Err(Status::unimplemented(
            "blockstor has no ephemeral resources",
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        _request: Request<tf::open_ephemeral_resource::Request>,
    ) -> Rpc<tf::open_ephemeral_resource::Response> {
        Err(Status::unimplemented(
            "blockstor has no ephemeral resources",
        ))
    }

    async fn renew_ephemeral_resource(
        &self,
        _request: Request<tf::renew_ephemeral_resource::Request>,
    ) -> Rpc<tf::renew_ephemeral_resource::Response> {
        Err(Status::unimplemented(
            "blockstor has no ephemeral resources",
        ))
    }

    async fn close_ephemeral_resource(
        &self,
        _request: Request<tf::close_ephemeral_resource::Request>,
    ) -> Rpc<tf::close_ephemeral_resource::Response> {
        Err(Status::unimplemented(
            "blockstor has no ephemeral resources",
        ))
    }

    async fn get_functions(
        &self,
        _request: Request<tf::get_functions::Request>,
    ) -> Rpc<tf::get_functions::Response> {
        Ok(Response::new(tf::get_functions::Response::default()))
    }

    async fn call_function(
        &self,
        _request: Request<tf::call_function::Request>,
    ) -> Rpc<tf::call_function::Response> {
        Err(Status::unimplemented("blockstor has no functions"))
    }

    async fn stop_provider(
        &self,
        _request: Request<tf::stop_provider::Request>,
    ) -> Rpc<tf::stop_provider::Response> {
        // In-flight agent calls are bounded by their timeouts; the agent side is journalled,
        // so an interrupted apply resumes on the next run.
        Ok(Response::new(tf::stop_provider::Response {
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests;
