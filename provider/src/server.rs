//! The tfplugin6 `Provider` service: decodes each request against the schema, dispatches it to
//! the resource or data source, and encodes the reply as msgpack.
//!
//! Terraform starts a fresh provider process per phase, so `new()` does no I/O; agents are
//! reached only from ConfigureProvider on.

use std::sync::{Arc, RwLock};

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use blockstor_proto::NodeName;
use tonic::{Request, Response, Status};

use crate::controller::{Cluster, ClusterNode};
use crate::resources::diag::Diagnostics;
use crate::resources::{
    nodes_data, provider_config, resource_definition as rd, resource_definition_data,
    resource_group as rg, write_only,
};
use crate::schema::{self, Schema, RESOURCE_DEFINITION, RESOURCE_GROUP};
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

    fn cluster(&self) -> Arc<Cluster> {
        self.cluster
            .read()
            .expect("cluster lock")
            .clone()
            .unwrap_or_default()
    }

    fn configured_names(&self) -> Option<Vec<NodeName>> {
        self.cluster
            .read()
            .expect("cluster lock")
            .as_ref()
            .map(|c| c.names())
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

fn unknown_type(kind: &str, type_name: &str) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.error_global(format!("Unknown {kind} type {type_name}"), "This provider has blockstor_resource_group, blockstor_resource_definition, and the data sources blockstor_nodes and blockstor_resource_definition.");
    d
}

/// Whether the client handles write-only attributes (Terraform ≥ 1.11 says so; older clients
/// send no capabilities at all).
fn write_only_allowed(caps: Option<&tf::ClientCapabilities>) -> bool {
    caps.is_some_and(|c| c.write_only_attributes_allowed)
}

fn resource_schema(type_name: &str) -> Result<&'static Schema, Diagnostics> {
    schema::schemas()
        .resource(type_name)
        .ok_or_else(|| unknown_type("resource", type_name))
}

#[tonic::async_trait]
impl Provider for BlockstorProvider {
    async fn get_metadata(
        &self,
        _request: Request<tf::get_metadata::Request>,
    ) -> Rpc<tf::get_metadata::Response> {
        Ok(Response::new(tf::get_metadata::Response {
            resources: [RESOURCE_GROUP, RESOURCE_DEFINITION]
                .into_iter()
                .map(|t| tf::get_metadata::ResourceMetadata {
                    type_name: t.to_owned(),
                })
                .collect(),
            data_sources: [schema::NODES_DATA, schema::RESOURCE_DEFINITION_DATA]
                .into_iter()
                .map(|t| tf::get_metadata::DataSourceMetadata {
                    type_name: t.to_owned(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<tf::get_provider_schema::Request>,
    ) -> Rpc<tf::get_provider_schema::Response> {
        let s = schema::schemas();
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(s.provider.to_proto()),
            resource_schemas: [
                (RESOURCE_GROUP.to_owned(), s.resource_group.to_proto()),
                (
                    RESOURCE_DEFINITION.to_owned(),
                    s.resource_definition.to_proto(),
                ),
            ]
            .into(),
            data_source_schemas: [
                (schema::NODES_DATA.to_owned(), s.nodes_data.to_proto()),
                (
                    schema::RESOURCE_DEFINITION_DATA.to_owned(),
                    s.resource_definition_data.to_proto(),
                ),
            ]
            .into(),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> Rpc<tf::validate_provider_config::Response> {
        let config = decode(
            request.get_ref().config.as_ref(),
            &schema::schemas().provider,
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
        let diags = match resource_schema(&req.type_name) {
            Err(d) => d,
            Ok(schema) => {
                let config = decode(req.config.as_ref(), schema)?;
                // Errors only: plan runs the same checks with every value known and gives
                // the warnings there, so Terraform shows each once.
                let mut diags = match req.type_name.as_str() {
                    RESOURCE_GROUP => rg::validate(&config),
                    _ => rd::validate::validate(&config),
                }
                .errors_only();
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
        let diags = match schema::schemas().data_source(&req.type_name) {
            None => unknown_type("data source", &req.type_name),
            Some(_) => Diagnostics::default(),
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
        let schema = match resource_schema(&req.type_name) {
            Ok(s) => s,
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
            &schema::schemas().provider,
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
        let schema = match resource_schema(&req.type_name) {
            Ok(s) => s,
            Err(d) => {
                return Ok(Response::new(tf::read_resource::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let state = decode(req.current_state.as_ref(), schema)?;
        let (mut new_state, diags) = match req.type_name.as_str() {
            RESOURCE_DEFINITION if !state.is_null() => {
                rd::read::read(&self.cluster(), &state).await
            }
            _ => (state, Diagnostics::default()),
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
        let schema = match resource_schema(&req.type_name) {
            Ok(s) => s,
            Err(d) => {
                return Ok(Response::new(tf::plan_resource_change::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
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
        let (mut planned, replace, private, diags) = match req.type_name.as_str() {
            RESOURCE_GROUP => {
                let (p, r, d) = rg::plan(&prior, &proposed, &config);
                (p, r, req.prior_private.clone(), d)
            }
            _ => {
                let names = self.configured_names();
                let mut p = rd::plan::plan(
                    &prior,
                    &proposed,
                    &config,
                    &req.prior_private,
                    names.as_deref(),
                );
                if names.is_some() && !p.diags.has_errors() {
                    rd::preview::fill(
                        &self.cluster(),
                        &prior,
                        &mut p.state,
                        &config,
                        &p.private,
                        &mut p.diags,
                    )
                    .await;
                }
                (p.state, p.requires_replace, p.private, p.diags)
            }
        };
        // Terraform ≥ 1.11 rejects a plan that holds a write-only value; the value itself is
        // read from `config` again at apply.
        write_only::null_out(&mut planned, schema);
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: Some(encode(&planned, schema)),
            requires_replace: replace.iter().map(|p| p.to_proto()).collect(),
            planned_private: private,
            diagnostics: diags.0,
            legacy_type_system: false,
            deferred: None,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Rpc<tf::apply_resource_change::Response> {
        let req = request.get_ref();
        let schema = match resource_schema(&req.type_name) {
            Ok(s) => s,
            Err(d) => {
                return Ok(Response::new(tf::apply_resource_change::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let prior = decode(req.prior_state.as_ref(), schema)?;
        let planned = decode(req.planned_state.as_ref(), schema)?;
        let config = decode(req.config.as_ref(), schema)?;
        let (mut state, private, diags) = match req.type_name.as_str() {
            RESOURCE_GROUP => (planned, req.planned_private.clone(), Diagnostics::default()),
            _ => {
                let a = rd::apply::apply(
                    &self.cluster(),
                    &prior,
                    &planned,
                    &config,
                    &req.planned_private,
                )
                .await;
                (a.state, a.private, a.diags)
            }
        };
        write_only::null_out(&mut state, schema);
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state: Some(encode(&state, schema)),
            private,
            diagnostics: diags.0,
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> Rpc<tf::import_resource_state::Response> {
        let req = request.get_ref();
        let schema = match resource_schema(&req.type_name) {
            Ok(s) => s,
            Err(d) => {
                return Ok(Response::new(tf::import_resource_state::Response {
                    diagnostics: d.0,
                    ..Default::default()
                }))
            }
        };
        let (state, private, diags) = match req.type_name.as_str() {
            RESOURCE_GROUP => (
                Value::object([
                    ("id", Value::string(&req.id)),
                    ("name", Value::string(&req.id)),
                ]),
                Vec::new(),
                Diagnostics::default(),
            ),
            _ => rd::read::import(&self.cluster(), &req.id).await,
        };
        let imported = if state.is_null() {
            vec![]
        } else {
            vec![tf::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: Some(encode(&state, schema)),
                private,
            }]
        };
        Ok(Response::new(tf::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: diags.0,
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
        let Some(schema) = schema::schemas().data_source(&req.type_name) else {
            return Ok(Response::new(tf::read_data_source::Response {
                diagnostics: unknown_type("data source", &req.type_name).0,
                ..Default::default()
            }));
        };
        let config = decode(req.config.as_ref(), schema)?;
        let cluster = self.cluster();
        let (state, diags) = match req.type_name.as_str() {
            schema::NODES_DATA => nodes_data::read_nodes(&cluster).await,
            _ => resource_definition_data::read_resource_definition(&cluster, &config).await,
        };
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
