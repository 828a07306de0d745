//! Resolution of a definition's effective settings: the RD's own value, then its RG's, then the
//! default (docs/design.md §1). Works on partially unknown configuration: an input that is not known
//! yet makes the result [`Known::Unknown`], never a guess.

use std::collections::BTreeMap;
use std::fmt;

use blockstor_proto::wire::Passphrase;
use blockstor_proto::{Layer, LayerStack, LayerStackError};

use super::secret::Passphrases;
use crate::values::Value;

pub use super::known::Known;

/// Reads a string attribute.
pub fn string(v: &Value) -> Known<String> {
    match v {
        Value::Null => Known::Null,
        Value::String(s) => Known::Some(s.clone()),
        _ => Known::Unknown,
    }
}

/// Reads a list-of-strings attribute; unknown if any element is.
pub fn strings(v: &Value) -> Known<Vec<String>> {
    match v {
        Value::Null => Known::Null,
        v => v.as_string_list().map_or(Known::Unknown, Known::Some),
    }
}

/// Reads a whole-number attribute.
pub fn number(v: &Value) -> Known<i64> {
    match v {
        Value::Null => Known::Null,
        v => v.as_i64().map_or(Known::Unknown, Known::Some),
    }
}

/// Reads a map-of-strings attribute.
pub fn string_map(v: &Value) -> Known<BTreeMap<String, String>> {
    match v {
        Value::Null => Known::Null,
        v => v.as_string_map().map_or(Known::Unknown, Known::Some),
    }
}

/// Parses a `layer_stack` attribute value.
pub fn layer_stack(v: &Value) -> Known<Result<LayerStack, LayerStackError>> {
    strings(v).map(|names| LayerStack::parse(&names))
}

/// The effective settings of a resource definition, from its config (or planned) object.
#[derive(Clone)]
pub struct Effective {
    pub layer_stack: Known<LayerStack>,
    /// The passphrase, with `passphrase_file`/`passphrase_env` read on this machine.
    pub passphrase: Known<Passphrase>,
    pub place_count: Known<i64>,
    pub storage_pool: Known<String>,
    /// RG props overlaid with RD props.
    pub props: Known<BTreeMap<String, String>>,
}

impl fmt::Debug for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passphrase = match &self.passphrase {
            Known::Null => "null",
            Known::Unknown => "unknown",
            Known::Some(_) => "[redacted]",
        };
        f.debug_struct("Effective")
            .field("layer_stack", &self.layer_stack)
            .field("passphrase", &format_args!("{passphrase}"))
            .field("place_count", &self.place_count)
            .field("storage_pool", &self.storage_pool)
            .field("props", &self.props)
            .finish()
    }
}

/// Default place count: one node without DRBD, two with it.
pub fn default_place_count(stack: &LayerStack) -> i64 {
    if stack.has(Layer::Drbd) {
        2
    } else {
        1
    }
}

/// Resolves a definition object (config, proposed or planned) against its `resource_group`,
/// with its passphrase sources as read once by the caller. Invalid stacks resolve to unknown
/// here; validation reports them.
pub fn effective(rd: &Value, secrets: &Passphrases) -> Effective {
    let rg = rd.get("resource_group");
    let stack_of = |v: &Value| match layer_stack(v) {
        Known::Some(Ok(s)) => Known::Some(s),
        Known::Some(Err(_)) | Known::Unknown => Known::Unknown,
        Known::Null => Known::Null,
    };
    let layer_stack = match stack_of(rd.get("layer_stack")).or(stack_of(rg.get("layer_stack"))) {
        Known::Null => Known::Some(LayerStack::default()),
        other => other,
    };
    let place_count = match (number(rg.get("place_count")), &layer_stack) {
        (Known::Null, Known::Some(stack)) => Known::Some(default_place_count(stack)),
        (Known::Null, _) => Known::Unknown,
        (other, _) => other,
    };
    Effective {
        layer_stack,
        passphrase: secrets.current(),
        place_count,
        storage_pool: string(rg.get("storage_pool")),
        props: props(rd),
    }
}

/// The group's props overlaid with the definition's own.
pub fn props(rd: &Value) -> Known<BTreeMap<String, String>> {
    let rg = rd.get("resource_group");
    match (string_map(rg.get("props")), string_map(rd.get("props"))) {
        (Known::Unknown, _) | (_, Known::Unknown) => Known::Unknown,
        (rg_props, rd_props) => {
            let mut merged = rg_props.known().unwrap_or_default();
            merged.extend(rd_props.known().unwrap_or_default());
            Known::Some(merged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(stack: Value, rg: Value) -> Value {
        Value::object([("layer_stack", stack), ("resource_group", rg)])
    }

    /// Resolves `rd` with its own passphrase sources, read once.
    fn effective(rd: &Value) -> Effective {
        super::effective(rd, &Passphrases::read(rd))
    }

    fn exposed(k: Known<Passphrase>) -> Known<String> {
        k.map(|p| p.expose().to_owned())
    }

    #[test]
    fn rd_stack_wins_over_rg_then_default() {
        let rg = Value::object([("layer_stack", Value::strings(["DRBD", "LUKS"]))]);
        let e = effective(&rd(Value::strings(["storage"]), rg.clone()));
        assert_eq!(e.layer_stack.known().unwrap().names(), ["STORAGE"]);
        let e = effective(&rd(Value::Null, rg));
        assert_eq!(
            e.layer_stack.known().unwrap().names(),
            ["DRBD", "LUKS", "STORAGE"]
        );
        let e = effective(&rd(Value::Null, Value::Null));
        assert_eq!(
            e.layer_stack.clone().known().unwrap().names(),
            ["DRBD", "STORAGE"]
        );
        assert_eq!(e.place_count, Known::Some(2));
    }

    #[test]
    fn unknown_resource_group_makes_the_stack_unknown_not_default() {
        let e = effective(&rd(Value::Null, Value::Unknown));
        assert!(e.layer_stack.is_unknown());
        assert!(e.passphrase.is_unknown());
    }

    #[test]
    fn passphrase_comes_from_rd_then_rg() {
        let rg = Value::object([("passphrase", Value::string("rg-secret"))]);
        let mut v = rd(Value::Null, rg);
        assert_eq!(
            exposed(effective(&v).passphrase),
            Known::Some("rg-secret".into())
        );
        v.set("passphrase", Value::string("rd-secret"));
        assert_eq!(
            exposed(effective(&v).passphrase),
            Known::Some("rd-secret".into())
        );
    }

    #[test]
    fn storage_only_stacks_default_to_one_node() {
        let e = effective(&rd(Value::strings(["LUKS", "STORAGE"]), Value::Null));
        assert_eq!(e.place_count, Known::Some(1));
    }
}
