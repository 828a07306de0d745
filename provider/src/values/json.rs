//! JSON decoding of Terraform values, type-directed like msgpack. Decode only: Terraform
//! accepts msgpack replies everywhere, so we never write JSON.
//!
//! Used for `UpgradeResourceState.raw_state.json` (the state file's `attributes` object, whose
//! numbers may exceed 64 bits) and for a `DynamicValue` whose msgpack field is empty.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{conform, error_at, DecodeError, DecodePath as Path, Number, Ty, Value};

/// Decodes JSON `bytes` as a value of type `ty`; keys not in an object type are dropped and
/// missing attributes become null.
pub fn decode(bytes: &[u8], ty: &Ty) -> Result<Value, DecodeError> {
    let json: Json = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new("", format!("invalid JSON: {e}")))?;
    from_json(json, ty, &Path::Root).map(|v| conform(v, ty))
}

/// Parses a cty JSON type (`"string"`, `["list","string"]`, `["object",{..}]`).
pub fn ty_from_json(json: &Json) -> Option<Ty> {
    match json {
        Json::String(s) => match s.as_str() {
            "bool" => Some(Ty::Bool),
            "number" => Some(Ty::Number),
            "string" => Some(Ty::String),
            "dynamic" => Some(Ty::Dynamic),
            _ => None,
        },
        Json::Array(parts) if parts.len() == 2 => {
            let kind = parts[0].as_str()?;
            match kind {
                "list" => Some(Ty::list(ty_from_json(&parts[1])?)),
                "set" => Some(Ty::Set(Box::new(ty_from_json(&parts[1])?))),
                "map" => Some(Ty::map(ty_from_json(&parts[1])?)),
                "object" => {
                    let attrs = parts[1]
                        .as_object()?
                        .iter()
                        .map(|(k, t)| Some((k.clone(), ty_from_json(t)?)))
                        .collect::<Option<BTreeMap<_, _>>>()?;
                    Some(Ty::Object(attrs))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn from_json(json: Json, ty: &Ty, path: &Path<'_>) -> Result<Value, DecodeError> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let wrong = |j: &Json| error_at(path, format!("expected {}, got {j}", ty.to_json()));
    Ok(match ty {
        Ty::Bool => Value::Bool(json.as_bool().ok_or_else(|| wrong(&json))?),
        Ty::String => match json {
            Json::String(s) => Value::String(s),
            other => return Err(wrong(&other)),
        },
        Ty::Number => match json {
            Json::Number(n) => Value::Number(match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Number::Int(i),
                (None, Some(f)) if n.is_f64() => Number::Float(f),
                _ => Number::Decimal(n.to_string()),
            }),
            Json::String(s) => Value::Number(Number::Decimal(s)),
            other => return Err(wrong(&other)),
        },
        Ty::List(elem) | Ty::Set(elem) => match json {
            Json::Array(items) => Value::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| from_json(v, elem, &Path::Index(path, i)))
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(wrong(&other)),
        },
        Ty::Map(elem) => match json {
            Json::Object(m) => Value::Map(
                m.into_iter()
                    .map(|(k, v)| {
                        let v = from_json(v, elem, &Path::Attr(path, &k))?;
                        Ok((k, v))
                    })
                    .collect::<Result<_, DecodeError>>()?,
            ),
            other => return Err(wrong(&other)),
        },
        Ty::Object(attrs) => match json {
            Json::Object(m) => Value::Map(
                m.into_iter()
                    .filter_map(|(k, v)| {
                        let t = attrs.get(&k)?;
                        let v = from_json(v, t, &Path::Attr(path, &k));
                        Some(v.map(|v| (k, v)))
                    })
                    .collect::<Result<_, DecodeError>>()?,
            ),
            other => return Err(wrong(&other)),
        },
        // State JSON has no type for dynamic values; keep what JSON can say.
        Ty::Dynamic => guess(json),
    })
}

fn guess(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => Value::Number(
            n.as_i64()
                .map(Number::Int)
                .unwrap_or_else(|| Number::Decimal(n.to_string())),
        ),
        Json::String(s) => Value::String(s),
        Json::Array(a) => Value::List(a.into_iter().map(guess).collect()),
        Json::Object(m) => Value::Map(m.into_iter().map(|(k, v)| (k, guess(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_decodes_and_drops_attributes_no_longer_in_the_schema() {
        let ty = Ty::object([
            ("name", Ty::String),
            ("count", Ty::Number),
            ("gone", Ty::Bool),
        ]);
        let raw = br#"{ "name": "db", "count": 123456789012345678901234, "removed_attr": 1 }"#;
        let v = decode(raw, &ty).unwrap();
        assert_eq!(v.get("name").as_str(), Some("db"));
        assert!(matches!(
            v.get("count"),
            Value::Number(Number::Float(_) | Number::Decimal(_))
        ));
        assert!(v.get("gone").is_null());
        assert!(v.as_map().unwrap().get("removed_attr").is_none());
    }

    #[test]
    fn parses_cty_json_types() {
        let t: Json = serde_json::from_str(r#"["object",{"a":["list","string"]}]"#).unwrap();
        assert_eq!(
            ty_from_json(&t),
            Some(Ty::object([("a", Ty::list(Ty::String))]))
        );
    }
}
