//! `deletion_protection`: while it is true, nothing destroys the definition's data, neither a
//! destroy nor a replacement. Checked at plan where Terraform plans the change, and always at
//! apply before any agent call (Terraform 1.0.3 plans no destroy).

use crate::resources::diag::{AttrPath, Diagnostics};
use crate::values::Value;

/// Where `state` (prior state) turns deletion protection on: its own attribute, else its
/// group's; `None` when it is off.
pub fn protected_by(state: &Value) -> Option<AttrPath> {
    match state.get("deletion_protection").as_bool() {
        Some(true) => Some(AttrPath::attr("deletion_protection")),
        Some(false) => None,
        None => (state
            .get("resource_group")
            .get("deletion_protection")
            .as_bool()
            == Some(true))
        .then(|| AttrPath::attr("resource_group").then("deletion_protection")),
    }
}

/// The error for a destroy of the protected `state`.
pub fn refuse_destroy(state: &Value, diags: &mut Diagnostics) -> bool {
    let Some(path) = protected_by(state) else {
        return false;
    };
    let name = state.get("name").as_str().unwrap_or("?");
    diags.error_global(
        format!("{name} has deletion_protection = true"),
        format!("Destroying {name} would tear down every replica and destroy its data, and {} is true, so nothing was touched. To destroy it, set deletion_protection = false (on the definition or its group), apply, then destroy.", dotted(&path)),
    );
    true
}

/// The error for a plan that replaces the protected `prior`; `because` lists what forces it.
pub fn refuse_replacement(prior: &Value, because: &[AttrPath], diags: &mut Diagnostics) {
    let Some(path) = protected_by(prior) else {
        return;
    };
    let name = prior.get("name").as_str().unwrap_or("?");
    let why: Vec<String> = because.iter().map(dotted).collect();
    diags.error(
        &path,
        format!("{name} has deletion_protection = true: it cannot be replaced"),
        format!("This change of {} replaces {name}: every replica would be torn down and its data destroyed. {} is true, so the plan stops here. Undo the change, or set deletion_protection = false and apply first.", why.join(", "), dotted(&path)),
    );
}

/// `resource_group.place_count`, `volume[0]`: the path as a user writes it.
fn dotted(path: &AttrPath) -> String {
    use blockstor_proto::tfplugin6::attribute_path::step::Selector;
    let mut out = String::new();
    for step in path
        .to_proto()
        .steps
        .iter()
        .filter_map(|s| s.selector.as_ref())
    {
        match step {
            Selector::AttributeName(n) if out.is_empty() => out.push_str(n),
            Selector::AttributeName(n) => {
                out.push('.');
                out.push_str(n);
            }
            Selector::ElementKeyInt(i) => out.push_str(&format!("[{i}]")),
            Selector::ElementKeyString(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}
