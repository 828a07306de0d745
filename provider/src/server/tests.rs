//! The tfplugin6 service driven the way Terraform drives it: msgpack DynamicValues, and
//! `ClientCapabilities` as Terraform ≥ 1.11 sends them (`write_only_attributes_allowed`) or as
//! older clients do (none at all).

use std::sync::Arc;

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use tonic::Request;

use super::BlockstorProvider;
use crate::controller::fake::FakeAgent;
use crate::resources::registry::registry;
use crate::resources::resource_definition::fingerprint;
use crate::resources::resource_definition::TYPE_NAME as RESOURCE_DEFINITION;
use crate::resources::resource_group::TYPE_NAME as RESOURCE_GROUP;
use crate::schema::Schema;
use crate::values::{conform, msgpack, Value};

const OLD: &str = "first passphrase, long enough";
const NEW: &str = "second passphrase, long enough";

fn dv(value: &Value, schema: &Schema) -> Option<tf::DynamicValue> {
    Some(tf::DynamicValue {
        msgpack: msgpack::encode(&conform(value.clone(), schema.ty()), schema.ty()),
        json: Vec::new(),
    })
}

fn undv(dv: Option<tf::DynamicValue>, schema: &Schema) -> Value {
    msgpack::decode(&dv.expect("a value").msgpack, schema.ty()).expect("decodes")
}

/// Terraform ≥ 1.11; `None` is what Terraform < 1.11 sends.
fn tf_1_11() -> Option<tf::ClientCapabilities> {
    Some(tf::ClientCapabilities {
        deferral_allowed: false,
        write_only_attributes_allowed: true,
    })
}

fn rd_schema() -> &'static Schema {
    registry().resource(RESOURCE_DEFINITION).unwrap().schema()
}

/// A LUKS definition on n1 whose passphrase comes from `passphrase_wo`.
fn config(wo: &str, previous_wo: Option<&str>) -> Value {
    conform(
        Value::object([
            ("name", Value::string("db")),
            ("layer_stack", Value::strings(["LUKS", "STORAGE"])),
            ("nodes", Value::strings(["n1"])),
            ("passphrase_wo", Value::string(wo)),
            (
                "previous_passphrase_wo",
                previous_wo.map_or(Value::Null, Value::string),
            ),
            (
                "volume",
                Value::List(vec![Value::object([
                    ("number", Value::int(0)),
                    ("size", Value::string("64MiB")),
                ])]),
            ),
        ]),
        rd_schema().ty(),
    )
}

/// Terraform's proposed new state: the config (write-only values included, as
/// objchange.ProposedNew copies them), with prior values for the computed attributes.
fn proposed(prior: &Value, config: &Value) -> Value {
    let mut p = config.clone();
    if !prior.is_null() {
        for a in &rd_schema().block.attributes {
            if a.mode == crate::schema::Mode::Computed {
                p.set(a.name, prior.get(a.name).clone());
            }
        }
    }
    p
}

struct Planned {
    state: Value,
    private: Vec<u8>,
    diags: Vec<tf::Diagnostic>,
}

async fn plan(p: &BlockstorProvider, prior: &Value, config: &Value, private: &[u8]) -> Planned {
    let s = rd_schema();
    let r = p
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(prior, s),
            proposed_new_state: dv(&proposed(prior, config), s),
            config: dv(config, s),
            prior_private: private.to_vec(),
            provider_meta: None,
            client_capabilities: tf_1_11(),
        }))
        .await
        .unwrap()
        .into_inner();
    Planned {
        state: r.planned_state.map_or(Value::Null, |v| undv(Some(v), s)),
        private: r.planned_private,
        diags: r.diagnostics,
    }
}

async fn apply(
    p: &BlockstorProvider,
    prior: &Value,
    planned: &Planned,
    config: &Value,
) -> (Value, Vec<u8>) {
    let s = rd_schema();
    let r = p
        .apply_resource_change(Request::new(tf::apply_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(prior, s),
            planned_state: dv(&planned.state, s),
            config: dv(config, s),
            planned_private: planned.private.clone(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    (undv(r.new_state, s), r.private)
}

async fn read(p: &BlockstorProvider, state: &Value, private: &[u8]) -> Value {
    let s = rd_schema();
    let r = p
        .read_resource(Request::new(tf::read_resource::Request {
            type_name: RESOURCE_DEFINITION.into(),
            current_state: dv(state, s),
            private: private.to_vec(),
            provider_meta: None,
            client_capabilities: tf_1_11(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    undv(r.new_state, s)
}

async fn validate(
    p: &BlockstorProvider,
    type_name: &str,
    config: &Value,
    caps: Option<tf::ClientCapabilities>,
) -> Vec<tf::Diagnostic> {
    let schema = registry().resource(type_name).unwrap().schema();
    p.validate_resource_config(Request::new(tf::validate_resource_config::Request {
        type_name: type_name.into(),
        config: dv(config, schema),
        client_capabilities: caps,
    }))
    .await
    .unwrap()
    .into_inner()
    .diagnostics
}

fn errors_on(diags: &[tf::Diagnostic], attr: &str) -> Vec<String> {
    on(diags, attr, 1)
}

fn warnings_on(diags: &[tf::Diagnostic], attr: &str) -> Vec<String> {
    on(diags, attr, 2)
}

fn on(diags: &[tf::Diagnostic], attr: &str, severity: i32) -> Vec<String> {
    let path = crate::resources::diag::AttrPath::attr(attr).to_proto();
    diags
        .iter()
        .filter(|d| d.severity == severity && d.attribute.as_ref() == Some(&path))
        .map(|d| format!("{} {}", d.summary, d.detail))
        .collect()
}

/// ApplyResourceChange of an update that must fail: its diagnostics, after checking that
/// state stays the prior one.
async fn apply_refused(
    p: &BlockstorProvider,
    prior: &Value,
    planned: &Planned,
    config: &Value,
) -> Vec<tf::Diagnostic> {
    let s = rd_schema();
    let r = p
        .apply_resource_change(Request::new(tf::apply_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(prior, s),
            planned_state: dv(&planned.state, s),
            config: dv(config, s),
            planned_private: planned.private.clone(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&undv(r.new_state, s), prior, "state stays as it was");
    r.diagnostics
}

#[tokio::test]
async fn passphrase_wo_is_refused_for_terraform_before_1_11_and_says_what_to_use() {
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster(&["n1"], &[]));
    let cfg = config(OLD, None);
    let diags = validate(&p, RESOURCE_DEFINITION, &cfg, None).await;
    let errs = errors_on(&diags, "passphrase_wo");
    assert_eq!(errs.len(), 1, "{diags:?}");
    for needle in ["passphrase_wo", "1.11", "passphrase_file", "passphrase_env"] {
        assert!(errs[0].contains(needle), "{needle}: {}", errs[0]);
    }
    assert!(!format!("{diags:?}").contains(OLD));

    // Plan refuses it too (a value unknown at validate), and plans nothing.
    let r = p
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(&Value::Null, rd_schema()),
            proposed_new_state: dv(&cfg, rd_schema()),
            config: dv(&cfg, rd_schema()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors_on(&r.diagnostics, "passphrase_wo").len(), 1);
    assert!(r.planned_state.is_none());

    let ok = validate(&p, RESOURCE_DEFINITION, &cfg, tf_1_11()).await;
    assert!(ok.is_empty(), "{ok:?}");
}

#[tokio::test]
async fn passphrase_wo_reaches_the_agent_and_never_the_plan_or_state_and_a_new_one_rotates() {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));

    // Create.
    let cfg = config(OLD, None);
    let planned = plan(&p, &Value::Null, &cfg, &[]).await;
    assert!(planned.diags.is_empty(), "{:?}", planned.diags);
    assert!(
        planned.state.get("passphrase_wo").is_null(),
        "planned state"
    );
    assert!(planned.state.get("passphrase_fingerprint").is_unknown());
    let (state, private) = apply(&p, &Value::Null, &planned, &cfg).await;
    assert!(state.get("passphrase_wo").is_null(), "apply result");
    let fp = state
        .get("passphrase_fingerprint")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fingerprint::matches(&fp, OLD));
    assert_eq!(*agent.passphrases.lock().unwrap(), [OLD]);
    let state = read(&p, &state, &private).await;
    assert!(state.get("passphrase_wo").is_null(), "read result");
    let stored = format!("{state:?}");
    assert!(
        !stored.contains(OLD),
        "state holds the passphrase: {stored}"
    );

    // The same value again: nothing to do.
    let same = plan(&p, &state, &cfg, &private).await;
    assert!(same.diags.is_empty(), "{:?}", same.diags);
    assert_eq!(same.state, state, "no change planned");

    // A new value without the old one: the rotation needs it. Plan warns (an error would stop
    // `terraform destroy`, which plans first); apply refuses before any agent call.
    let rotated = config(NEW, None);
    let refused = plan(&p, &state, &rotated, &private).await;
    assert_eq!(
        warnings_on(&refused.diags, "passphrase_wo").len(),
        1,
        "{:?}",
        refused.diags
    );
    assert!(errors_on(&refused.diags, "passphrase_wo").is_empty());
    assert!(refused.diags[0].detail.contains("previous_passphrase_wo"));
    let calls = agent.calls.lock().unwrap().len();
    let diags = apply_refused(&p, &state, &refused, &rotated).await;
    assert_eq!(errors_on(&diags, "passphrase_wo").len(), 1, "{diags:?}");
    assert!(diags[0].detail.contains("previous_passphrase_wo"));
    assert_eq!(agent.calls.lock().unwrap().len(), calls, "no agent asked");

    // With previous_passphrase_wo: an in-place rotation, old → new, fingerprint renewed.
    let rotated = config(NEW, Some(OLD));
    let planned = plan(&p, &state, &rotated, &private).await;
    assert!(planned.diags.is_empty(), "{:?}", planned.diags);
    assert!(planned.state.get("passphrase_wo").is_null());
    assert!(planned.state.get("previous_passphrase_wo").is_null());
    assert!(planned.state.get("passphrase_fingerprint").is_unknown());
    assert!(planned.state.get("replicas").is_unknown(), "the agents run");
    let (after, _) = apply(&p, &state, &planned, &rotated).await;
    assert!(
        agent
            .calls
            .lock()
            .unwrap()
            .contains(&format!("rotate db {OLD} -> {NEW}")),
        "{:?}",
        agent.calls.lock().unwrap()
    );
    let fp = after.get("passphrase_fingerprint").as_str().unwrap();
    assert!(fingerprint::matches(fp, NEW) && !fingerprint::matches(fp, OLD));
    assert!(after.get("passphrase_wo").is_null() && after.get("previous_passphrase_wo").is_null());

    // A wrong previous value is caught at plan, on that attribute.
    let wrong = config(
        "third passphrase, long enough",
        Some("not the old one at all"),
    );
    let refused = plan(&p, &after, &wrong, &[]).await;
    assert_eq!(
        warnings_on(&refused.diags, "previous_passphrase_wo").len(),
        1,
        "{:?}",
        refused.diags
    );
    let diags = apply_refused(&p, &after, &refused, &wrong).await;
    assert_eq!(
        errors_on(&diags, "previous_passphrase_wo").len(),
        1,
        "{diags:?}"
    );
}

#[tokio::test]
async fn a_short_passphrase_wo_warns_once_at_plan_without_showing_it() {
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster(&["n1"], &[]));
    let cfg = config("tiny-pw", None);
    assert!(validate(&p, RESOURCE_DEFINITION, &cfg, tf_1_11())
        .await
        .is_empty());
    let planned = plan(&p, &Value::Null, &cfg, &[]).await;
    let warnings: Vec<_> = planned.diags.iter().filter(|d| d.severity == 2).collect();
    assert_eq!(warnings.len(), 1, "{:?}", planned.diags);
    assert_eq!(warnings[0].summary, "Short passphrase");
    assert!(warnings[0].detail.contains("passphrase_wo"));
    assert!(!format!("{:?}", planned.diags).contains("tiny-pw"));
}

#[tokio::test]
async fn a_group_refuses_passphrase_wo_with_any_terraform() {
    let p = BlockstorProvider::with_cluster(Default::default());
    let group = Value::object([
        ("name", Value::string("g")),
        ("passphrase_wo", Value::string(OLD)),
    ]);
    for caps in [None, tf_1_11()] {
        let diags = validate(&p, RESOURCE_GROUP, &group, caps).await;
        let errs = errors_on(&diags, "passphrase_wo");
        assert!(!errs.is_empty(), "{diags:?}");
        assert!(
            errs.iter().any(|e| e.contains("passphrase_env")),
            "{errs:?}"
        );
    }
}

#[tokio::test]
async fn the_schema_marks_the_write_only_attributes_and_only_them() {
    let schema = p_schema().await;
    let mut write_only = Vec::new();
    for (type_name, s) in &schema.resource_schemas {
        for a in &s.block.as_ref().unwrap().attributes {
            if a.write_only {
                assert!(
                    a.optional && a.sensitive && !a.computed,
                    "{type_name}.{}",
                    a.name
                );
                write_only.push(format!("{type_name}.{}", a.name));
            }
        }
    }
    write_only.sort();
    assert_eq!(
        write_only,
        [
            "blockstor_resource_definition.passphrase_wo",
            "blockstor_resource_definition.previous_passphrase_wo",
            "blockstor_resource_group.passphrase_wo",
        ]
    );
}

async fn p_schema() -> tf::get_provider_schema::Response {
    Arc::new(BlockstorProvider::new())
        .get_provider_schema(Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn metadata_and_schema_list_exactly_the_registered_types() {
    let p = BlockstorProvider::new();
    let m = p
        .get_metadata(Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    let resources: Vec<_> = m.resources.iter().map(|r| r.type_name.as_str()).collect();
    let data_sources: Vec<_> = m
        .data_sources
        .iter()
        .map(|d| d.type_name.as_str())
        .collect();
    assert_eq!(
        resources,
        ["blockstor_resource_group", "blockstor_resource_definition"]
    );
    assert_eq!(
        data_sources,
        ["blockstor_nodes", "blockstor_resource_definition"]
    );
    let s = p_schema().await;
    let mut schema_resources: Vec<_> = s.resource_schemas.keys().map(String::as_str).collect();
    let mut schema_data: Vec<_> = s.data_source_schemas.keys().map(String::as_str).collect();
    schema_resources.sort();
    schema_data.sort();
    let (mut resources, mut data_sources) = (resources, data_sources);
    resources.sort();
    data_sources.sort();
    assert_eq!(schema_resources, resources);
    assert_eq!(schema_data, data_sources);
}

/// No type falls through to another's code: an unknown name is an error on every call, and it
/// lists the types the provider has.
#[tokio::test]
async fn an_unknown_type_is_an_error_that_lists_the_registered_types() {
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster(&["n1"], &[]));
    let lists_types = |diags: &[tf::Diagnostic], summary: &str| {
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].summary, summary);
        for t in [
            "blockstor_resource_group",
            "blockstor_resource_definition",
            "blockstor_nodes",
        ] {
            assert!(diags[0].detail.contains(t), "{}", diags[0].detail);
        }
    };
    let unknown = "Unknown resource type blockstor_volume";

    let r = p
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: "blockstor_volume".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    lists_types(&r.diagnostics, unknown);
    assert!(r.planned_state.is_none());

    let r = p
        .apply_resource_change(Request::new(tf::apply_resource_change::Request {
            type_name: "blockstor_volume".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    lists_types(&r.diagnostics, unknown);
    assert!(r.new_state.is_none());

    let r = p
        .import_resource_state(Request::new(tf::import_resource_state::Request {
            type_name: "blockstor_volume".into(),
            id: "db".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    lists_types(&r.diagnostics, unknown);
    assert!(r.imported_resources.is_empty());

    let r = p
        .read_data_source(Request::new(tf::read_data_source::Request {
            type_name: "blockstor_resource_group".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    lists_types(
        &r.diagnostics,
        "Unknown data source type blockstor_resource_group",
    );
    assert!(r.state.is_none());
}

mod replays;
