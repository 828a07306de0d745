//! Plan-time checks of a definition's configuration. Anything not known yet is accepted: the
//! check runs again when it is.

use std::collections::BTreeMap;
use std::time::Duration;

use blockstor_proto::layer_stack::VALID_STACKS_TEXT;
use blockstor_proto::secret_rules::new_passphrase_problem;
use blockstor_proto::wire::MAX_VOLUME_NUMBER;
use blockstor_proto::{Layer, NodeName, Size};

use crate::controller::resolve::Known;
use crate::controller::secret::{self, Level, Passphrases};
use crate::resources::diag::{AttrPath, Diagnostics};
use crate::resources::shared;
use crate::values::Value;

/// Validates a configuration (or proposed) object of `blockstor_resource_definition`, reading
/// its passphrase sources (for ValidateResourceConfig, which has no other use for them).
pub fn validate(config: &Value) -> Diagnostics {
    validate_resolved(config, &Passphrases::read(config))
}

/// [`validate`] with `config`'s passphrase sources as the caller read them (once per call).
pub fn validate_resolved(config: &Value, secrets: &Passphrases) -> Diagnostics {
    let mut diags = Diagnostics::default();
    if !matches!(config, Value::Map(_)) {
        return diags;
    }
    shared::check_name(config.get("name"), &AttrPath::attr("name"), &mut diags);
    let rd_stack = shared::check_layer_stack(
        config.get("layer_stack"),
        &AttrPath::attr("layer_stack"),
        &mut diags,
    );
    shared::check_props(config.get("props"), &AttrPath::attr("props"), &mut diags);

    let rg = config.get("resource_group");
    let rg_path = AttrPath::attr("resource_group");
    shared::check_name(rg.get("name"), &rg_path.clone().then("name"), &mut diags);
    let rg_stack = shared::check_layer_stack(
        rg.get("layer_stack"),
        &rg_path.clone().then("layer_stack"),
        &mut diags,
    );
    shared::check_pool(
        rg.get("storage_pool"),
        &rg_path.clone().then("storage_pool"),
        &mut diags,
    );
    shared::check_place_count(
        rg.get("place_count"),
        &rg_path.clone().then("place_count"),
        &mut diags,
    );
    shared::check_props(rg.get("props"), &rg_path.clone().then("props"), &mut diags);

    check_volumes(config.get("volume"), &mut diags);
    check_nodes(config.get("nodes"), &mut diags);
    check_diskless_nodes(config, &mut diags);
    check_timeouts(config.get("timeouts"), &mut diags);

    // The passphrase rules need the effective stack; an unknown RG or stack skips them.
    let stack = match (rd_stack, rg, rg_stack) {
        (Known::Some(s), _, _) => Known::Some(s),
        (Known::Null, Value::Null, _) => Known::Some(Default::default()),
        (Known::Null, Value::Map(_), Known::Some(s)) => Known::Some(s),
        (Known::Null, Value::Map(_), Known::Null) => Known::Some(Default::default()),
        _ => Known::Unknown,
    };
    check_passphrase_sources(secrets, &mut diags, false);
    let passphrase = if diags.has_errors() {
        Known::Unknown
    } else {
        secrets.current()
    };
    if let Known::Some(stack) = stack {
        match (&passphrase, stack.has(Layer::Luks)) {
            (Known::Null, true) => diags.error(
                &AttrPath::attr("passphrase"),
                "LUKS needs a passphrase: set passphrase",
                format!("The effective layer_stack {stack} has LUKS, but neither the definition nor its resource group sets a passphrase. Set one of `passphrase` (sensitive), `passphrase_file`, `passphrase_env` or `passphrase_wo` (Terraform 1.11 or later), or remove LUKS from layer_stack; blockstor never creates an unencrypted volume in its place."),
            ),
            (Known::Some(p), true) if p.is_empty() => diags.error(
                &AttrPath::attr("passphrase"),
                "passphrase must not be empty",
                "The effective layer_stack has LUKS: set a non-empty passphrase.",
            ),
            (Known::Some(_), false) => {
                // Only the definition's own source; the group's is warned about on the group.
                if let Some(attr) = secret::CURRENT
                    .attributes()
                    .into_iter()
                    .find(|a| !config.get(a).is_null())
                {
                    diags.warning(
                        &AttrPath::attr(attr),
                        format!("{attr} is ignored without LUKS"),
                        format!("The effective layer_stack {stack} has no LUKS layer, so the passphrase is not used. Add LUKS (valid stacks: {VALID_STACKS_TEXT}) or remove {attr}."),
                    );
                }
            }
            _ => {}
        }
        let diskless = config.get("diskless_nodes").as_list().unwrap_or_default();
        if !diskless.is_empty() && !stack.has(Layer::Drbd) {
            diags.error(
                &AttrPath::attr("diskless_nodes"),
                "diskless_nodes needs DRBD",
                format!("A diskless replica reads and writes through DRBD peers, but the effective layer_stack {stack} has no DRBD. Remove diskless_nodes, or use a stack with DRBD (valid stacks: {VALID_STACKS_TEXT})."),
            );
        }
    }
    diags
}

/// At plan (not at `terraform validate`, which may run where the secrets are not, e.g. in CI):
/// every `passphrase_file`/`passphrase_env` reference can be read on this machine.
pub fn check_references_readable(secrets: &Passphrases, diags: &mut Diagnostics) {
    check_passphrase_sources(secrets, diags, true);
}

/// At plan, where every value is known and references are readable: the short-passphrase
/// warning on the definition's own source, when LUKS may use it (the group's own passphrase is
/// warned about on the group). Plan only, so it shows once.
pub fn warn_short_passphrase(
    secrets: &Passphrases,
    has_luks: &Known<bool>,
    diags: &mut Diagnostics,
) {
    if *has_luks != Known::Some(false) {
        shared::warn_short(&secrets.own, &secret::CURRENT, diags);
    }
}

/// At plan, when the effective passphrase goes into a new LUKS header (a create or a
/// rotation): it may not hold a line break or NUL ([`new_passphrase_problem`], the agent's rule
/// too), which cryptsetup could never rotate away from. The error is on the attribute that set
/// it and never shows it.
pub fn check_new_passphrase(
    secrets: &Passphrases,
    has_luks: &Known<bool>,
    diags: &mut Diagnostics,
) {
    if *has_luks == Known::Some(false) {
        return;
    }
    let (level, family, base) = match secrets.own {
        Level::Null => (&secrets.group, secret::GROUP, Some("resource_group")),
        _ => (&secrets.own, secret::CURRENT, None),
    };
    let Level::Read {
        source,
        value: Ok(passphrase),
    } = level
    else {
        return;
    };
    if let Some(why) = new_passphrase_problem(passphrase.expose()) {
        let attr = source.attribute(&family);
        let path = match base {
            Some(b) => AttrPath::attr(b).then(attr),
            None => AttrPath::attr(attr),
        };
        diags.error(
            &path,
            format!("Invalid passphrase in {attr}"),
            format!(
                "The LUKS passphrase given by {attr} cannot be used for a new LUKS header: {why}."
            ),
        );
    }
}

/// At most one passphrase source per level; with `read`, a referenced one must be readable.
fn check_passphrase_sources(secrets: &Passphrases, diags: &mut Diagnostics, read: bool) {
    for (level, family, base) in secrets.levels() {
        let at = |attr: &str| match base {
            Some(b) => AttrPath::attr(b).then(attr),
            None => AttrPath::attr(attr),
        };
        match level {
            Level::Conflict(attrs) => diags.error(
                &at(attrs[1]),
                format!("Set only one of {}", attrs.join(", ")),
                format!(
                    "{} are all set; each is a whole passphrase. Keep one of them.",
                    attrs.join(" and ")
                ),
            ),
            Level::Read {
                source,
                value: Err(why),
            } if read => diags.error(
                &at(source.attribute(&family)),
                format!("Cannot read {}", source.attribute(&family)),
                why.clone(),
            ),
            _ => {}
        }
    }
}

fn check_volumes(volumes: &Value, diags: &mut Diagnostics) {
    let Some(items) = volumes.as_list() else {
        return;
    };
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, vol) in items.iter().enumerate() {
        let path = AttrPath::attr("volume").index(i);
        if let Value::Number(_) = vol.get("number") {
            match vol.get("number").as_i64() {
                Some(n) if (0..=i64::from(MAX_VOLUME_NUMBER)).contains(&n) => {
                    if let Some(first) = seen.insert(n, i) {
                        diags.error(
                            &path.clone().then("number"),
                            format!("Duplicate volume number {n}"),
                            format!("volume[{first}] and volume[{i}] both have number {n}: give each volume its own number."),
                        );
                    }
                }
                _ => diags.error(
                    &path.clone().then("number"),
                    "Invalid volume number",
                    format!("volume number must be a whole number from 0 to {MAX_VOLUME_NUMBER}."),
                ),
            }
        }
        if let Some(size) = vol.get("size").as_str() {
            if let Err(e) = size.parse::<Size>() {
                diags.error(
                    &path.then("size"),
                    format!("Invalid size for volume[{i}]"),
                    format!("volume[{i}].size: {e}. Write e.g. \"10GiB\", \"512MiB\", or a number of KiB."),
                );
            }
        }
    }
}

fn check_nodes(nodes: &Value, diags: &mut Diagnostics) {
    let Some(items) = nodes.as_list() else { return };
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in items.iter().enumerate() {
        let Some(name) = n.as_str() else { continue };
        let path = AttrPath::attr("nodes").index(i);
        if let Err(e) = name.parse::<NodeName>() {
            diags.error(&path, "Invalid node name", format!("nodes[{i}]: {e}"));
        } else if !seen.insert(name.to_owned()) {
            diags.error(
                &path,
                format!("Node {name} listed twice"),
                "List each node once in nodes.",
            );
        }
    }
    if items.is_empty() {
        diags.error(
            &AttrPath::attr("nodes"),
            "nodes must not be empty",
            "List at least one node, or remove nodes to let place_count choose.",
        );
    }
}

/// `diskless_nodes`: valid names, each once, none of them also a diskful replica in `nodes`.
/// (That the stack has DRBD is checked where the effective stack is known.)
fn check_diskless_nodes(config: &Value, diags: &mut Diagnostics) {
    let Some(items) = config.get("diskless_nodes").as_list() else {
        return;
    };
    let diskful = config.get("nodes").as_string_list().unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in items.iter().enumerate() {
        let Some(name) = n.as_str() else { continue };
        let path = AttrPath::attr("diskless_nodes").index(i);
        if let Err(e) = name.parse::<NodeName>() {
            diags.error(
                &path,
                "Invalid node name",
                format!("diskless_nodes[{i}]: {e}"),
            );
        } else if !seen.insert(name.to_owned()) {
            diags.error(
                &path,
                format!("Node {name} listed twice"),
                "List each node once in diskless_nodes.",
            );
        } else if diskful.iter().any(|d| d == name) {
            diags.error(
                &path,
                format!("Node {name} is in both nodes and diskless_nodes"),
                format!("A replica has a disk or has none: keep {name} in nodes (a diskful replica) or in diskless_nodes (a diskless client), not both."),
            );
        }
    }
}

fn check_timeouts(timeouts: &Value, diags: &mut Diagnostics) {
    for op in ["create", "update", "delete"] {
        if let Some(text) = timeouts.get(op).as_str() {
            if parse_duration(text).is_none() {
                diags.error(
                    &AttrPath::attr("timeouts").then(op),
                    format!("Invalid timeouts.{op}"),
                    format!("{text:?} is not a duration: write e.g. \"90s\", \"20m\", \"1h30m\"."),
                );
            }
        }
    }
}

/// Parses Go-style durations: `90s`, `20m`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        any = true;
    }
    (digits.is_empty() && any).then(|| Duration::from_secs(total))
}

/// The time limit of `op` (`create`, `update`, `delete`) from the `timeouts` block.
pub fn timeout(config: &Value, op: &str) -> Duration {
    let default = if op == "delete" { 10 * 60 } else { 20 * 60 };
    config
        .get("timeouts")
        .get(op)
        .as_str()
        .and_then(parse_duration)
        .unwrap_or(Duration::from_secs(default))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreadable_passphrase_file_passes_validate_and_fails_at_plan() {
        let mut cfg = config(Value::strings(["LUKS", "STORAGE"]), Value::Null);
        cfg.set(
            "passphrase_file",
            Value::string("/nonexistent/blockstor.key"),
        );
        assert!(
            !validate(&cfg).has_errors(),
            "terraform validate runs without secrets"
        );
        let mut diags = Diagnostics::default();
        check_references_readable(&Passphrases::read(&cfg), &mut diags);
        assert_eq!(path_of(&diags.0[0]), ["passphrase_file"]);
        assert!(diags.0[0].detail.contains("/nonexistent/blockstor.key"));
    }

    use super::*;
    use blockstor_proto::tfplugin6::attribute_path::step::Selector;
    use blockstor_proto::tfplugin6::Diagnostic;

    fn config(stack: Value, passphrase: Value) -> Value {
        Value::object([
            ("name", Value::string("db")),
            ("layer_stack", stack),
            ("passphrase", passphrase),
            ("resource_group", Value::Null),
            (
                "volume",
                Value::List(vec![Value::object([
                    ("number", Value::int(0)),
                    ("size", Value::string("64MiB")),
                ])]),
            ),
        ])
    }

    fn path_of(d: &Diagnostic) -> Vec<String> {
        d.attribute
            .as_ref()
            .map(|p| {
                p.steps
                    .iter()
                    .map(|s| match s.selector.as_ref().unwrap() {
                        Selector::AttributeName(n) => n.clone(),
                        Selector::ElementKeyString(k) => k.clone(),
                        Selector::ElementKeyInt(i) => i.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn errors(diags: &Diagnostics) -> Vec<(Vec<String>, String)> {
        diags
            .0
            .iter()
            .filter(|d| d.severity == 1)
            .map(|d| (path_of(d), format!("{} {}", d.summary, d.detail)))
            .collect()
    }

    #[test]
    fn short_passphrase_warns_on_its_source_at_plan_and_never_shows_it() {
        let stack = Value::strings(["LUKS", "STORAGE"]);
        let luks = Known::Some(true);
        let warnings = |cfg: &Value| {
            assert!(
                validate(cfg).0.is_empty(),
                "validate leaves it to plan, so it shows once"
            );
            let mut diags = Diagnostics::default();
            warn_short_passphrase(&Passphrases::read(cfg), &luks, &mut diags);
            assert!(!format!("{diags:?}").contains("s3cr3t"));
            diags
        };
        let diags = warnings(&config(stack.clone(), Value::string("s3cr3t")));
        assert_eq!(diags.0.len(), 1, "{diags:?}");
        assert_eq!(path_of(&diags.0[0]), ["passphrase"]);
        assert_eq!(diags.0[0].summary, "Short passphrase");
        assert!(diags.0[0].detail.contains("12 characters"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let mut cfg = config(stack.clone(), Value::Null);
        cfg.set("passphrase_file", Value::string(file.to_str().unwrap()));
        assert_eq!(path_of(&warnings(&cfg).0[0]), ["passphrase_file"]);

        std::env::set_var("BLOCKSTOR_TEST_SHORT_ENV", "s3cr3t");
        let mut cfg = config(stack.clone(), Value::Null);
        cfg.set("passphrase_env", Value::string("BLOCKSTOR_TEST_SHORT_ENV"));
        assert_eq!(path_of(&warnings(&cfg).0[0]), ["passphrase_env"]);

        let mut cfg = config(stack.clone(), Value::Null);
        cfg.set("passphrase_wo", Value::string("s3cr3t"));
        assert_eq!(path_of(&warnings(&cfg).0[0]), ["passphrase_wo"]);

        let long = warnings(&config(stack, Value::string("correct horse battery")));
        assert!(long.0.is_empty(), "{long:?}");
        let mut diags = Diagnostics::default();
        let short = config(Value::strings(["STORAGE"]), Value::string("s3cr3t"));
        warn_short_passphrase(&Passphrases::read(&short), &Known::Some(false), &mut diags);
        assert!(diags.0.is_empty(), "without LUKS the passphrase is unused");
    }

    #[test]
    fn luks_above_drbd_is_an_error_on_layer_stack_listing_valid_stacks() {
        let diags = validate(&config(
            Value::strings(["LUKS", "DRBD", "STORAGE"]),
            Value::string("pw"),
        ));
        let errs = errors(&diags);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, ["layer_stack"]);
        assert!(errs[0].1.contains("layer_stack"), "{}", errs[0].1);
        assert!(errs[0].1.contains(VALID_STACKS_TEXT), "{}", errs[0].1);
    }

    #[test]
    fn luks_without_passphrase_is_an_error_on_passphrase() {
        let errs = errors(&validate(&config(
            Value::strings(["LUKS", "STORAGE"]),
            Value::Null,
        )));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, ["passphrase"]);
        assert!(errs[0].1.contains("set passphrase"));
    }

    #[test]
    fn luks_with_the_groups_passphrase_is_fine() {
        let mut c = config(Value::strings(["LUKS", "STORAGE"]), Value::Null);
        c.set(
            "resource_group",
            Value::object([("passphrase", Value::string("rg"))]),
        );
        assert!(!validate(&c).has_errors());
    }

    #[test]
    fn default_stack_from_group_with_luks_needs_a_passphrase() {
        let mut c = config(Value::Null, Value::Null);
        c.set(
            "resource_group",
            Value::object([("layer_stack", Value::strings(["DRBD", "LUKS", "STORAGE"]))]),
        );
        let errs = errors(&validate(&c));
        assert_eq!(errs[0].0, ["passphrase"]);
    }

    #[test]
    fn passphrase_without_luks_is_a_warning() {
        let diags = validate(&config(Value::strings(["STORAGE"]), Value::string("pw")));
        assert!(!diags.has_errors());
        assert_eq!(diags.0.len(), 1);
        assert_eq!(path_of(&diags.0[0]), ["passphrase"]);
    }

    #[test]
    fn unknown_values_are_accepted() {
        let mut c = config(Value::Unknown, Value::Null);
        c.set("resource_group", Value::Unknown);
        c.set(
            "volume",
            Value::List(vec![Value::object([
                ("number", Value::Unknown),
                ("size", Value::Unknown),
            ])]),
        );
        c.set("name", Value::Unknown);
        assert!(validate(&c).0.is_empty());
        let mut c = config(
            Value::List(vec![Value::string("LUKS"), Value::Unknown]),
            Value::Null,
        );
        c.set("props", Value::Unknown);
        assert!(validate(&c).0.is_empty());
    }

    #[test]
    fn passphrase_in_props_is_rejected_on_props() {
        let mut c = config(Value::strings(["STORAGE"]), Value::Null);
        c.set(
            "props",
            Value::object([(shared::PASSPHRASE_PROP, Value::string("x"))]),
        );
        let errs = errors(&validate(&c));
        assert_eq!(errs[0].0, ["props"]);
        assert!(errs[0].1.contains("`passphrase`"));
    }

    #[test]
    fn secret_props_and_managed_drbd_options_are_rejected_on_props_naming_the_key() {
        for key in [
            "DrbdOptions/Net/shared-secret",
            "DrbdOptions/Net/cram-hmac-alg",
            "DrbdOptions/Net/verify-alg",
            "Aux/admin-password",
        ] {
            let mut c = config(Value::strings(["STORAGE"]), Value::Null);
            c.set("props", Value::object([(key, Value::string("sha1"))]));
            let errs = errors(&validate(&c));
            assert_eq!(errs.len(), 1, "{key}: {errs:?}");
            assert_eq!(errs[0].0, ["props"]);
            assert!(errs[0].1.contains(key), "{errs:?}");
            assert!(!errs[0].1.contains("sha1"), "never the value: {errs:?}");
        }
        let mut c = config(Value::strings(["STORAGE"]), Value::Null);
        c.set(
            "props",
            Value::object([
                ("DrbdOptions/Net/protocol", Value::string("A")),
                ("DrbdOptions/Net/max-buffers", Value::string("8000")),
            ]),
        );
        assert!(errors(&validate(&c)).is_empty());
    }

    #[test]
    fn bad_sizes_and_duplicate_volume_numbers_point_at_the_volume() {
        let mut c = config(Value::strings(["STORAGE"]), Value::Null);
        let vol =
            |n, s: &str| Value::object([("number", Value::int(n)), ("size", Value::string(s))]);
        c.set("volume", Value::List(vec![vol(0, "64MiB"), vol(0, "1MiB")]));
        let errs = errors(&validate(&c));
        let paths: Vec<_> = errs.iter().map(|e| e.0.join(".")).collect();
        assert_eq!(paths, ["volume.1.number", "volume.1.size"], "{errs:?}");
    }

    #[test]
    fn bad_names_point_at_name() {
        let mut c = config(Value::strings(["STORAGE"]), Value::Null);
        c.set("name", Value::string("../etc"));
        assert_eq!(errors(&validate(&c))[0].0, ["name"]);
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("20"), None);
        assert_eq!(parse_duration("5d"), None);
    }
}
