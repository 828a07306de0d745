//! Plugin protocol 5 for clients that do not offer 6 (Terraform before 0.15.4, or any client
//! when `BLOCKSTOR_PROTOCOL_VERSIONS=5`): an adapter that serves tfplugin5.2 by calling a
//! tfplugin6 [`Provider`], so no business logic exists twice.
//!
//! Every message blockstor uses has the same fields under the same numbers in 5.2 and 6.0 (6.0
//! was cut from 5.2; later 6.x fields are optional and never set by blockstor), so requests and
//! responses are converted by re-encoding them ([`transcode`]). Three things differ and are
//! converted by hand:
//! * The schema: protocol 5 has no NestedType attributes. A nested attribute becomes an
//!   attribute of the equivalent cty *object* type ([`downgrade_attribute`]): values are encoded
//!   the same way, so states and plans pass through unchanged. Object types in 5.2 cannot have
//!   optional attributes, so with protocol 5 `resource_group` must be given a whole object
//!   (`= blockstor_resource_group.x` works; `{ name = "x" }` needs every attribute, null ones
//!   included).
//! * PrepareProviderConfig (5) replies with the config to use: it is echoed back unchanged, with
//!   the diagnostics of ValidateProviderConfig (6).
//! * Stop, GetSchema and Configure are renamed RPCs with the same messages.
//! * Write-only attributes (5.8/6.8, Terraform 1.11): `Schema.Attribute.write_only` is field 10
//!   in 5.x and 11 in 6.x, so it is copied by hand ([`carry_write_only`]). `ClientCapabilities`
//!   has the same numbers in both, and so pass through [`transcode`] like the rest.

use blockstor_proto::prost::Message;
use blockstor_proto::tfplugin5 as v5;
use blockstor_proto::tfplugin6::{self as v6, provider_server::Provider};
use tonic::{Request, Response, Status};

type Rpc<T> = Result<Response<T>, Status>;

/// The protocol 5 `Provider` service over a protocol 6 provider `P`.
pub struct Protocol5<P> {
    inner: P,
}

impl<P> Protocol5<P> {
    /// Wraps the protocol 6 provider `inner`.
    pub fn new(inner: P) -> Self {
        Protocol5 { inner }
    }
}

/// Converts a message into its twin of the other protocol version by re-encoding it. Only for
/// pairs whose shared fields have the same numbers and types (checked by the tests below);
/// fields the target does not know are dropped.
fn transcode<From: Message, To: Message + Default>(from: &From) -> Result<To, Status> {
    To::decode(from.encode_to_vec().as_slice()).map_err(|err| {
        Status::internal(format!(
            "[plugin.protocol5] cannot convert a protocol message between versions 5 and 6: {err}"
        ))
    })
}

/// Calls the protocol 6 handler `call` with the transcoded request and transcodes its reply.
async fn adapt<Req5, Req6, Resp6, Resp5, F, Fut>(request: Request<Req5>, call: F) -> Rpc<Resp5>
where
    Req5: Message,
    Req6: Message + Default,
    Resp6: Message,
    Resp5: Message + Default,
    F: FnOnce(Request<Req6>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<Resp6>, Status>>,
{
    let request = transcode(request.get_ref())?;
    let response = call(Request::new(request)).await?;
    transcode(response.get_ref()).map(Response::new)
}

/// Rewrites a protocol 6 schema so it only uses what protocol 5 has: nested attributes become
/// object-typed attributes, in nested blocks too.
fn downgrade_schema(schema: &mut v6::Schema) {
    if let Some(block) = schema.block.as_mut() {
        downgrade_block(block);
    }
}

fn downgrade_block(block: &mut v6::schema::Block) {
    for attribute in &mut block.attributes {
        downgrade_attribute(attribute);
    }
    for nested in &mut block.block_types {
        if let Some(block) = nested.block.as_mut() {
            downgrade_block(block);
        }
    }
}

/// A NestedType attribute becomes a plain attribute of the same value type. An inner sensitive
/// attribute makes the whole attribute sensitive: protocol 5 cannot mark only a part.
fn downgrade_attribute(attribute: &mut v6::schema::Attribute) {
    let Some(nested) = attribute.nested_type.take() else {
        return;
    };
    attribute.sensitive |= any_sensitive(&nested);
    attribute.r#type = object_type_json(&nested).to_string().into_bytes();
}

fn any_sensitive(object: &v6::schema::Object) -> bool {
    object
        .attributes
        .iter()
        .any(|a| a.sensitive || a.nested_type.as_ref().is_some_and(any_sensitive))
}

/// The cty type JSON of a nested object: `["object", {...}]`, wrapped in a list, set or map for
/// those nesting modes.
fn object_type_json(object: &v6::schema::Object) -> serde_json::Value {
    use v6::schema::object::NestingMode;
    let attributes: serde_json::Map<String, serde_json::Value> = object
        .attributes
        .iter()
        .map(|a| {
            let ty = match &a.nested_type {
                Some(inner) => object_type_json(inner),
                // Our own schema wrote these bytes from a serde_json value: they parse.
                None => serde_json::from_slice(&a.r#type).unwrap_or(serde_json::Value::Null),
            };
            (a.name.clone(), ty)
        })
        .collect();
    let ty = serde_json::json!(["object", attributes]);
    match NestingMode::try_from(object.nesting) {
        Ok(NestingMode::List) => serde_json::json!(["list", ty]),
        Ok(NestingMode::Set) => serde_json::json!(["set", ty]),
        Ok(NestingMode::Map) => serde_json::json!(["map", ty]),
        _ => ty,
    }
}

/// `write_only` is field 11 of a 6.x attribute but 10 of a 5.x one (5.x has no `nested_type`),
/// so re-encoding loses it: copy it over by hand, walking both blocks in step (the transcoded
/// block has the same attributes and nested blocks in the same order).
fn carry_write_only(v6: &v6::schema::Block, v5: &mut v5::schema::Block) {
    for (from, to) in v6.attributes.iter().zip(&mut v5.attributes) {
        to.write_only = from.write_only;
    }
    for (from, to) in v6.block_types.iter().zip(&mut v5.block_types) {
        if let (Some(from), Some(to)) = (from.block.as_ref(), to.block.as_mut()) {
            carry_write_only(from, to);
        }
    }
}

#[tonic::async_trait]
impl<P: Provider> v5::provider_server::Provider for Protocol5<P> {
    async fn get_schema(
        &self,
        _request: Request<v5::get_provider_schema::Request>,
    ) -> Rpc<v5::get_provider_schema::Response> {
        let mut response = self
            .inner
            .get_provider_schema(Request::new(v6::get_provider_schema::Request::default()))
            .await?
            .into_inner();
        let schemas = response
            .provider
            .iter_mut()
            .chain(response.provider_meta.iter_mut())
            .chain(response.resource_schemas.values_mut())
            .chain(response.data_source_schemas.values_mut());
        for schema in schemas {
            downgrade_schema(schema);
        }
        let mut v5_response: v5::get_provider_schema::Response = transcode(&response)?;
        let pairs = v5_response
            .resource_schemas
            .iter_mut()
            .filter_map(|(name, v5)| Some((v5, response.resource_schemas.get(name)?)));
        for (v5, v6) in pairs {
            if let (Some(v5), Some(v6)) = (v5.block.as_mut(), v6.block.as_ref()) {
                carry_write_only(v6, v5);
            }
        }
        Ok(Response::new(v5_response))
    }

    async fn prepare_provider_config(
        &self,
        request: Request<v5::prepare_provider_config::Request>,
    ) -> Rpc<v5::prepare_provider_config::Response> {
        let config = request.get_ref().config.clone();
        let validated: v6::validate_provider_config::Response = self
            .inner
            .validate_provider_config(Request::new(transcode(request.get_ref())?))
            .await?
            .into_inner();
        Ok(Response::new(v5::prepare_provider_config::Response {
            prepared_config: config,
            diagnostics: validated
                .diagnostics
                .iter()
                .map(transcode)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn validate_resource_type_config(
        &self,
        request: Request<v5::validate_resource_type_config::Request>,
    ) -> Rpc<v5::validate_resource_type_config::Response> {
        adapt(request, |r| self.inner.validate_resource_config(r)).await
    }

    async fn validate_data_source_config(
        &self,
        request: Request<v5::validate_data_source_config::Request>,
    ) -> Rpc<v5::validate_data_source_config::Response> {
        adapt(request, |r| self.inner.validate_data_resource_config(r)).await
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<v5::upgrade_resource_state::Request>,
    ) -> Rpc<v5::upgrade_resource_state::Response> {
        adapt(request, |r| self.inner.upgrade_resource_state(r)).await
    }

    async fn configure(
        &self,
        request: Request<v5::configure::Request>,
    ) -> Rpc<v5::configure::Response> {
        adapt(request, |r| self.inner.configure_provider(r)).await
    }

    async fn read_resource(
        &self,
        request: Request<v5::read_resource::Request>,
    ) -> Rpc<v5::read_resource::Response> {
        adapt(request, |r| self.inner.read_resource(r)).await
    }

    async fn plan_resource_change(
        &self,
        request: Request<v5::plan_resource_change::Request>,
    ) -> Rpc<v5::plan_resource_change::Response> {
        adapt(request, |r| self.inner.plan_resource_change(r)).await
    }

    async fn apply_resource_change(
        &self,
        request: Request<v5::apply_resource_change::Request>,
    ) -> Rpc<v5::apply_resource_change::Response> {
        adapt(request, |r| self.inner.apply_resource_change(r)).await
    }

    async fn import_resource_state(
        &self,
        request: Request<v5::import_resource_state::Request>,
    ) -> Rpc<v5::import_resource_state::Response> {
        adapt(request, |r| self.inner.import_resource_state(r)).await
    }

    async fn read_data_source(
        &self,
        request: Request<v5::read_data_source::Request>,
    ) -> Rpc<v5::read_data_source::Response> {
        adapt(request, |r| self.inner.read_data_source(r)).await
    }

    async fn stop(&self, request: Request<v5::stop::Request>) -> Rpc<v5::stop::Response> {
        adapt(request, |r| self.inner.stop_provider(r)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::BlockstorProvider;
    use v5::provider_server::Provider as _;

    fn adapter() -> Protocol5<BlockstorProvider> {
        Protocol5::new(BlockstorProvider::new())
    }

    fn find<'a>(block: &'a v5::schema::Block, name: &str) -> &'a v5::schema::Attribute {
        block
            .attributes
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no attribute {name}"))
    }

    #[tokio::test]
    async fn protocol5_schema_has_resource_group_as_a_sensitive_object_attribute() {
        let schema = adapter()
            .get_schema(Request::new(Default::default()))
            .await
            .unwrap()
            .into_inner();
        let rd = schema.resource_schemas["blockstor_resource_definition"]
            .block
            .as_ref()
            .unwrap();
        let group = find(rd, "resource_group");
        let ty: serde_json::Value = serde_json::from_slice(&group.r#type).unwrap();
        assert_eq!(ty[0], "object");
        assert_eq!(ty[1]["passphrase"], "string");
        assert_eq!(ty[1]["layer_stack"], serde_json::json!(["list", "string"]));
        assert_eq!(ty[1]["props"], serde_json::json!(["map", "string"]));
        assert!(group.optional && group.computed && group.sensitive);
        // Plain attributes and blocks come through untouched.
        assert_eq!(find(rd, "name").r#type, b"\"string\"");
        assert!(find(rd, "name").required);
        assert!(rd.block_types.iter().any(|b| b.type_name == "volume"));
        assert!(schema
            .provider
            .unwrap()
            .block
            .unwrap()
            .block_types
            .iter()
            .any(|b| b.type_name == "node"));
        assert!(schema.data_source_schemas.contains_key("blockstor_nodes"));
    }

    #[tokio::test]
    async fn protocol5_schema_keeps_write_only_under_its_own_field_number() {
        let schema = adapter()
            .get_schema(Request::new(Default::default()))
            .await
            .unwrap()
            .into_inner();
        let rd = schema.resource_schemas["blockstor_resource_definition"]
            .block
            .as_ref()
            .unwrap();
        assert!(find(rd, "passphrase_wo").write_only);
        assert!(find(rd, "previous_passphrase_wo").write_only);
        assert!(!find(rd, "passphrase").write_only);
        let rg = schema.resource_schemas["blockstor_resource_group"]
            .block
            .as_ref()
            .unwrap();
        assert!(find(rg, "passphrase_wo").write_only);
    }

    #[tokio::test]
    async fn protocol5_client_capabilities_reach_the_provider() {
        let schema = crate::resources::registry::registry()
            .resource(crate::resources::resource_definition::TYPE_NAME)
            .unwrap()
            .schema();
        let config = crate::values::Value::object([(
            "passphrase_wo",
            crate::values::Value::string("a long enough secret"),
        )]);
        let config = crate::values::conform(config, schema.ty());
        let request = |caps| v5::validate_resource_type_config::Request {
            type_name: "blockstor_resource_definition".into(),
            config: Some(v5::DynamicValue {
                msgpack: crate::values::msgpack::encode(&config, schema.ty()),
                json: Vec::new(),
            }),
            client_capabilities: caps,
        };
        let errors = |r: v5::validate_resource_type_config::Response| {
            r.diagnostics
                .iter()
                .filter(|d| d.summary.contains("passphrase_wo"))
                .count()
        };
        let old = adapter()
            .validate_resource_type_config(Request::new(request(None)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(errors(old), 1, "5.2 clients send no capabilities");
        let new = adapter()
            .validate_resource_type_config(Request::new(request(Some(v5::ClientCapabilities {
                deferral_allowed: false,
                write_only_attributes_allowed: true,
            }))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(errors(new), 0);
    }

    #[tokio::test]
    async fn every_schema_type_of_protocol5_is_valid_cty_json() {
        let schema = adapter()
            .get_schema(Request::new(Default::default()))
            .await
            .unwrap()
            .into_inner();
        fn check(block: &v5::schema::Block) {
            for a in &block.attributes {
                let ty: serde_json::Value =
                    serde_json::from_slice(&a.r#type).unwrap_or_else(|e| panic!("{}: {e}", a.name));
                assert!(!ty.to_string().contains("null"), "{}: {ty}", a.name);
            }
            for b in &block.block_types {
                check(b.block.as_ref().unwrap());
            }
        }
        for s in schema
            .resource_schemas
            .values()
            .chain(schema.data_source_schemas.values())
        {
            check(s.block.as_ref().unwrap());
        }
        check(schema.provider.as_ref().unwrap().block.as_ref().unwrap());
    }

    #[tokio::test]
    async fn prepare_provider_config_echoes_the_config_with_the_validation_diagnostics() {
        let config = v5::DynamicValue {
            msgpack: vec![0xc0], // null: no node blocks at all
            json: Vec::new(),
        };
        let v5_reply = adapter()
            .prepare_provider_config(Request::new(v5::prepare_provider_config::Request {
                config: Some(config.clone()),
            }))
            .await
            .unwrap()
            .into_inner();
        let v6_reply = BlockstorProvider::new()
            .validate_provider_config(Request::new(v6::validate_provider_config::Request {
                config: Some(v6::DynamicValue {
                    msgpack: config.msgpack.clone(),
                    json: Vec::new(),
                }),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v5_reply.prepared_config, Some(config));
        let summaries = |d: Vec<String>| d;
        assert_eq!(
            summaries(
                v5_reply
                    .diagnostics
                    .iter()
                    .map(|d| d.summary.clone())
                    .collect()
            ),
            summaries(
                v6_reply
                    .diagnostics
                    .iter()
                    .map(|d| d.summary.clone())
                    .collect()
            ),
        );
    }

    #[test]
    fn plan_replies_keep_every_field_across_versions() {
        let path = v6::AttributePath {
            steps: vec![
                v6::attribute_path::Step {
                    selector: Some(v6::attribute_path::step::Selector::AttributeName(
                        "resource_group".into(),
                    )),
                },
                v6::attribute_path::Step {
                    selector: Some(v6::attribute_path::step::Selector::ElementKeyInt(3)),
                },
            ],
        };
        let reply = v6::plan_resource_change::Response {
            planned_state: Some(v6::DynamicValue {
                msgpack: vec![0x81, 0xa1, b'a', 0x01],
                json: Vec::new(),
            }),
            requires_replace: vec![path.clone()],
            planned_private: b"private".to_vec(),
            diagnostics: vec![v6::Diagnostic {
                severity: v6::diagnostic::Severity::Warning as i32,
                summary: "s".into(),
                detail: "d".into(),
                attribute: Some(path),
            }],
            ..Default::default()
        };
        let v5_reply: v5::plan_resource_change::Response = transcode(&reply).unwrap();
        assert_eq!(
            v5_reply.planned_state.as_ref().unwrap().msgpack,
            vec![0x81, 0xa1, b'a', 0x01]
        );
        assert_eq!(v5_reply.planned_private, b"private");
        assert_eq!(
            v5_reply.diagnostics[0].severity,
            v5::diagnostic::Severity::Warning as i32
        );
        assert_eq!(v5_reply.diagnostics[0].detail, "d");
        assert!(!v5_reply.legacy_type_system);
        let back: v6::plan_resource_change::Response = transcode(&v5_reply).unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn apply_and_read_requests_keep_every_field_across_versions() {
        let value = |b: u8| {
            Some(v5::DynamicValue {
                msgpack: vec![b],
                json: Vec::new(),
            })
        };
        let apply = v5::apply_resource_change::Request {
            type_name: "blockstor_resource_definition".into(),
            prior_state: value(1),
            planned_state: value(2),
            config: value(3),
            planned_private: b"p".to_vec(),
            provider_meta: value(4),
        };
        let v6_apply: v6::apply_resource_change::Request = transcode(&apply).unwrap();
        assert_eq!(v6_apply.type_name, apply.type_name);
        assert_eq!(v6_apply.planned_state.unwrap().msgpack, vec![2]);
        assert_eq!(v6_apply.config.unwrap().msgpack, vec![3]);
        assert_eq!(v6_apply.planned_private, b"p");
        let back: v5::apply_resource_change::Request =
            transcode(&v6::apply_resource_change::Request {
                type_name: apply.type_name.clone(),
                prior_state: Some(v6::DynamicValue {
                    msgpack: vec![1],
                    json: vec![],
                }),
                planned_state: Some(v6::DynamicValue {
                    msgpack: vec![2],
                    json: vec![],
                }),
                config: Some(v6::DynamicValue {
                    msgpack: vec![3],
                    json: vec![],
                }),
                planned_private: b"p".to_vec(),
                provider_meta: Some(v6::DynamicValue {
                    msgpack: vec![4],
                    json: vec![],
                }),
            })
            .unwrap();
        assert_eq!(back, apply);

        let upgrade = v5::upgrade_resource_state::Request {
            type_name: "t".into(),
            version: 2,
            raw_state: Some(v5::RawState {
                json: b"{}".to_vec(),
                flatmap: [("a".to_owned(), "b".to_owned())].into(),
            }),
        };
        let v6_upgrade: v6::upgrade_resource_state::Request = transcode(&upgrade).unwrap();
        assert_eq!(v6_upgrade.version, 2);
        assert_eq!(v6_upgrade.raw_state.unwrap().flatmap["a"], "b");

        let import: v5::import_resource_state::Response =
            transcode(&v6::import_resource_state::Response {
                imported_resources: vec![v6::import_resource_state::ImportedResource {
                    type_name: "t".into(),
                    state: Some(v6::DynamicValue {
                        msgpack: vec![9],
                        json: vec![],
                    }),
                    private: b"x".to_vec(),
                }],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            import.imported_resources[0].state.as_ref().unwrap().msgpack,
            vec![9]
        );
        assert_eq!(import.imported_resources[0].private, b"x");
    }
}
