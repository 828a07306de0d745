//! State values built from what the agents observed.

use blockstor_proto::wire::ObservedResource;

use crate::values::Value;

/// One `replicas` element from what a node observed; DRBD fields are null without DRBD.
pub fn replica(obs: &ObservedResource) -> Value {
    let first = obs.volumes.iter().min_by_key(|v| v.number);
    let opt_str = |s: Option<&String>| s.map_or(Value::Null, Value::string);
    Value::object([
        ("node", Value::string(obs.node.as_str())),
        (
            "device_path",
            opt_str(first.and_then(|v| v.device_path.as_ref())),
        ),
        (
            "backing_device",
            opt_str(first.and_then(|v| v.backing_device.as_ref())),
        ),
        (
            "minor",
            obs.drbd
                .as_ref()
                .and_then(|d| d.minors.first())
                .map_or(Value::Null, |m| Value::int(i64::from(*m))),
        ),
        (
            "port",
            obs.drbd
                .as_ref()
                .map_or(Value::Null, |d| Value::int(i64::from(d.port))),
        ),
        (
            "node_id",
            obs.drbd
                .as_ref()
                .map_or(Value::Null, |d| Value::int(i64::from(d.node_id))),
        ),
        (
            "diskless",
            obs.drbd
                .as_ref()
                .map_or(Value::Null, |d| Value::Bool(d.diskless)),
        ),
        (
            "disk_state",
            opt_str(obs.drbd.as_ref().and_then(|d| d.disk_state.as_ref())),
        ),
        (
            "role",
            opt_str(obs.drbd.as_ref().and_then(|d| d.role.as_ref())),
        ),
    ])
}

/// Replaces every unknown with null: what Terraform does to a failed apply's result.
pub fn unknown_as_null(v: Value) -> Value {
    match v {
        Value::Unknown => Value::Null,
        Value::List(items) => Value::List(items.into_iter().map(unknown_as_null).collect()),
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (k, unknown_as_null(v)))
                .collect(),
        ),
        other => other,
    }
}
