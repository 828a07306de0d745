//! Call sequences that Terraform ≥ 1.3 sends and Terraform 1.0 (the binary the acceptance
//! tests run) never did, replayed call by call with the values Terraform 1.11.4 sends (read
//! from its source; see docs/design.md, "Terraform 1.3 and later").

use blockstor_proto::tfplugin6::{self as tf, provider_server::Provider};
use tonic::Request;

use super::{apply, config, dv, plan, rd_schema, read, undv, BlockstorProvider, Planned, OLD};
use crate::controller::fake::FakeAgent;
use crate::resources::resource_definition::TYPE_NAME as RESOURCE_DEFINITION;
use crate::values::Value;

/// Terraform's objchange.AssertObjectCompatible, which it runs on the plan it saved against
/// the plan it makes again during apply: every known value of `planned` must be the same in
/// `actual`; an unknown one may become anything. Returns Terraform's complaints, by path.
fn object_compatible(planned: &Value, actual: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    compatible_at("", planned, actual, &mut errors);
    errors
}

fn compatible_at(path: &str, planned: &Value, actual: &Value, errors: &mut Vec<String>) {
    match (planned, actual) {
        (Value::Unknown, _) => {}
        (_, Value::Unknown) => errors.push(format!("{path}: was known, but now unknown")),
        (Value::Map(p), Value::Map(a)) => {
            for (k, v) in p {
                match a.get(k) {
                    Some(av) => compatible_at(&format!("{path}[{k:?}]"), v, av, errors),
                    None => errors.push(format!("{path}: element {k:?} has vanished")),
                }
            }
            for k in a.keys().filter(|k| !p.contains_key(*k)) {
                errors.push(format!("{path}: new element {k:?} has appeared"));
            }
        }
        (Value::List(p), Value::List(a)) => {
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                compatible_at(&format!("{path}[{i}]"), pv, av, errors);
            }
            for i in a.len()..p.len() {
                errors.push(format!("{path}: element {i} has vanished"));
            }
            for i in p.len()..a.len() {
                errors.push(format!("{path}: new element {i} has appeared"));
            }
        }
        (p, a) if p != a => errors.push(format!("{path}: was {p:?}, but now {a:?}")),
        _ => {}
    }
}

#[test]
fn the_compatibility_check_flags_what_terraform_flags() {
    let steps = |n: usize| Value::object([("n1", Value::strings(vec!["step"; n]))]);
    assert!(object_compatible(&Value::Unknown, &steps(1)).is_empty());
    assert!(object_compatible(&steps(1), &steps(1)).is_empty());
    assert_eq!(
        object_compatible(&steps(0), &steps(1)),
        ["[\"n1\"]: new element 0 has appeared"]
    );
    assert_eq!(object_compatible(&steps(1), &Value::Unknown).len(), 1);
    assert_eq!(
        object_compatible(&Value::string("a"), &Value::string("b")).len(),
        1
    );
}

/// ApplyResourceChange of a delete: planned and config null, as Terraform sends it.
async fn destroy(p: &BlockstorProvider, prior: &Value, private: &[u8]) -> Vec<tf::Diagnostic> {
    let s = rd_schema();
    let r = p
        .apply_resource_change(Request::new(tf::apply_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(prior, s),
            planned_state: dv(&Value::Null, s),
            config: dv(&Value::Null, s),
            planned_private: private.to_vec(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(undv(r.new_state, s).is_null(), "the object leaves state");
    r.diagnostics
}

/// The apply's own re-plan (step 5 of a replacement) against the saved plan, then the apply.
async fn replan_after_destroy_and_create(
    p: &BlockstorProvider,
    saved: &Planned,
    cfg: &Value,
) -> Value {
    let again = plan(p, &Value::Null, cfg, &[]).await;
    assert!(again.diags.is_empty(), "{:?}", again.diags);
    let errors = object_compatible(&saved.state, &again.state);
    assert!(
        errors.is_empty(),
        "Provider produced inconsistent final plan: {errors:?}"
    );
    let (state, _) = apply(p, &Value::Null, &again, cfg).await;
    let errors = object_compatible(&again.state, &state);
    assert!(
        errors.is_empty(),
        "inconsistent result after apply: {errors:?}"
    );
    state
}

/// `terraform apply -replace=ADDR`: Terraform plans the update (no change), then, because the
/// address is forced to be replaced, plans the create half with prior null and the first
/// call's private state, while the agent still holds the volume. Apply destroys, plans the
/// create again (the agent now holds nothing) and requires the saved plan's known values.
#[tokio::test]
async fn replace_plans_a_create_whose_steps_the_destroy_cannot_change() {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
    let cfg = config(OLD, None);
    let created = plan(&p, &Value::Null, &cfg, &[]).await;
    let (state, private) = apply(&p, &Value::Null, &created, &cfg).await;

    // Plan: ReadResource, PlanResourceChange(prior=S), then the create half of the replace.
    let state = read(&p, &state, &private).await;
    let update = plan(&p, &state, &cfg, &private).await;
    assert!(update.diags.is_empty(), "{:?}", update.diags);
    let saved = plan(&p, &Value::Null, &cfg, &update.private).await;
    assert!(saved.diags.is_empty(), "{:?}", saved.diags);

    // Apply: the destroy first, then the create.
    let diags = destroy(&p, &state, &private).await;
    assert!(diags.is_empty(), "{diags:?}");
    assert!(agent.resources.lock().unwrap().is_empty(), "destroyed");
    let state = replan_after_destroy_and_create(&p, &saved, &cfg).await;
    assert_eq!(
        state
            .get("planned_steps")
            .get("n1")
            .as_list()
            .map(<[Value]>::len),
        Some(2),
        "the create's steps, as previewed after the destroy: {state:?}"
    );
    assert_eq!(agent.resources.lock().unwrap().len(), 1, "created again");
}

/// `terraform taint` then apply: the tainted object makes the FIRST plan call use prior null
/// and no private state (no second call); the apply is the same as for `-replace`.
#[tokio::test]
async fn taint_plans_a_create_whose_steps_the_destroy_cannot_change() {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
    let cfg = config(OLD, None);
    let created = plan(&p, &Value::Null, &cfg, &[]).await;
    let (state, private) = apply(&p, &Value::Null, &created, &cfg).await;

    let state = read(&p, &state, &private).await;
    let saved = plan(&p, &Value::Null, &cfg, &[]).await;
    assert!(saved.diags.is_empty(), "{:?}", saved.diags);

    let diags = destroy(&p, &state, &private).await;
    assert!(diags.is_empty(), "{diags:?}");
    replan_after_destroy_and_create(&p, &saved, &cfg).await;
    assert_eq!(agent.resources.lock().unwrap().len(), 1, "created again");
}

/// PlanResourceChange of a destroy: proposed and config null, as Terraform's `planDestroy`
/// sends it.
async fn plan_destroy(p: &BlockstorProvider, prior: &Value, private: &[u8]) -> Planned {
    let s = rd_schema();
    let r = p
        .plan_resource_change(Request::new(tf::plan_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(prior, s),
            proposed_new_state: dv(&Value::Null, s),
            config: dv(&Value::Null, s),
            prior_private: private.to_vec(),
            provider_meta: None,
            client_capabilities: super::tf_1_11(),
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

fn sized(mut cfg: Value, size: &str) -> Value {
    cfg.set(
        "volume",
        Value::List(vec![Value::object([
            ("number", Value::int(0)),
            ("size", Value::string(size)),
        ])]),
    );
    cfg
}

/// `terraform destroy` (≥ 1.3) with a configuration that changes what cannot change: first a
/// normal plan (ReadResource, PlanResourceChange with the configuration) whose errors would
/// stop the destroy, then the destroy plan and apply.
async fn destroy_is_not_stopped_by(changed: Value) {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
    let cfg = sized(config(OLD, None), "128MiB");
    let created = plan(&p, &Value::Null, &cfg, &[]).await;
    let (state, private) = apply(&p, &Value::Null, &created, &cfg).await;

    let state = read(&p, &state, &private).await;
    let refresh = plan(&p, &state, &changed, &private).await;
    let errors: Vec<_> = refresh.diags.iter().filter(|d| d.severity == 1).collect();
    assert!(errors.is_empty(), "the pre-destroy plan fails: {errors:?}");
    assert!(
        refresh
            .diags
            .iter()
            .any(|d| d.severity == 2 && d.summary.starts_with("Apply will fail")),
        "plan still says the change cannot be applied: {:?}",
        refresh.diags
    );

    let planned = plan_destroy(&p, &state, &private).await;
    assert!(planned.diags.is_empty(), "{:?}", planned.diags);
    assert!(planned.state.is_null());
    let diags = destroy(&p, &state, &planned.private).await;
    assert!(diags.is_empty(), "{diags:?}");
    assert!(agent
        .calls
        .lock()
        .unwrap()
        .contains(&"delete db".to_owned()));
    assert!(agent.resources.lock().unwrap().is_empty());
}

#[tokio::test]
async fn destroy_is_not_stopped_by_a_rotation_without_the_old_passphrase() {
    destroy_is_not_stopped_by(sized(config(super::NEW, None), "128MiB")).await;
}

#[tokio::test]
async fn destroy_is_not_stopped_by_a_shrink() {
    destroy_is_not_stopped_by(sized(config(OLD, None), "64MiB")).await;
}

/// The same changes applied as an update: refused with the error, before any agent call.
#[tokio::test]
async fn an_update_that_cannot_be_applied_fails_at_apply_before_any_agent_call() {
    for (changed, attr) in [
        (sized(config(super::NEW, None), "128MiB"), "passphrase_wo"),
        (sized(config(OLD, None), "64MiB"), "volume"),
    ] {
        let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
        let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
        let cfg = sized(config(OLD, None), "128MiB");
        let created = plan(&p, &Value::Null, &cfg, &[]).await;
        let (state, private) = apply(&p, &Value::Null, &created, &cfg).await;
        let state = read(&p, &state, &private).await;
        let planned = plan(&p, &state, &changed, &private).await;
        let calls = agent.calls.lock().unwrap().clone();
        let diags = super::apply_refused(&p, &state, &planned, &changed).await;
        let errors: Vec<_> = diags.iter().filter(|d| d.severity == 1).collect();
        assert_eq!(errors.len(), 1, "{attr}: {diags:?}");
        let at = errors[0].attribute.as_ref().and_then(|a| a.steps.first());
        assert_eq!(
            at.and_then(|s| s.selector.clone()),
            Some(tf::attribute_path::step::Selector::AttributeName(
                attr.into()
            )),
            "{attr}: {errors:?}"
        );
        assert_eq!(
            *agent.calls.lock().unwrap(),
            calls,
            "{attr}: no agent asked"
        );
    }
}

/// The configuration `terraform plan -generate-config-out` writes from imported state
/// (internal/genconfig): computed-only attributes left out, sensitive ones `null`, a sensitive
/// nested attribute `{}` (every field null), else the state's values.
fn generated_config(state: &Value) -> Value {
    use crate::schema::{AttrType, Mode};
    let mut cfg = state.clone();
    for a in &rd_schema().block.attributes {
        let generated = match (&a.ty, a.mode) {
            (_, Mode::Computed) => Value::Null,
            _ if a.sensitive => match &a.ty {
                AttrType::NestedSingle(inner) => {
                    Value::object(inner.iter().map(|i| (i.name, Value::Null)))
                }
                AttrType::Plain(_) => Value::Null,
            },
            (AttrType::NestedSingle(inner), _) if !state.get(a.name).is_null() => {
                let mut nested = state.get(a.name).clone();
                for i in inner.iter().filter(|i| i.sensitive) {
                    nested.set(i.name, Value::Null);
                }
                nested
            }
            _ => state.get(a.name).clone(),
        };
        cfg.set(a.name, generated);
    }
    crate::values::conform(cfg, rd_schema().ty())
}

/// An `import {}` block with `-generate-config-out`: ImportResourceState, ReadResource, then
/// the plan of the generated configuration must be a clean import (no change).
#[tokio::test]
async fn generated_config_of_an_import_plans_no_change() {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
    let mut cfg = sized(config(OLD, None), "64MiB");
    cfg.set("passphrase_wo", Value::Null);
    cfg.set("layer_stack", Value::strings(["STORAGE"]));
    let created = plan(&p, &Value::Null, &cfg, &[]).await;
    apply(&p, &Value::Null, &created, &cfg).await;

    let s = rd_schema();
    let imported = p
        .import_resource_state(Request::new(tf::import_resource_state::Request {
            type_name: RESOURCE_DEFINITION.into(),
            id: "db".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        imported.diagnostics.is_empty(),
        "{:?}",
        imported.diagnostics
    );
    let resource = imported.imported_resources.into_iter().next().unwrap();
    let state = undv(resource.state, s);
    let state = read(&p, &state, &resource.private).await;

    let generated = generated_config(&state);
    let planned = plan(&p, &state, &generated, &resource.private).await;
    assert!(planned.diags.is_empty(), "{:?}", planned.diags);
    assert_eq!(planned.state, state, "a clean import plans no change");
}

/// A rotation whose apply fails part-way: state keeps the old fingerprint, so the old
/// passphrase is still needed, and the message says to keep it until an apply succeeds.
#[tokio::test]
async fn after_a_failed_rotation_state_and_message_both_still_need_the_old_passphrase() {
    let agent = FakeAgent::new("n1", &[("files", 1 << 20)]);
    let p = BlockstorProvider::with_cluster(FakeAgent::cluster_of([agent.clone()]));
    let cfg = config(OLD, None);
    let created = plan(&p, &Value::Null, &cfg, &[]).await;
    let (state, private) = apply(&p, &Value::Null, &created, &cfg).await;
    let state = read(&p, &state, &private).await;

    let rotating = config(super::NEW, Some(OLD));
    let planned = plan(&p, &state, &rotating, &private).await;
    assert!(planned.diags.is_empty(), "{:?}", planned.diags);
    *agent.fail_apply.lock().unwrap() = Some("luks_rotation_failed");
    let s = rd_schema();
    let r = p
        .apply_resource_change(Request::new(tf::apply_resource_change::Request {
            type_name: RESOURCE_DEFINITION.into(),
            prior_state: dv(&state, s),
            planned_state: dv(&planned.state, s),
            config: dv(&rotating, s),
            planned_private: planned.private.clone(),
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.iter().any(|d| d.severity == 1));
    let after = undv(r.new_state, s);
    assert_eq!(
        after.get("passphrase_fingerprint"),
        state.get("passphrase_fingerprint"),
        "state keeps the old fingerprint"
    );
    *agent.fail_apply.lock().unwrap() = None;

    // Removing previous_passphrase_wo now is refused, and the message says why.
    let removed = plan(&p, &after, &config(super::NEW, None), &r.private).await;
    let warning = removed
        .diags
        .iter()
        .find(|d| d.severity == 2 && d.summary.contains("rotation needs the old one"))
        .expect("the rotation still needs the old passphrase");
    assert!(
        warning.detail.contains("until an apply succeeds"),
        "{}",
        warning.detail
    );
    assert!(!warning.detail.contains("apply, then remove"));

    // Keeping it set, the next apply finishes the rotation.
    let again = plan(&p, &after, &rotating, &r.private).await;
    assert!(again.diags.is_empty(), "{:?}", again.diags);
    let (done, _) = apply(&p, &after, &again, &rotating).await;
    let fp = done.get("passphrase_fingerprint").as_str().unwrap();
    assert!(crate::resources::resource_definition::fingerprint::matches(
        fp,
        super::NEW
    ));
}
