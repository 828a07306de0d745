//! `blockstor_resource_group`: a pure state resource. There is no controller database: the
//! group's values reach definitions through Terraform's data flow (`resource_group = rg`).

pub mod schema;

use blockstor_proto::Layer;

use super::diag::{AttrPath, Diagnostics};
use super::resource::{Applied, ApplyRequest, Cx, Imported, PlanRequest, Planned, Resource};
use super::shared;
use crate::controller::resolve::{self, Known};
use crate::controller::secret;
use crate::schema::Schema;
use crate::values::Value;

/// The Terraform type name.
pub const TYPE_NAME: &str = "blockstor_resource_group";

/// `blockstor_resource_group`.
pub struct ResourceGroup {
    schema: Schema,
}

impl ResourceGroup {
    pub fn new() -> Self {
        ResourceGroup {
            schema: schema::schema(),
        }
    }
}

impl Default for ResourceGroup {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Resource for ResourceGroup {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        validate(config)
    }

    async fn plan(&self, _cx: &Cx, r: PlanRequest<'_>) -> Planned {
        let (state, requires_replace, diags) = plan(r.prior, r.proposed, r.config);
        Planned {
            state,
            requires_replace,
            private: r.prior_private.to_vec(),
            diags,
        }
    }

    /// Nothing to build: the planned state is the group.
    async fn apply(&self, _cx: &Cx, r: ApplyRequest<'_>) -> Applied {
        Applied {
            state: r.planned.clone(),
            private: r.planned_private.to_vec(),
            diags: Diagnostics::default(),
        }
    }

    /// The id is the name; every other attribute comes from the configuration at the next plan.
    async fn import(&self, _cx: &Cx, id: &str) -> Imported {
        Imported {
            state: Value::object([("id", Value::string(id)), ("name", Value::string(id))]),
            private: Vec::new(),
            diags: Diagnostics::default(),
        }
    }
}

/// Validates a group configuration; unknown values pass.
pub fn validate(config: &Value) -> Diagnostics {
    let mut diags = Diagnostics::default();
    shared::check_name(config.get("name"), &AttrPath::attr("name"), &mut diags);
    let stack = shared::check_layer_stack(
        config.get("layer_stack"),
        &AttrPath::attr("layer_stack"),
        &mut diags,
    );
    shared::check_pool(
        config.get("storage_pool"),
        &AttrPath::attr("storage_pool"),
        &mut diags,
    );
    shared::check_place_count(
        config.get("place_count"),
        &AttrPath::attr("place_count"),
        &mut diags,
    );
    shared::check_props(config.get("props"), &AttrPath::attr("props"), &mut diags);
    if !config.get("passphrase_wo").is_null() {
        diags.error(
            &AttrPath::attr("passphrase_wo"),
            "A resource group cannot take passphrase_wo",
            "Definitions read a group through its Terraform state, and Terraform never stores a write-only value, so no definition could inherit it. Set passphrase_file or passphrase_env on the group (state keeps only the path or name), or set passphrase_wo on each blockstor_resource_definition instead.",
        );
    }
    if let Err(attrs) = secret::GROUP.source(config) {
        diags.error(
            &AttrPath::attr(attrs[1]),
            format!("Set only one of {}", attrs.join(", ")),
            format!(
                "{} are all set; each is a whole passphrase. Keep one of them.",
                attrs.join(" and ")
            ),
        );
    }
    if let (Known::Some(stack), Value::String(_)) = (stack, config.get("passphrase")) {
        if !stack.has(Layer::Luks) {
            diags.warning(
                &AttrPath::attr("passphrase"),
                "passphrase is ignored without LUKS",
                format!("The group's layer_stack {stack} has no LUKS layer; definitions that inherit it will not use the passphrase."),
            );
        }
    }
    diags
}

/// Plans a group: `id` is the name; a new name replaces the group.
pub fn plan(
    prior: &Value,
    proposed: &Value,
    config: &Value,
) -> (Value, Vec<AttrPath>, Diagnostics) {
    if proposed.is_null() {
        return (Value::Null, Vec::new(), Diagnostics::default());
    }
    let mut diags = validate(config);
    // At plan only, where references are readable and values known, so it shows once. Without
    // LUKS the passphrase is unused and validate's "ignored" warning says so instead.
    let stack = resolve::layer_stack(config.get("layer_stack"));
    if !matches!(&stack, Known::Some(Ok(s)) if !s.has(Layer::Luks)) {
        shared::warn_short_passphrase(config, &secret::GROUP, &mut diags);
    }
    let mut planned = proposed.clone();
    planned.set("id", config.get("name").clone());
    let mut replace = Vec::new();
    if !prior.is_null() && prior.get("name") != config.get("name") {
        replace.push(AttrPath::attr("name"));
    }
    (planned, replace, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_the_name_and_renaming_replaces() {
        let cfg = Value::object([("name", Value::string("encrypted"))]);
        let (planned, replace, diags) = plan(&Value::Null, &cfg, &cfg);
        assert_eq!(planned.get("id").as_str(), Some("encrypted"));
        assert!(replace.is_empty() && !diags.has_errors());
        let renamed = Value::object([("name", Value::string("other"))]);
        let (_, replace, _) = plan(&planned, &renamed, &renamed);
        assert_eq!(replace, [AttrPath::attr("name")]);
    }

    #[test]
    fn short_group_passphrase_warns_on_passphrase_without_revealing_it() {
        let cfg = Value::object([
            ("layer_stack", Value::strings(["LUKS", "STORAGE"])),
            ("passphrase", Value::string("hunter2")),
        ]);
        assert!(validate(&cfg).0.is_empty(), "warned at plan only, so once");
        let (_, _, diags) = plan(&Value::Null, &cfg, &cfg);
        assert!(!diags.has_errors());
        assert_eq!(diags.0.len(), 1, "{diags:?}");
        let warning = &diags.0[0];
        assert_eq!(warning.severity, 2, "severity WARNING");
        assert_eq!(warning.summary, "Short passphrase");
        assert_eq!(
            warning.attribute,
            Some(AttrPath::attr("passphrase").to_proto())
        );
        assert!(!warning.detail.contains("hunter2") && !warning.summary.contains("hunter2"));

        let long = Value::object([
            ("layer_stack", Value::strings(["LUKS", "STORAGE"])),
            ("passphrase", Value::string("twelve-chars")),
        ]);
        assert!(plan(&Value::Null, &long, &long).2 .0.is_empty());
        let unknown = Value::object([("passphrase", Value::Unknown)]);
        assert!(plan(&Value::Null, &unknown, &unknown).2 .0.is_empty());

        std::env::set_var("BLOCKSTOR_TEST_RG_SHORT_ENV", "hunter2");
        let env = Value::object([
            ("layer_stack", Value::strings(["LUKS", "STORAGE"])),
            (
                "passphrase_env",
                Value::string("BLOCKSTOR_TEST_RG_SHORT_ENV"),
            ),
        ]);
        let (_, _, diags) = plan(&Value::Null, &env, &env);
        assert_eq!(
            diags.0[0].attribute,
            Some(AttrPath::attr("passphrase_env").to_proto())
        );
        assert!(!format!("{diags:?}").contains("hunter2"));
    }

    #[test]
    fn a_group_refuses_passphrase_wo_and_says_what_works() {
        let cfg = Value::object([("passphrase_wo", Value::string("group-secret"))]);
        let diags = validate(&cfg);
        assert!(diags.has_errors());
        let d = &diags.0[0];
        assert_eq!(
            d.attribute,
            Some(AttrPath::attr("passphrase_wo").to_proto())
        );
        for needle in [
            "passphrase_file",
            "passphrase_env",
            "blockstor_resource_definition",
        ] {
            assert!(d.detail.contains(needle), "{}", d.detail);
        }
        assert!(!format!("{diags:?}").contains("group-secret"));
    }

    #[tokio::test]
    async fn import_takes_the_id_as_name_and_apply_keeps_the_plan() {
        let rg = ResourceGroup::new();
        let cx = Cx::default();
        let imported = rg.import(&cx, "encrypted").await;
        assert_eq!(imported.state.get("id").as_str(), Some("encrypted"));
        assert_eq!(imported.state.get("name").as_str(), Some("encrypted"));
        assert!(imported.private.is_empty() && imported.diags.0.is_empty());

        let cfg = Value::object([("name", Value::string("encrypted"))]);
        let planned = rg
            .plan(
                &cx,
                PlanRequest {
                    prior: &Value::Null,
                    proposed: &cfg,
                    config: &cfg,
                    prior_private: b"kept",
                },
            )
            .await;
        assert_eq!(planned.private, b"kept");
        let applied = rg
            .apply(
                &cx,
                ApplyRequest {
                    prior: &Value::Null,
                    planned: &planned.state,
                    config: &cfg,
                    planned_private: &planned.private,
                },
            )
            .await;
        assert_eq!(applied.state, planned.state);
        assert_eq!(applied.private, b"kept");
        assert!(applied.diags.0.is_empty());
    }

    #[test]
    fn invalid_stack_is_an_error_on_layer_stack() {
        let cfg = Value::object([("layer_stack", Value::strings(["LUKS", "DRBD"]))]);
        let diags = validate(&cfg);
        assert!(diags.has_errors());
        assert_eq!(
            diags.0[0].attribute,
            Some(AttrPath::attr("layer_stack").to_proto())
        );
    }
}
