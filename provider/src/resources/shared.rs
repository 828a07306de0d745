//! Checks shared by resource groups and resource definitions.

use blockstor_proto::{LayerStack, ResourceName, StoragePoolName};

use super::diag::{AttrPath, Diagnostics};
use crate::controller::resolve::{self, Known};
use crate::controller::secret::{Family, Level};
use crate::values::Value;

/// The props key that must never hold a passphrase: it would sit in clear in state and logs.
pub use blockstor_proto::secret_rules::PASSPHRASE_PROP;

/// Passphrases shorter than this many characters get a warning (not an error: the user may
/// have reasons, and LUKS accepts them).
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// At plan: warns about a non-empty passphrase shorter than [`MIN_PASSPHRASE_CHARS`], from
/// whichever of `family`'s sources `obj` sets (literal, file, environment variable or write-only
/// value), on that attribute. A source not known or not readable yet is skipped (validation
/// reports an unreadable one). The text names only the length rule, never the passphrase nor
/// its length.
pub fn warn_short_passphrase(obj: &Value, family: &Family, diags: &mut Diagnostics) {
    warn_short(&Level::of(family, obj), family, diags);
}

/// [`warn_short_passphrase`] for a source the caller has read already.
pub fn warn_short(level: &Level, family: &Family, diags: &mut Diagnostics) {
    let Level::Read {
        source,
        value: Ok(passphrase),
    } = level
    else {
        return;
    };
    let chars = passphrase.expose().chars().count();
    if chars > 0 && chars < MIN_PASSPHRASE_CHARS {
        let attr = source.attribute(family);
        diags.warning(
            &AttrPath::attr(attr),
            "Short passphrase",
            format!("The LUKS passphrase given by {attr} is shorter than {MIN_PASSPHRASE_CHARS} characters, which makes it easier to guess for anyone who gets hold of a disk. Use a longer passphrase (e.g. a random one from a secret store)."),
        );
    }
}

/// `name`: a valid resource name, when known.
pub fn check_name(v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    if let Some(name) = v.as_str() {
        if let Err(e) = name.parse::<ResourceName>() {
            diags.error(path, "Invalid name", format!("{e}. Names match ^[A-Za-z_][A-Za-z0-9_-]{{1,47}}$ and are not `all` or `proxy`."));
        }
    }
}

/// `layer_stack`: one of the valid stacks, when known.
pub fn check_layer_stack(v: &Value, path: &AttrPath, diags: &mut Diagnostics) -> Known<LayerStack> {
    match resolve::layer_stack(v) {
        Known::Some(Err(e)) => {
            diags.error(
                path,
                "Invalid layer_stack",
                format!("{e}. Layers are listed topmost first and the stack ends in STORAGE."),
            );
            Known::Unknown
        }
        Known::Some(Ok(s)) => Known::Some(s),
        Known::Null => Known::Null,
        Known::Unknown => Known::Unknown,
    }
}

/// `storage_pool`: a valid pool name, when known.
pub fn check_pool(v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    if let Some(pool) = v.as_str() {
        if let Err(e) = pool.parse::<StoragePoolName>() {
            diags.error(
                path,
                "Invalid storage_pool",
                format!("{e}. Use a pool name from the agents' config."),
            );
        }
    }
}

/// `place_count`: at least 1, when known.
pub fn check_place_count(v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    if let Value::Number(_) = v {
        match v.as_i64() {
            Some(n) if (1..=16).contains(&n) => {}
            _ => diags.error(
                path,
                "Invalid place_count",
                "place_count must be a whole number from 1 to 16.",
            ),
        }
    }
}

/// `props`: no passphrase or other secret hidden in a property, and no DRBD option the agent
/// manages (the shared secret among them): the rules of
/// [`blockstor_proto::secret_rules::refused_prop`], which the agent applies too.
pub fn check_props(v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    let Some(map) = v.as_map() else { return };
    for key in map.keys() {
        if key == PASSPHRASE_PROP {
            diags.error(
                path,
                format!("props must not contain {PASSPHRASE_PROP}"),
                format!("Remove the key {PASSPHRASE_PROP:?} from props and set the `passphrase` attribute instead: it is sensitive, is never logged, and reaches cryptsetup only on stdin."),
            );
        } else if let Some(why) = blockstor_proto::secret_rules::refused_prop(key) {
            diags.error(
                path,
                format!("props must not contain {key}"),
                format!("{why}."),
            );
        }
    }
}
