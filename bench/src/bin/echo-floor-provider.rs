//! The bench's "echo floor": a provider with blockstor's schema that does no work, so the bench
//! can measure what Terraform itself spends on our schema (docs/design.md §12).
//!
//! It serves the real provider's schema and metadata over the real plugin server, and answers
//! the rest without looking at anything:
//! - plan: the proposed state echoed; on create every computed attribute the configuration
//!   leaves null is unknown;
//! - apply: the planned state with every unknown made null;
//! - read: the current state as it is; upgrade: the stored JSON as it is;
//! - configure, validate: no diagnostics. No agent is ever contacted.
//!
//! Terraform starts it like the real binary (`scripts/bench.sh` builds it; the bench installs
//! it as `terraform-provider-blockstor` in a workspace of its own).

use std::collections::HashMap;
use std::process::ExitCode;

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use rmpv::Value as Mp;
use terraform_provider_blockstor::plugin::{self, handshake};
use terraform_provider_blockstor::server::BlockstorProvider;
use tonic::{Request, Response, Status};

type Rpc<T> = Result<Response<T>, Status>;

/// msgpack extension type of an unknown value; cty ≥ 1.13 may send 12 (refined unknown).
const EXT_UNKNOWN: i8 = 0;
const EXT_REFINED_UNKNOWN: i8 = 12;
/// `NestingMode::Map` of blocks and of nested attribute objects.
const NESTING_MAP: i32 = 4;

struct EchoFloor {
    real: BlockstorProvider,
    /// Every resource type's schema block, from the real provider.
    blocks: HashMap<String, tf::schema::Block>,
}

impl EchoFloor {
    async fn new() -> Result<Self, Status> {
        let real = BlockstorProvider::new();
        let schema = real
            .get_provider_schema(Request::new(Default::default()))
            .await?
            .into_inner();
        let blocks = schema
            .resource_schemas
            .into_iter()
            .filter_map(|(name, s)| Some((name, s.block?)))
            .collect();
        Ok(EchoFloor { real, blocks })
    }
}

fn decode(dv: Option<&tf::DynamicValue>) -> Mp {
    dv.filter(|d| !d.msgpack.is_empty())
        .and_then(|d| rmpv::decode::read_value(&mut d.msgpack.as_slice()).ok())
        .unwrap_or(Mp::Nil)
}

fn encode(v: &Mp) -> tf::DynamicValue {
    let mut msgpack = Vec::new();
    rmpv::encode::write_value(&mut msgpack, v).expect("writing to a Vec");
    tf::DynamicValue {
        msgpack,
        json: Vec::new(),
    }
}

/// Makes every computed attribute that is null in `object` unknown, through nested blocks and
/// nested attribute objects.
fn unknown_computed(
    object: &mut Mp,
    attributes: &[tf::schema::Attribute],
    blocks: &[tf::schema::NestedBlock],
) {
    let Mp::Map(entries) = object else { return };
    for (key, value) in entries.iter_mut() {
        let Some(name) = key.as_str() else { continue };
        if let Some(a) = attributes.iter().find(|a| a.name == name) {
            if a.computed && value.is_nil() {
                *value = Mp::Ext(EXT_UNKNOWN, vec![0]);
            } else if let Some(o) = &a.nested_type {
                each_object(value, o.nesting == NESTING_MAP, &mut |v| {
                    unknown_computed(v, &o.attributes, &[])
                });
            }
        } else if let Some(b) = blocks.iter().find(|b| b.type_name == name) {
            let Some(block) = &b.block else { continue };
            each_object(value, b.nesting == NESTING_MAP, &mut |v| {
                unknown_computed(v, &block.attributes, &block.block_types)
            });
        }
    }
}

/// Calls `f` on the object, or on each object of a list, set or map of them.
fn each_object(value: &mut Mp, is_map: bool, f: &mut dyn FnMut(&mut Mp)) {
    match value {
        Mp::Array(items) => items.iter_mut().for_each(f),
        Mp::Map(entries) if is_map => entries.iter_mut().for_each(|(_, v)| f(v)),
        Mp::Map(_) => f(value),
        _ => {}
    }
}

/// Replaces every unknown with null, as an apply that computed nothing would.
fn unknowns_to_null(value: &mut Mp) {
    match value {
        Mp::Ext(EXT_UNKNOWN | EXT_REFINED_UNKNOWN, _) => *value = Mp::Nil,
        Mp::Array(items) => items.iter_mut().for_each(unknowns_to_null),
        Mp::Map(entries) => entries.iter_mut().for_each(|(_, v)| unknowns_to_null(v)),
        _ => {}
    }
}

#[tonic::async_trait]
impl Provider for EchoFloor {
    async fn get_metadata(
        &self,
        request: Request<tf::get_metadata::Request>,
    ) -> Rpc<tf::get_metadata::Response> {
        self.real.get_metadata(request).await
    }

    async fn get_provider_schema(
        &self,
        request: Request<tf::get_provider_schema::Request>,
    ) -> Rpc<tf::get_provider_schema::Response> {
        self.real.get_provider_schema(request).await
    }

    async fn validate_provider_config(
        &self,
        _request: Request<tf::validate_provider_config::Request>,
    ) -> Rpc<tf::validate_provider_config::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn validate_resource_config(
        &self,
        _request: Request<tf::validate_resource_config::Request>,
    ) -> Rpc<tf::validate_resource_config::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn validate_data_resource_config(
        &self,
        _request: Request<tf::validate_data_resource_config::Request>,
    ) -> Rpc<tf::validate_data_resource_config::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> Rpc<tf::upgrade_resource_state::Response> {
        // Terraform decodes a JSON DynamicValue itself: the stored JSON goes back untouched.
        let json = request
            .into_inner()
            .raw_state
            .map(|r| r.json)
            .unwrap_or_default();
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: Some(tf::DynamicValue {
                msgpack: Vec::new(),
                json,
            }),
            diagnostics: Vec::new(),
        }))
    }

    async fn configure_provider(
        &self,
        _request: Request<tf::configure_provider::Request>,
    ) -> Rpc<tf::configure_provider::Response> {
        Ok(Response::new(Default::default()))
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> Rpc<tf::read_resource::Response> {
        let req = request.into_inner();
        Ok(Response::new(tf::read_resource::Response {
            new_state: req.current_state,
            private: req.private,
            ..Default::default()
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> Rpc<tf::plan_resource_change::Response> {
        let req = request.into_inner();
        let creating = decode(req.prior_state.as_ref()).is_nil();
        let planned = match (creating, self.blocks.get(&req.type_name)) {
            (true, Some(block)) => {
                let mut proposed = decode(req.proposed_new_state.as_ref());
                unknown_computed(&mut proposed, &block.attributes, &block.block_types);
                Some(encode(&proposed))
            }
            // Update, or destroy (proposed is null): what Terraform proposed.
            _ => req.proposed_new_state,
        };
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: planned,
            planned_private: req.prior_private,
            ..Default::default()
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Rpc<tf::apply_resource_change::Response> {
        let req = request.into_inner();
        let mut state = decode(req.planned_state.as_ref());
        unknowns_to_null(&mut state);
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state: Some(encode(&state)),
            private: req.planned_private,
            ..Default::default()
        }))
    }

    async fn import_resource_state(
        &self,
        _request: Request<tf::import_resource_state::Request>,
    ) -> Rpc<tf::import_resource_state::Response> {
        Err(Status::unimplemented("the echo floor imports nothing"))
    }

    async fn read_data_source(
        &self,
        request: Request<tf::read_data_source::Request>,
    ) -> Rpc<tf::read_data_source::Response> {
        Ok(Response::new(tf::read_data_source::Response {
            state: request.into_inner().config,
            ..Default::default()
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<tf::stop_provider::Request>,
    ) -> Rpc<tf::stop_provider::Response> {
        Ok(Response::new(Default::default()))
    }
}

fn main() -> ExitCode {
    let cookie = std::env::var(handshake::MAGIC_COOKIE_KEY).ok();
    if let Err(err) = handshake::check_magic_cookie(cookie.as_deref()) {
        eprintln!("{err}");
        return ExitCode::FAILURE;
    }
    plugin::log::init();
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let floor = EchoFloor::new().await.map_err(|e| e.to_string())?;
        plugin::serve(floor).await.map_err(|e| e.to_string())
    });
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo floor: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, computed: bool) -> tf::schema::Attribute {
        tf::schema::Attribute {
            name: name.into(),
            computed,
            optional: !computed,
            ..Default::default()
        }
    }

    #[test]
    fn create_plans_null_computed_values_unknown_and_apply_makes_them_null() {
        let inner = tf::schema::Block {
            attributes: vec![attr("size", false), attr("device", true)],
            ..Default::default()
        };
        let blocks = vec![tf::schema::NestedBlock {
            type_name: "volume".into(),
            block: Some(inner),
            nesting: 2,
            ..Default::default()
        }];
        let attrs = vec![attr("name", false), attr("id", true), attr("set", true)];
        let s = |t: &str| Mp::from(t);
        let mut v = Mp::Map(vec![
            (s("name"), s("db")),
            (s("id"), Mp::Nil),
            (s("set"), s("kept")),
            (
                s("volume"),
                Mp::Array(vec![Mp::Map(vec![
                    (s("size"), s("4MiB")),
                    (s("device"), Mp::Nil),
                ])]),
            ),
        ]);
        unknown_computed(&mut v, &attrs, &blocks);
        let unknown = Mp::Ext(EXT_UNKNOWN, vec![0]);
        assert_eq!(v["id"], unknown);
        assert_eq!(v["set"], s("kept"), "a computed value already set stays");
        assert_eq!(v["name"], s("db"), "configuration is echoed");
        assert_eq!(v["volume"][0]["device"], unknown);
        assert_eq!(v["volume"][0]["size"], s("4MiB"));
        unknowns_to_null(&mut v);
        assert_eq!(v["id"], Mp::Nil);
        assert_eq!(v["volume"][0]["device"], Mp::Nil);
    }
}
