//! Write-only attributes (`passphrase_wo`, `previous_passphrase_wo`): Terraform ≥ 1.11 sends
//! their value in config at plan and apply and never stores it, provided the provider returns
//! null for them in the planned state, the apply result and the read result.
//!
//! Older clients (Terraform < 1.11, which do not send `write_only_attributes_allowed`) do not
//! know the schema flag: to them it is an ordinary attribute whose value would be planned and
//! stored in clear. So a configuration that sets one is refused unless the client says it
//! supports them ([`check_allowed`]), at validate and again at plan.

use super::diag::{AttrPath, Diagnostics};
use crate::schema::Schema;
use crate::values::Value;

/// The top-level write-only attributes of `schema`.
fn attributes(schema: &Schema) -> impl Iterator<Item = &'static str> + '_ {
    schema
        .block
        .attributes
        .iter()
        .filter(|a| a.write_only)
        .map(|a| a.name)
}

/// Sets every write-only attribute of `value` to null (a null object stays null).
pub fn null_out(value: &mut Value, schema: &Schema) {
    if let Value::Map(_) = value {
        for attr in attributes(schema) {
            value.set(attr, Value::Null);
        }
    }
}

/// Errors for each write-only attribute `config` sets (a value or an unknown: it may turn out
/// set) when the client did not say it supports write-only attributes.
pub fn check_allowed(config: &Value, schema: &Schema, allowed: bool, diags: &mut Diagnostics) {
    if allowed {
        return;
    }
    for attr in attributes(schema) {
        if config.get(attr).is_null() {
            continue;
        }
        let instead = attr.replace("_wo", "_file");
        let instead_env = attr.replace("_wo", "_env");
        diags.error(
            &AttrPath::attr(attr),
            format!("{attr} needs Terraform 1.11 or later"),
            format!("{attr} is write-only: its value must never be stored. This Terraform does not support write-only attributes (they came with Terraform 1.11), so it would keep the value in clear in the plan and the state. Use {instead} (a file on the machine running terraform) or {instead_env} (an environment variable of terraform) instead, or upgrade Terraform to 1.11 or later."),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::registry::registry;
    use crate::resources::resource_definition::TYPE_NAME;
    use crate::schema::Schema;

    fn rd() -> &'static Schema {
        registry().resource(TYPE_NAME).unwrap().schema()
    }

    #[test]
    fn an_old_client_is_refused_a_set_write_only_attribute_with_the_way_out() {
        let rd = rd();
        let config = Value::object([
            ("passphrase_wo", Value::string("s3cret-value")),
            ("previous_passphrase_wo", Value::Unknown),
        ]);
        let mut diags = Diagnostics::default();
        check_allowed(&config, rd, false, &mut diags);
        assert_eq!(diags.0.len(), 2, "{diags:?}");
        let first = &diags.0[0];
        assert_eq!(
            first.attribute,
            Some(AttrPath::attr("passphrase_wo").to_proto())
        );
        assert!(first.summary.contains("passphrase_wo") && first.summary.contains("1.11"));
        for needle in ["passphrase_file", "passphrase_env"] {
            assert!(first.detail.contains(needle), "{}", first.detail);
        }
        assert!(diags.0[1].detail.contains("previous_passphrase_file"));
        assert!(!format!("{diags:?}").contains("s3cret-value"));

        let mut ok = Diagnostics::default();
        check_allowed(&config, rd, true, &mut ok);
        check_allowed(
            &Value::object([("name", Value::string("x"))]),
            rd,
            false,
            &mut ok,
        );
        assert!(ok.0.is_empty());
    }

    #[test]
    fn write_only_attributes_are_nulled_out() {
        let mut v = Value::object([
            ("name", Value::string("db")),
            ("passphrase_wo", Value::string("secret")),
        ]);
        null_out(&mut v, rd());
        assert!(v.get("passphrase_wo").is_null());
        assert_eq!(v.get("name").as_str(), Some("db"));
        let mut null = Value::Null;
        null_out(&mut null, rd());
        assert!(null.is_null());
    }
}
