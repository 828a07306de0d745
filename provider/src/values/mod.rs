//! Terraform values: the typed model of a `DynamicValue` and its codecs.
//!
//! Terraform sends every object with all of its schema attributes present, a null as nil, and a
//! value not yet known as "unknown". [`Value`] models exactly that; [`Ty`] is the cty type that
//! directs decoding (a msgpack map may be a cty map or object, a number may be sent as a string).
//!
//! * [`msgpack`]: the wire codec Terraform uses for every request and reply.
//! * [`json`]: decode-only, for `UpgradeResourceState.raw_state` and the rare JSON DynamicValue.

pub mod json;
pub mod msgpack;

use std::collections::BTreeMap;
use std::fmt;

/// A cty type, as written in `Schema.Attribute.type` (`"string"`, `["list","string"]`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Number,
    String,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>),
    Object(BTreeMap<String, Ty>),
    /// `"dynamic"`: on the wire a 2-element array of the JSON type and the value.
    Dynamic,
}

impl Ty {
    /// `list(elem)`.
    pub fn list(elem: Ty) -> Ty {
        Ty::List(Box::new(elem))
    }

    /// `map(elem)`.
    pub fn map(elem: Ty) -> Ty {
        Ty::Map(Box::new(elem))
    }

    /// `object({..})` from `(name, type)` pairs.
    pub fn object<'a>(attrs: impl IntoIterator<Item = (&'a str, Ty)>) -> Ty {
        Ty::Object(attrs.into_iter().map(|(k, t)| (k.to_owned(), t)).collect())
    }

    /// The cty JSON type, the form Terraform expects in `Schema.Attribute.type`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Ty::Bool => json!("bool"),
            Ty::Number => json!("number"),
            Ty::String => json!("string"),
            Ty::Dynamic => json!("dynamic"),
            Ty::List(e) => json!(["list", e.to_json()]),
            Ty::Set(e) => json!(["set", e.to_json()]),
            Ty::Map(e) => json!(["map", e.to_json()]),
            Ty::Object(attrs) => {
                let fields: serde_json::Map<String, serde_json::Value> = attrs
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_json()))
                    .collect();
                json!(["object", fields])
            }
        }
    }
}

/// A cty number. Terraform sends integers, float64s, or decimal strings for big numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
    /// A decimal that fits neither: kept verbatim and sent back as a string.
    Decimal(String),
}

impl Number {
    /// The value as an `i64` when it is a whole number in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Number::Float(_) => None,
            Number::Decimal(s) => s.parse().ok(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
            Number::Decimal(s) => f.write_str(s),
        }
    }
}

/// A Terraform value. Lists, sets and tuples are `List`; maps and objects are `Map`: the
/// schema's [`Ty`] says which, so the model stays small.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    /// Not known until apply (references to attributes computed later).
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// True when neither this value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(items) => items.iter().all(Value::is_wholly_known),
            Value::Map(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// An attribute of an object (or entry of a map); `Null` when absent or when `self` is not
    /// a map, and `Unknown` when `self` is unknown, so callers can chain lookups.
    pub fn get(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        static UNKNOWN: Value = Value::Unknown;
        match self {
            Value::Map(m) => m.get(key).unwrap_or(&NULL),
            Value::Unknown => &UNKNOWN,
            _ => &NULL,
        }
    }

    /// The `i`th element of a list; `Null` when absent.
    pub fn get_index(&self, i: usize) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Value::List(items) => items.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// Sets an attribute; `self` must be a map (an object).
    pub fn set(&mut self, key: &str, value: Value) {
        if let Value::Map(m) = self {
            m.insert(key.to_owned(), value);
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A known list of known strings; `None` if null, unknown, or any element is not a string.
    pub fn as_string_list(&self) -> Option<Vec<String>> {
        self.as_list()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// A known map of known strings; `None` if null, unknown, or any value is not a string.
    pub fn as_string_map(&self) -> Option<BTreeMap<String, String>> {
        self.as_map()?
            .iter()
            .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect()
    }

    /// `Value::String`.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// `Value::Number` from an integer.
    pub fn int(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }

    /// A list of strings.
    pub fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(
            items
                .into_iter()
                .map(|s| Value::string(s.as_ref()))
                .collect(),
        )
    }

    /// An object from `(name, value)` pairs.
    pub fn object<'a>(attrs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Map(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

/// Why a value could not be decoded against its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    /// Where in the value, e.g. `.volume[0].size`.
    pub path: String,
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Self {
        DecodeError {
            path: if path.is_empty() {
                "(root)".to_owned()
            } else {
                path.to_owned()
            },
            message: message.into(),
        }
    }
}

/// Where a decoder is in the value, rendered (`.volume[0].size`) only for an error: building
/// the string for every attribute was a tenth of a plan's CPU at hundreds of resources.
#[derive(Clone, Copy)]
pub(crate) enum DecodePath<'a> {
    Root,
    Attr(&'a DecodePath<'a>, &'a str),
    Index(&'a DecodePath<'a>, usize),
}

impl std::fmt::Display for DecodePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodePath::Root => Ok(()),
            DecodePath::Attr(parent, k) => write!(f, "{parent}.{k}"),
            DecodePath::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A [`DecodeError`] at `path`.
pub(crate) fn error_at(path: &DecodePath<'_>, message: impl Into<String>) -> DecodeError {
    DecodeError::new(&path.to_string(), message)
}

/// Makes every object carry exactly its type's attributes: missing ones become null and
/// unknown keys are dropped. Used after decoding and before encoding, so a reply always
/// conforms to the schema whatever a resource put into it.
pub fn conform(mut value: Value, ty: &Ty) -> Value {
    conform_in_place(&mut value, ty);
    value
}

/// [`conform`] without rebuilding the maps: at hundreds of resources per plan, copying every
/// object's keys into new maps was a seventh of the provider's CPU.
fn conform_in_place(value: &mut Value, ty: &Ty) {
    match (value, ty) {
        (Value::Map(m), Ty::Object(attrs)) => {
            m.retain(|k, _| attrs.contains_key(k));
            for (k, t) in attrs {
                match m.get_mut(k) {
                    Some(v) => conform_in_place(v, t),
                    None => {
                        let mut v = Value::default();
                        conform_in_place(&mut v, t);
                        m.insert(k.clone(), v);
                    }
                }
            }
        }
        (Value::Map(m), Ty::Map(elem)) => m.values_mut().for_each(|v| conform_in_place(v, elem)),
        (Value::List(items), Ty::List(elem) | Ty::Set(elem)) => {
            items.iter_mut().for_each(|v| conform_in_place(v, elem))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conform_adds_missing_attributes_as_null_and_drops_extra_keys() {
        let ty = Ty::object([("a", Ty::String), ("b", Ty::list(Ty::Number))]);
        let v = Value::object([("a", Value::string("x")), ("zz", Value::Bool(true))]);
        assert_eq!(
            conform(v, &ty),
            Value::object([("a", Value::string("x")), ("b", Value::Null)])
        );
    }

    #[test]
    fn lookups_through_unknown_stay_unknown() {
        assert!(Value::Unknown.get("x").is_unknown());
        assert!(Value::Null.get("x").is_null());
        assert!(!Value::object([("a", Value::Unknown)]).is_wholly_known());
    }

    #[test]
    fn cty_json_types_match_terraform_spelling() {
        let ty = Ty::object([("n", Ty::list(Ty::String))]);
        assert_eq!(
            ty.to_json().to_string(),
            r#"["object",{"n":["list","string"]}]"#
        );
    }
}
