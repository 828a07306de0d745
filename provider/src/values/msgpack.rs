//! msgpack DynamicValue codec (terraform docs/plugin-protocol/object-wire-format.md).
//!
//! Unknown is msgpack extension type 0; cty ≥ 1.13 may also send a *refined* unknown as
//! extension type 12, which we read as plain unknown. We always write the fixext1 `d4 00 00`.

use std::collections::BTreeMap;

use rmpv::Value as Mp;

use super::{conform, error_at, DecodeError, DecodePath as Path, Number, Ty, Value};

/// msgpack extension type of an unknown value.
const EXT_UNKNOWN: i8 = 0;
/// msgpack extension type of a refined unknown value (cty ≥ 1.13).
const EXT_REFINED_UNKNOWN: i8 = 12;

/// Decodes a msgpack DynamicValue of type `ty`. Objects come back with every attribute present.
pub fn decode(bytes: &[u8], ty: &Ty) -> Result<Value, DecodeError> {
    let mut reader = bytes;
    let mp = rmpv::decode::read_value(&mut reader)
        .map_err(|e| DecodeError::new("", format!("invalid msgpack: {e}")))?;
    from_mp(mp, ty, &Path::Root).map(|v| conform(v, ty))
}

/// Encodes `value` as msgpack, after conforming it to `ty` (missing attributes become nil).
pub fn encode(value: &Value, ty: &Ty) -> Vec<u8> {
    // to_mp writes each object with exactly its type's attributes (as `conform` would), so the
    // value is neither copied nor conformed first.
    let mp = to_mp(value, ty);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &mp).expect("writing to a Vec cannot fail");
    out
}

fn from_mp(mp: Mp, ty: &Ty, path: &Path<'_>) -> Result<Value, DecodeError> {
    match mp {
        Mp::Nil => return Ok(Value::Null),
        Mp::Ext(EXT_UNKNOWN | EXT_REFINED_UNKNOWN, _) => return Ok(Value::Unknown),
        _ => {}
    }
    let wrong = |mp: &Mp| error_at(path, format!("expected {}, got {mp}", ty.to_json()));
    Ok(match ty {
        Ty::Bool => match mp {
            Mp::Boolean(b) => Value::Bool(b),
            other => return Err(wrong(&other)),
        },
        Ty::String => match mp {
            Mp::String(s) => Value::String(
                s.into_str()
                    .ok_or_else(|| error_at(path, "string is not valid UTF-8"))?,
            ),
            other => return Err(wrong(&other)),
        },
        Ty::Number => match mp {
            Mp::Integer(i) => match i.as_i64() {
                Some(i) => Value::Number(Number::Int(i)),
                None => Value::Number(Number::Decimal(i.to_string())),
            },
            Mp::F64(f) => Value::Number(Number::Float(f)),
            Mp::F32(f) => Value::Number(Number::Float(f64::from(f))),
            Mp::String(s) => {
                let s = s
                    .into_str()
                    .ok_or_else(|| error_at(path, "number is not valid UTF-8"))?;
                match s.parse::<i64>() {
                    Ok(i) => Value::Number(Number::Int(i)),
                    Err(_) => Value::Number(Number::Decimal(s)),
                }
            }
            other => return Err(wrong(&other)),
        },
        Ty::List(elem) | Ty::Set(elem) => match mp {
            Mp::Array(items) => Value::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| from_mp(v, elem, &Path::Index(path, i)))
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(wrong(&other)),
        },
        Ty::Map(elem) => Value::Map(map_entries(mp, path, ty, |_| Some(elem))?),
        Ty::Object(attrs) => Value::Map(map_entries(mp, path, ty, |k| attrs.get(k))?),
        Ty::Dynamic => match mp {
            // [json type as bytes, value]
            Mp::Array(mut pair) if pair.len() == 2 => {
                let inner = pair.pop().expect("len 2");
                let ty_bytes = match pair.pop().expect("len 2") {
                    Mp::Binary(b) => b,
                    Mp::String(s) => s.into_bytes(),
                    other => return Err(wrong(&other)),
                };
                let json: serde_json::Value = serde_json::from_slice(&ty_bytes)
                    .map_err(|e| error_at(path, format!("bad dynamic type: {e}")))?;
                let inner_ty = super::json::ty_from_json(&json)
                    .ok_or_else(|| error_at(path, "unsupported dynamic type"))?;
                from_mp(inner, &inner_ty, path)?
            }
            other => return Err(wrong(&other)),
        },
    })
}

/// Decodes the entries of a msgpack map; `elem_ty` gives each key's type, and keys without one
/// (attributes no longer in the schema) are dropped.
fn map_entries<'t>(
    mp: Mp,
    path: &Path<'_>,
    ty: &Ty,
    elem_ty: impl Fn(&str) -> Option<&'t Ty>,
) -> Result<BTreeMap<String, Value>, DecodeError> {
    let Mp::Map(entries) = mp else {
        return Err(error_at(
            path,
            format!("expected {}, got {mp}", ty.to_json()),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let Mp::String(k) = k else {
            return Err(error_at(path, "map key is not a string"));
        };
        let k = k
            .into_str()
            .ok_or_else(|| error_at(path, "map key is not valid UTF-8"))?;
        if let Some(t) = elem_ty(&k) {
            let v = from_mp(v, t, &Path::Attr(path, &k))?;
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn to_mp(value: &Value, ty: &Ty) -> Mp {
    if let (Value::Map(m), Ty::Object(attrs)) = (value, ty) {
        // Exactly the type's attributes, in its order; a missing one is nil.
        return Mp::Map(
            attrs
                .iter()
                .map(|(k, t)| {
                    let v = m.get(k).map_or(Mp::Nil, |v| to_mp(v, t));
                    (Mp::from(k.as_str()), v)
                })
                .collect(),
        );
    }
    match value {
        Value::Null => Mp::Nil,
        Value::Unknown => Mp::Ext(EXT_UNKNOWN, vec![0]),
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(Number::Int(i)) => Mp::from(*i),
        Value::Number(Number::Float(f)) => Mp::F64(*f),
        Value::Number(Number::Decimal(s)) => Mp::from(s.as_str()),
        Value::String(s) => Mp::from(s.as_str()),
        Value::List(items) => {
            let elem = match ty {
                Ty::List(e) | Ty::Set(e) => e.as_ref(),
                _ => &Ty::Dynamic,
            };
            Mp::Array(items.iter().map(|v| to_mp(v, elem)).collect())
        }
        Value::Map(m) => Mp::Map(
            m.iter()
                .map(|(k, v)| {
                    let t = match ty {
                        Ty::Map(e) => e.as_ref(),
                        Ty::Object(attrs) => attrs.get(k).unwrap_or(&Ty::Dynamic),
                        _ => &Ty::Dynamic,
                    };
                    (Mp::from(k.as_str()), to_mp(v, t))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty() -> Ty {
        Ty::object([
            ("name", Ty::String),
            ("count", Ty::Number),
            ("on", Ty::Bool),
            ("stack", Ty::list(Ty::String)),
            ("props", Ty::map(Ty::String)),
            (
                "volume",
                Ty::list(Ty::object([("number", Ty::Number), ("size", Ty::String)])),
            ),
        ])
    }

    #[test]
    fn round_trips_known_values() {
        let v = Value::object([
            ("name", Value::string("db")),
            ("count", Value::int(2)),
            ("on", Value::Bool(true)),
            ("stack", Value::strings(["LUKS", "STORAGE"])),
            (
                "props",
                Value::object([("DrbdOptions/Net/protocol", Value::string("C"))]),
            ),
            (
                "volume",
                Value::List(vec![Value::object([
                    ("number", Value::int(0)),
                    ("size", Value::string("64MiB")),
                ])]),
            ),
        ]);
        assert_eq!(decode(&encode(&v, &ty()), &ty()).unwrap(), v);
    }

    #[test]
    fn round_trips_nulls_and_unknowns() {
        let v = Value::object([
            ("name", Value::Unknown),
            ("count", Value::Null),
            ("stack", Value::List(vec![Value::Unknown, Value::Null])),
            ("props", Value::Unknown),
            ("volume", Value::List(vec![])),
        ]);
        let back = decode(&encode(&v, &ty()), &ty()).unwrap();
        assert!(back.get("name").is_unknown());
        assert!(back.get("count").is_null());
        assert!(back.get("on").is_null(), "missing attributes become null");
        assert_eq!(
            back.get("stack"),
            &Value::List(vec![Value::Unknown, Value::Null])
        );
        assert!(back.get("props").is_unknown());
    }

    #[test]
    fn unknown_is_written_as_fixext1_type_0() {
        assert_eq!(encode(&Value::Unknown, &Ty::String), [0xd4, 0x00, 0x00]);
    }

    #[test]
    fn refined_unknown_ext_12_decodes_as_unknown() {
        // fixext1 type 12 (as cty ≥1.13 may send) and ext8 type 12 with a map payload.
        assert!(decode(&[0xd4, 0x0c, 0x00], &Ty::String)
            .unwrap()
            .is_unknown());
        assert!(decode(&[0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2], &Ty::String)
            .unwrap()
            .is_unknown());
    }

    #[test]
    fn numbers_arrive_as_int_float_or_decimal_string() {
        assert_eq!(decode(&[0x05], &Ty::Number).unwrap().as_i64(), Some(5));
        let f = encode(&Value::Number(Number::Float(2.5)), &Ty::Number);
        assert_eq!(
            decode(&f, &Ty::Number).unwrap(),
            Value::Number(Number::Float(2.5))
        );
        let big = Value::Number(Number::Decimal("12345678901234567890123".into()));
        assert_eq!(
            decode(&encode(&big, &Ty::Number), &Ty::Number).unwrap(),
            big
        );
    }

    #[test]
    fn type_mismatch_names_the_path() {
        let bytes = encode(&Value::object([("name", Value::Bool(true))]), &Ty::Dynamic);
        let err = decode(&bytes, &ty()).unwrap_err();
        assert_eq!(err.path, ".name");
    }
}
