//! PlanResourceChange for a definition: what Terraform shows before apply.
//!
//! Create: computed values are unknown unless the config already decides them. Update:
//! volume growth, props and drift are in-place (replicas become unknown: the agents converge);
//! a new passphrase is a rotation, in place; a new name, effective stack, node set or pool
//! requires replacement; shrinking a
//! volume, or rotating without the old passphrase, is refused: a warning at plan, an error at
//! apply ([`update_refusals`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use blockstor_proto::tfplugin6 as tf;
use blockstor_proto::wire::Passphrase;
use blockstor_proto::{Layer, NodeName, Size};

use super::validate::{
    check_new_passphrase, check_references_readable, validate_resolved, warn_short_passphrase,
};
use super::{fingerprint, guard};
use crate::controller::resolve::{self, Known};
use crate::controller::secret::{self, Passphrases};
use crate::resources::diag::{AttrPath, Diagnostics};
use crate::values::Value;

/// The reply to PlanResourceChange.
#[derive(Default)]
pub struct Planned {
    pub state: Value,
    pub requires_replace: Vec<AttrPath>,
    pub private: Vec<u8>,
    pub diags: Diagnostics,
    /// The configuration's passphrases as this plan read them, for [`super::preview::fill`]
    /// (the same call): each source is read once per call.
    pub secrets: Passphrases,
}

/// Holds the resolved passphrases (their `Debug` redacts them) and private state, which holds
/// the DRBD shared secret: shown by its length only.
impl fmt::Debug for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planned")
            .field("state", &self.state)
            .field("requires_replace", &self.requires_replace)
            .field(
                "private",
                &format_args!("[{} bytes, redacted]", self.private.len()),
            )
            .field("diags", &self.diags)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Plans a change. `configured` lists the provider's nodes (None if not configured yet).
pub fn plan(
    prior: &Value,
    proposed: &Value,
    config: &Value,
    prior_private: &[u8],
    configured: Option<&[NodeName]>,
) -> Planned {
    let mut out = Planned {
        state: proposed.clone(),
        private: prior_private.to_vec(),
        ..Planned::default()
    };
    if proposed.is_null() {
        // Destroy (planned by Terraform 1.3 and later; apply checks again).
        guard::refuse_destroy(prior, &mut out.diags);
        return out;
    }
    out.secrets = Passphrases::read(config);
    let secrets = &out.secrets;
    out.diags = validate_resolved(config, secrets);
    check_nodes_configured(config, configured, &mut out.diags);
    if out.diags.has_errors() {
        return out;
    }
    check_references_readable(secrets, &mut out.diags);
    if out.diags.has_errors() {
        return out;
    }
    let eff = resolve::effective(config, secrets);
    let planned = &mut out.state;
    planned.set("id", config.get("name").clone());
    let stack_value = match &eff.layer_stack {
        Known::Some(s) => Value::strings(s.names()),
        _ => Value::Unknown,
    };
    planned.set("effective_layer_stack", stack_value);
    let has_luks = eff.layer_stack.clone().map(|s| s.has(Layer::Luks));
    warn_short_passphrase(secrets, &has_luks, &mut out.diags);

    if prior.is_null() {
        check_new_passphrase(secrets, &has_luks, &mut out.diags);
        plan_create(planned, &eff, has_luks);
        out.private = Vec::new();
    } else {
        let mut refused = Diagnostics::default();
        plan_update(
            prior,
            planned,
            config,
            secrets,
            &eff,
            configured,
            &mut out.requires_replace,
            &mut refused,
        );
        out.diags.extend(as_warnings(refused));
        if !out.requires_replace.is_empty() {
            // An error even in the pre-destroy plan: a protected definition is not destroyed.
            guard::refuse_replacement(prior, &out.requires_replace, &mut out.diags);
            warn_replacement_destroys(prior, planned, &out.requires_replace, &mut out.diags);
        }
    }
    plan_steps(prior, planned);
    out
}

/// What refuses to change the existing object `prior` into `config` (a rotation without the
/// old passphrase, a shrink): errors, enforced by apply before it asks any agent.
///
/// Plan reports them only as warnings: since Terraform 1.3, `terraform destroy` first runs a
/// normal plan, which cannot be told from any other (the request carries no flag), and an
/// error there would stop a user who only wants to delete.
pub fn update_refusals(prior: &Value, config: &Value, secrets: &Passphrases) -> Diagnostics {
    let mut refused = Diagnostics::default();
    let eff = resolve::effective(config, secrets);
    let mut scratch = config.clone();
    plan_update(
        prior,
        &mut scratch,
        config,
        secrets,
        &eff,
        // The apply's placement checks the count against the nodes that answer.
        None,
        &mut Vec::new(),
        &mut refused,
    );
    refused
}

/// The refusals of an update, as plan shows them: the apply will fail on them.
fn as_warnings(refused: Diagnostics) -> Diagnostics {
    let warning = tf::diagnostic::Severity::Warning as i32;
    Diagnostics(
        refused
            .0
            .into_iter()
            .map(|d| tf::Diagnostic {
                severity: warning,
                summary: format!("Apply will fail: {}", d.summary),
                detail: format!("{} (A warning here so that `terraform destroy`, which plans first, is not stopped by it; the apply of this change stops with this error before it touches any node.)", d.detail),
                ..d
            })
            .collect(),
    )
}

/// `planned_steps`: unknown when the agents will run something ([`super::preview`] asks
/// them, after this), else the prior value, so a plan with no changes stays one.
fn plan_steps(prior: &Value, planned: &mut Value) {
    let steps = if planned.get("replicas").is_unknown() {
        Value::Unknown
    } else {
        prior.get("planned_steps").clone()
    };
    planned.set("planned_steps", steps);
}

fn plan_create(planned: &mut Value, eff: &resolve::Effective, has_luks: Known<bool>) {
    if planned.get("nodes").is_null() {
        planned.set("nodes", Value::Unknown);
    }
    let count = match (planned.get("nodes").as_list(), &eff.place_count) {
        (Some(nodes), _) => Value::int(nodes.len() as i64),
        (None, Known::Some(n)) => Value::int(*n),
        _ => Value::Unknown,
    };
    planned.set("effective_place_count", count);
    planned.set(
        "effective_storage_pool",
        eff.storage_pool
            .clone()
            .known()
            .map_or(Value::Unknown, Value::String),
    );
    planned.set(
        "passphrase_fingerprint",
        fingerprint_plan(&eff.passphrase, has_luks),
    );
    planned.set("replicas", Value::Unknown);
}

/// The fingerprint on create (or after a passphrase change): null without LUKS or passphrase.
fn fingerprint_plan(passphrase: &Known<Passphrase>, has_luks: Known<bool>) -> Value {
    match (passphrase, has_luks) {
        (Known::Null, _) | (_, Known::Some(false)) => Value::Null,
        _ => Value::Unknown,
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_update(
    prior: &Value,
    planned: &mut Value,
    config: &Value,
    secrets: &Passphrases,
    eff: &resolve::Effective,
    configured: Option<&[NodeName]>,
    replace: &mut Vec<AttrPath>,
    diags: &mut Diagnostics,
) {
    let has_luks = eff.layer_stack.clone().map(|s| s.has(Layer::Luks));
    // Only the prior props: prior state's passphrase references would read today's secrets.
    let prior_props = resolve::props(prior);
    let mut needs_apply = false;
    // Where a replacement caused by an inherited value points: the RD's own attribute when
    // set, else the resource group.
    let own_or_group = |attr: &str, group_attr: &str| {
        if config.get(attr).is_null() {
            AttrPath::attr("resource_group").then(group_attr)
        } else {
            AttrPath::attr(attr)
        }
    };

    if config.get("name") != prior.get("name") {
        replace.push(AttrPath::attr("name"));
    }

    if let Known::Some(stack) = &eff.layer_stack {
        if prior.get("effective_layer_stack").as_string_list() != Some(stack.names()) {
            replace.push(own_or_group("layer_stack", "layer_stack"));
        }
    }

    // Not `prior_eff.passphrase`: a reference in prior state would read today's secret.
    let prior_fp = prior.get("passphrase_fingerprint").as_str();
    let change = if has_luks == Known::Some(false) {
        Change::Same // no header to rotate; the fingerprint stays null
    } else {
        passphrase_change(prior, prior_fp, &eff.passphrase)
    };
    let same = matches!(change, Change::Same);
    match change {
        Change::Same => {}
        // Dropping the passphrase of a LUKS stack: validation already refuses it while the
        // stack has LUKS; without LUKS the stack change replaces the resource anyway.
        Change::Dropped => replace.push(own_or_group("passphrase", "passphrase")),
        // A new passphrase is a rotation, in place: every replica adds it to its header and
        // then removes the old one (apply sends both); the data is never touched.
        Change::Rotated => {
            needs_apply = true;
            check_new_passphrase(secrets, &has_luks, diags);
            check_previous(prior, prior_fp, config, secrets, diags);
        }
        // Imported (the passphrase was not readable) or newly set: apply verifies it against
        // the header; it never reformats.
        Change::Unverified => needs_apply = true,
    }
    let fp = if same && prior_fp.is_some() {
        prior.get("passphrase_fingerprint").clone()
    } else {
        fingerprint_plan(&eff.passphrase, has_luks)
    };
    planned.set("passphrase_fingerprint", fp);

    // Nodes: an explicit set must equal the prior one; with placement by count, a new count
    // moves the resource.
    let prior_nodes = prior.get("nodes").as_string_list();
    match (resolve::strings(config.get("nodes")), &prior_nodes) {
        (Known::Some(want), Some(have)) => {
            let want: BTreeSet<_> = want.into_iter().collect();
            let have: BTreeSet<_> = have.iter().cloned().collect();
            // On DRBD the replicas change in place (apply drives the stages node by node);
            // without DRBD there is nothing to copy from.
            if want != have && stays_drbd(prior, eff) {
                needs_apply = true;
            } else if want != have {
                replace.push(AttrPath::attr("nodes"));
            }
        }
        (Known::Null, Some(have)) => {
            if let Known::Some(count) = eff.place_count {
                if have.len() as i64 != count
                    && !config.get("resource_group").get("place_count").is_null()
                {
                    // On DRBD a new count adds or removes replicas in place (apply picks
                    // which: `controller::place::recount`); without DRBD it moves the data.
                    if stays_drbd(prior, eff) {
                        check_count_reachable(count, configured, diags);
                        needs_apply = true;
                    } else {
                        replace.push(AttrPath::attr("resource_group").then("place_count"));
                    }
                    planned.set("nodes", Value::Unknown);
                }
            }
        }
        (Known::Unknown, _) => planned.set("nodes", Value::Unknown),
        _ => {}
    }
    let count = planned
        .get("nodes")
        .as_list()
        .map_or(Value::Unknown, |n| Value::int(n.len() as i64));
    planned.set("effective_place_count", count);

    // Diskless clients come and go, or trade places with diskful replicas, in place.
    if diskless_set(config.get("diskless_nodes")) != diskless_set(prior.get("diskless_nodes")) {
        needs_apply = true;
    }

    let prior_pool = prior.get("effective_storage_pool").as_str();
    match (&eff.storage_pool, prior_pool) {
        (Known::Some(want), Some(have)) if want != have => {
            replace.push(AttrPath::attr("resource_group").then("storage_pool"));
            planned.set("effective_storage_pool", Value::string(want));
        }
        (Known::Some(want), None) => {
            planned.set("effective_storage_pool", Value::string(want));
            needs_apply = true;
        }
        (Known::Unknown, _) => planned.set("effective_storage_pool", Value::Unknown),
        (_, None) => {
            planned.set("effective_storage_pool", Value::Unknown);
            needs_apply = true;
        }
        _ => {}
    }

    needs_apply |= plan_volumes(prior, config, replace, diags);

    let props = |k: &Known<BTreeMap<String, String>>| k.clone().known().unwrap_or_default();
    if eff.props.is_unknown() || props(&eff.props) != props(&prior_props) {
        needs_apply = true;
    }

    // Drift found by read: a replica is missing, so the agents must converge again.
    let replicas = prior.get("replicas").as_list().map_or(0, <[Value]>::len);
    let clients = diskless_set(prior.get("diskless_nodes")).len();
    if prior_nodes.is_none_or(|n| n.len() + clients != replicas) {
        needs_apply = true;
    }

    if needs_apply {
        planned.set("replicas", Value::Unknown);
    }
}

/// `diskless_nodes` as a set (null and empty alike).
fn diskless_set(v: &Value) -> BTreeSet<String> {
    v.as_string_list().unwrap_or_default().into_iter().collect()
}

/// Whether the definition had DRBD and keeps it: then its replica set changes in place.
fn stays_drbd(prior: &Value, eff: &resolve::Effective) -> bool {
    let had = prior
        .get("effective_layer_stack")
        .as_string_list()
        .is_some_and(|s| s.iter().any(|l| l == "DRBD"));
    had && matches!(&eff.layer_stack, Known::Some(s) if s.has(Layer::Drbd))
}

/// A replica count more than the provider has nodes for can never be met: say so at plan,
/// naming the nodes (their pools are checked at apply, where the agents are asked).
fn check_count_reachable(count: i64, configured: Option<&[NodeName]>, diags: &mut Diagnostics) {
    let Some(configured) = configured else { return };
    if count > configured.len() as i64 {
        let names: Vec<&str> = configured.iter().map(NodeName::as_str).collect();
        diags.error(
            &AttrPath::attr("resource_group").then("place_count"),
            "place_count cannot be met",
            format!("place_count is {count} but the provider has only {} node(s): {}. Lower place_count or add node blocks to the provider.", names.len(), names.join(", ")),
        );
    }
}

/// A replacement tears down every replica of `prior` before building empty ones: the plan says
/// in words on which nodes the data is destroyed (a `-/+` alone is easy to miss).
fn warn_replacement_destroys(
    prior: &Value,
    planned: &Value,
    because: &[AttrPath],
    diags: &mut Diagnostics,
) {
    let have = prior.get("nodes").as_string_list().unwrap_or_default();
    if have.is_empty() {
        return;
    }
    let name = prior.get("name").as_str().unwrap_or("?");
    let kept: BTreeSet<String> = planned
        .get("nodes")
        .as_string_list()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let leaving: Vec<&str> = have
        .iter()
        .filter(|n| !kept.contains(*n))
        .map(String::as_str)
        .collect();
    let stack = prior
        .get("effective_layer_stack")
        .as_string_list()
        .unwrap_or_default();
    let why = if stack.iter().any(|l| l == "DRBD") {
        "It is a replacement, not an in-place change"
    } else {
        "The stack has no DRBD, so there is no replica to copy the data from"
    };
    let gone = if leaving.is_empty() {
        String::new()
    } else {
        format!(" Nodes leaving the definition: {}.", leaving.join(", "))
    };
    diags.warning(
        &because[0],
        format!("Replacing {name} destroys its data on {}", have.join(", ")),
        format!("{why}: apply tears down the replica on every one of {} (LUKS headers wiped, volumes removed) and builds empty volumes in their place.{gone} Back up the data first, or undo the change.", have.join(", ")),
    );
}

/// How the effective passphrase compares with the one the replicas hold.
enum Change {
    Same,
    Dropped,
    Rotated,
    Unverified,
}

/// The prior passphrase is known from state when it was literal, else only by its
/// fingerprint (a `passphrase_file`/`passphrase_env` reference, read again now).
fn passphrase_change(prior: &Value, prior_fp: Option<&str>, now: &Known<Passphrase>) -> Change {
    match (secret::literal_in_state(prior), now) {
        (Known::Null, Known::Null) if prior_fp.is_none() => Change::Same,
        (_, Known::Null) => Change::Dropped,
        (_, Known::Unknown) => Change::Unverified,
        (Known::Some(old), Known::Some(new)) if old.expose() == new.expose() => Change::Same,
        (Known::Some(_), Known::Some(_)) => Change::Rotated,
        (_, Known::Some(new)) => match prior_fp {
            Some(fp) if fingerprint::matches(fp, new.expose()) => Change::Same,
            Some(_) => Change::Rotated,
            None => Change::Unverified,
        },
    }
}

/// A rotation away from a referenced secret needs the old one, from a previous_* reference
/// that matches the fingerprint in state.
fn check_previous(
    prior: &Value,
    prior_fp: Option<&str>,
    config: &Value,
    secrets: &Passphrases,
    diags: &mut Diagnostics,
) {
    if secret::literal_in_state(prior).known().is_some() {
        return; // state holds the old passphrase itself
    }
    let attr = ["passphrase_wo", "passphrase_env"]
        .into_iter()
        .find(|a| !config.get(a).is_null())
        .unwrap_or("passphrase_file");
    match secrets.previous() {
        Known::Null => diags.error(
            &AttrPath::attr(attr),
            "The passphrase changed: the rotation needs the old one",
            format!("The passphrase {attr} gives no longer matches passphrase_fingerprint in state, so this apply rotates every replica to it, which needs the passphrase the LUKS headers hold now. State does not keep it: give it with previous_passphrase_wo, previous_passphrase_file or previous_passphrase_env and keep that set until an apply succeeds (after a failed one, state still holds the old passphrase_fingerprint and the next apply needs the old passphrase again); remove it after that. (If the change was a mistake, restore the old secret.)"),
        ),
        Known::Some(Ok(old)) if prior_fp.is_some_and(|fp| !fingerprint::matches(fp, old.expose())) => {
            let at = ["previous_passphrase_wo", "previous_passphrase_env"]
                .into_iter()
                .find(|a| !config.get(a).is_null())
                .unwrap_or("previous_passphrase_file");
            diags.error(
                &AttrPath::attr(at),
                "Not the passphrase the volumes hold",
                format!("The passphrase {at} gives does not match passphrase_fingerprint in state, so it is not the passphrase the LUKS headers hold now. Point it at the old passphrase."),
            );
        }
        // Matches; or unreadable (validation reports it); or unknown (checked at apply).
        _ => {}
    }
}

/// Compares config volumes with prior ones; returns whether the agents must grow or add.
fn plan_volumes(
    prior: &Value,
    config: &Value,
    replace: &mut Vec<AttrPath>,
    diags: &mut Diagnostics,
) -> bool {
    let sizes = |v: &Value| -> BTreeMap<i64, (Option<u64>, String)> {
        v.as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|vol| {
                let n = vol.get("number").as_i64()?;
                let text = vol.get("size").as_str().unwrap_or_default().to_owned();
                Some((n, (text.parse::<Size>().ok().map(Size::kib), text)))
            })
            .collect()
    };
    let have = sizes(prior.get("volume"));
    let Some(items) = config.get("volume").as_list() else {
        return true; // unknown volumes: converge once known
    };
    let mut needs_apply = false;
    let mut wanted = BTreeSet::new();
    for (i, vol) in items.iter().enumerate() {
        let (Some(n), Some(text)) = (vol.get("number").as_i64(), vol.get("size").as_str()) else {
            needs_apply = true;
            continue;
        };
        wanted.insert(n);
        let want = text.parse::<Size>().ok().map(Size::kib);
        match have.get(&n) {
            None => needs_apply = true,
            Some((old, old_text)) => match (want, *old) {
                (Some(w), Some(o)) if w < o => diags.error(
                    &AttrPath::attr("volume").index(i).then("size"),
                    format!("Volume {n} cannot shrink"),
                    format!("volume {n} is {old_text} but the configuration asks for {text}: shrinking would destroy data, so blockstor only grows volumes. Keep size at {old_text} or more, or replace the resource."),
                ),
                (Some(w), Some(o)) if w > o => needs_apply = true,
                (None, _) | (_, None) => needs_apply = true,
                _ => {}
            },
        }
    }
    if have.keys().any(|n| !wanted.contains(n)) {
        replace.push(AttrPath::attr("volume"));
    }
    needs_apply
}

/// Explicit `nodes` must name nodes of the provider configuration.
fn check_nodes_configured(
    config: &Value,
    configured: Option<&[NodeName]>,
    diags: &mut Diagnostics,
) {
    let Some(configured) = configured else {
        return;
    };
    for attr in ["nodes", "diskless_nodes"] {
        let Some(items) = config.get(attr).as_list() else {
            continue;
        };
        for (i, n) in items.iter().enumerate() {
            let Some(name) = n.as_str() else { continue };
            if !configured.iter().any(|c| c.as_str() == name) {
                let known: Vec<&str> = configured.iter().map(NodeName::as_str).collect();
                diags.error(
                    &AttrPath::attr(attr).index(i),
                    format!("Unknown node {name}"),
                    format!("{attr}[{i}] is {name:?}, but the provider has no `node \"{name}\"` block. Configured nodes: {}.", if known.is_empty() { "(none)".to_owned() } else { known.join(", ") }),
                );
            }
        }
    }
}
