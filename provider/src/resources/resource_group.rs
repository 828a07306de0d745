//! `blockstor_resource_group`: a pure state resource. There is no controller database: the
//! group's values reach definitions through Terraform's data flow (`resource_group = rg`).

use blockstor_proto::Layer;

use super::diag::{AttrPath, Diagnostics};
use super::shared;
use crate::controller::resolve::Known;
use crate::values::Value;

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
    if let Err(attrs) = crate::controller::secret::CURRENT.source(config) {
        diags.error(
            &AttrPath::attr(attrs[1]),
            format!("Set only one of {}", attrs.join(", ")),
            format!(
                "{} are all set; each is a whole passphrase. Keep one of them.",
                attrs.join(" and ")
            ),
        );
    }
    // Without LUKS the passphrase is unused and gets the "ignored" warning below instead.
    if !matches!(&stack, Known::Some(s) if !s.has(Layer::Luks)) {
        shared::warn_short_passphrase(
            config.get("passphrase"),
            &AttrPath::attr("passphrase"),
            &mut diags,
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
    let diags = validate(config);
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
        let diags = validate(&cfg);
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
        assert!(validate(&long).0.is_empty());
        let unknown = Value::object([("passphrase", Value::Unknown)]);
        assert!(validate(&unknown).0.is_empty());
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
