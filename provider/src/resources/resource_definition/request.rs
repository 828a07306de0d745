//! The request document: what a definition asks of each node's agent. Built here, by one
//! function, for both the plan preview ([`super::preview`]) and the apply ([`super::apply`]),
//! so the steps a plan shows are the steps of the document the apply sends.
//!
//! Two stages, because the apply needs the stack and the volumes to place and allocate
//! before the rest is known: [`Request::of`] takes what the configuration decides, and
//! [`Request::spec`] adds the placement, the generation and the DRBD allocation.

use std::collections::BTreeMap;

use blockstor_proto::wire::{Passphrase, VolumeSpec};
use blockstor_proto::{Layer, LayerStack, NodeName, ResourceName, Size, StoragePoolName};

use crate::controller::desired::{DrbdAllocation, Spec};
use crate::controller::resolve::{Effective, Known};
use crate::controller::secret::{self, Passphrases};
use crate::resources::diag::AttrPath;
use crate::values::Value;

/// What the configuration decides of the request, with its passphrases resolved once.
pub struct Request {
    pub name: ResourceName,
    pub layer_stack: LayerStack,
    /// The `volume` blocks, sorted by number.
    pub volumes: Vec<VolumeSpec>,
    pub passphrase: Known<Passphrase>,
    /// The passphrase the LUKS headers hold now, when `passphrase` rotates away from it.
    pub previous_passphrase: Option<Passphrase>,
    pub props: Known<BTreeMap<String, String>>,
}

/// Why the configuration does not make a request.
#[derive(Debug)]
pub enum Invalid {
    /// `name` or the effective `layer_stack` is not known or not valid.
    NameOrStack,
    /// This `volume` block has no valid number or size.
    Volume(AttrPath),
}

impl Request {
    /// The request `config` makes, resolved as `eff` (with `secrets`, read once per call);
    /// `prior` is the state, whose literal passphrase is the one the headers hold.
    pub fn of(
        prior: &Value,
        config: &Value,
        eff: &Effective,
        secrets: &Passphrases,
    ) -> Result<Request, Invalid> {
        let name = config
            .get("name")
            .as_str()
            .and_then(|n| n.parse::<ResourceName>().ok());
        let (Some(name), Known::Some(layer_stack)) = (name, eff.layer_stack.clone()) else {
            return Err(Invalid::NameOrStack);
        };
        let volumes = volume_specs(config).map_err(Invalid::Volume)?;
        let passphrase = eff.passphrase.clone();
        // A changed passphrase is a rotation: the headers hold the prior one, known from
        // state when it was literal, else from a previous_* reference (plan checked its
        // fingerprint).
        let previous_passphrase = previous_passphrase(
            prior,
            secrets,
            &layer_stack,
            passphrase.clone().known().as_ref(),
        );
        Ok(Request {
            name,
            layer_stack,
            volumes,
            passphrase,
            previous_passphrase,
            props: eff.props.clone(),
        })
    }

    /// Whether nothing of it is left unknown: the preview asks the agents only then (the
    /// apply, where everything is known, sends what it has).
    pub fn is_complete(&self) -> bool {
        !self.passphrase.is_unknown() && !self.props.is_unknown()
    }

    /// The spec for `nodes` on `pool`, from which [`Spec::desired_for`] makes each node's
    /// document.
    pub fn spec(
        &self,
        pool: StoragePoolName,
        nodes: Vec<NodeName>,
        generation: u64,
        drbd: Option<DrbdAllocation>,
    ) -> Spec {
        Spec {
            name: self.name.clone(),
            layer_stack: self.layer_stack.clone(),
            volumes: self.volumes.clone(),
            pool,
            passphrase: self.passphrase.clone().known(),
            previous_passphrase: self.previous_passphrase.clone(),
            props: self.props.clone().known().unwrap_or_default(),
            generation,
            nodes,
            diskless: Default::default(),
            drbd,
        }
    }
}

/// The passphrase the LUKS headers hold now, when `passphrase` rotates away from it.
fn previous_passphrase(
    prior: &Value,
    secrets: &Passphrases,
    stack: &LayerStack,
    passphrase: Option<&Passphrase>,
) -> Option<Passphrase> {
    secret::literal_in_state(prior)
        .known()
        .or_else(|| secrets.previous().known().and_then(Result::ok))
        .filter(|old| {
            stack.has(Layer::Luks) && passphrase.is_some_and(|new| new.expose() != old.expose())
        })
}

/// The `volume` blocks as wire volumes, sorted by number.
fn volume_specs(config: &Value) -> Result<Vec<VolumeSpec>, AttrPath> {
    let mut out = Vec::new();
    for (i, vol) in config
        .get("volume")
        .as_list()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let number = vol
            .get("number")
            .as_i64()
            .and_then(|n| u32::try_from(n).ok());
        let size = vol
            .get("size")
            .as_str()
            .and_then(|s| s.parse::<Size>().ok());
        match (number, size) {
            (Some(number), Some(size_kib)) => out.push(VolumeSpec { number, size_kib }),
            _ => return Err(AttrPath::attr("volume").index(i)),
        }
    }
    out.sort_by_key(|v| v.number);
    Ok(out)
}
