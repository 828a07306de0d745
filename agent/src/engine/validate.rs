//! Request checks that run before any process: against the config, against the stored record
//! (a stack or pool never changes in place), and against other resources (minor/port collisions).

use std::collections::BTreeSet;

use blockstor_proto::wire::{DesiredResource, MAX_VOLUME_NUMBER};
use blockstor_proto::Layer as L;

use super::{unknown_pool, Engine};
use crate::error::{Error, Kind, Result};
use crate::layers::{drbd, luks};
use crate::store::ResourceRecord;

impl Engine {
    /// Checks that need the config but no system access; run before any process.
    pub(super) fn validate(&self, d: &DesiredResource) -> Result<()> {
        if self.config.pool(&d.storage.pool).is_none() {
            return Err(unknown_pool(&d.storage.pool, &self.config));
        }
        if d.volumes.is_empty() {
            return Err(Error::invalid(
                "invalid_volumes",
                "volumes",
                "at least one volume is required",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in d.volumes.iter().enumerate() {
            if v.number > MAX_VOLUME_NUMBER {
                return Err(Error::invalid(
                    "invalid_volumes",
                    format!("volumes[{i}].number"),
                    format!(
                        "volume number {} is above the limit {MAX_VOLUME_NUMBER}",
                        v.number
                    ),
                ));
            }
            if !seen.insert(v.number) {
                return Err(Error::invalid(
                    "invalid_volumes",
                    format!("volumes[{i}].number"),
                    format!("volume number {} appears twice", v.number),
                ));
            }
        }
        if d.layer_stack.has(L::Luks) {
            if d.luks.as_ref().is_none_or(|l| l.passphrase.is_empty()) {
                return Err(Error::invalid(
                    "luks_passphrase_missing",
                    "passphrase",
                    "the layer stack holds LUKS but no passphrase was given; set passphrase on \
                     the resource definition or its resource group (blockstor never creates an \
                     unencrypted volume for a LUKS stack)",
                ));
            }
            luks::validate_props(&d.props)?;
        }
        if d.layer_stack.has(L::Drbd) {
            let Some(drbd) = &d.drbd else {
                return Err(Error::invalid(
                    "drbd_missing",
                    "drbd",
                    "the layer stack holds DRBD but the request has no drbd section",
                ));
            };
            drbd::render::validate(d, &self.config.node_name)?;
            if drbd.minors.len() != d.volumes.len() {
                return Err(Error::invalid(
                    "invalid_drbd",
                    "drbd.minors",
                    format!(
                        "{} minors for {} volumes; give one minor per volume",
                        drbd.minors.len(),
                        d.volumes.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A resource keeps its stack and pool for life (the provider replaces it instead).
    pub(super) fn check_against_record(
        &self,
        d: &DesiredResource,
        r: Option<&ResourceRecord>,
    ) -> Result<()> {
        let Some(r) = r else { return Ok(()) };
        if r.spec.layer_stack != d.layer_stack {
            return Err(Error::new(
                Kind::Conflict,
                "layer_stack_changed",
                format!(
                    "{} exists here with layer stack {}; a stack cannot change in place, replace the resource",
                    d.name, r.spec.layer_stack
                ),
            )
            .field("layer_stack"));
        }
        if r.spec.pool != d.storage.pool {
            return Err(Error::new(
                Kind::Conflict,
                "storage_pool_changed",
                format!(
                    "{} lives in pool {} here; replace the resource to move it",
                    d.name, r.spec.pool
                ),
            )
            .field("storage.pool"));
        }
        Ok(())
    }

    /// Rejects a DRBD minor or port already used by another resource on this node (409).
    pub(super) fn check_collisions(&self, d: &DesiredResource) -> Result<()> {
        let Some(drbd) = &d.drbd else { return Ok(()) };
        for other in self.store.list()? {
            if other.spec.name == d.name {
                continue;
            }
            let Some(o) = &other.spec.drbd else { continue };
            if let Some((i, m)) = drbd
                .minors
                .iter()
                .enumerate()
                .find(|(_, m)| o.minors.contains(m))
            {
                return Err(Error::new(
                    Kind::Conflict,
                    "minor_in_use",
                    format!(
                        "DRBD minor {m} is used by {} on this node; pick a free minor",
                        other.spec.name
                    ),
                )
                .field(format!("drbd.minors[{i}]")));
            }
            if o.port == drbd.port {
                return Err(Error::new(
                    Kind::Conflict,
                    "port_in_use",
                    format!(
                        "port {} is used by {} on this node; pick a free port",
                        drbd.port, other.spec.name
                    ),
                )
                .field("drbd.port"));
            }
        }
        Ok(())
    }
}
