//! Request checks that run before any process: against the config, against the stored record
//! (a stack or pool never changes in place), and against other resources (minor/port collisions).

use std::collections::BTreeSet;

use blockstor_proto::secret_rules::{refused_drbd_option, refused_prop};
use blockstor_proto::wire::{DesiredResource, MAX_VOLUME_NUMBER};
use blockstor_proto::Layer as L;

use super::{unknown_pool, Engine};
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::layers::{drbd, luks};
use crate::linstor;
use crate::store::ResourceRecord;

impl Engine {
    /// Checks that need the config but no system access; run before any process.
    pub(super) fn validate(&self, d: &DesiredResource) -> Result<()> {
        if self.config.pool(&d.storage.pool).is_none() {
            return Err(unknown_pool(&d.storage.pool, &self.config));
        }
        refuse_secret_carriers(d)?;
        if d.volumes.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidVolumes,
                "volumes",
                "at least one volume is required",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in d.volumes.iter().enumerate() {
            if v.number > MAX_VOLUME_NUMBER {
                return Err(Error::invalid(
                    ErrorCode::InvalidVolumes,
                    format!("volumes[{i}].number"),
                    format!(
                        "volume number {} is above the limit {MAX_VOLUME_NUMBER}",
                        v.number
                    ),
                ));
            }
            if !seen.insert(v.number) {
                return Err(Error::invalid(
                    ErrorCode::InvalidVolumes,
                    format!("volumes[{i}].number"),
                    format!("volume number {} appears twice", v.number),
                ));
            }
        }
        // A diskless DRBD client has no LUKS header here: it needs (and gets) no passphrase.
        let diskless = d.drbd.as_ref().is_some_and(|x| x.diskless);
        if d.layer_stack.has(L::Luks) && !diskless {
            if d.luks.as_ref().is_none_or(|l| l.passphrase.is_empty()) {
                return Err(Error::invalid(
                    ErrorCode::LuksPassphraseMissing,
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
                    ErrorCode::DrbdMissing,
                    "drbd",
                    "the layer stack holds DRBD but the request has no drbd section",
                ));
            };
            drbd::render::validate(d, &self.config.node_name)?;
            if drbd.minors.len() != d.volumes.len() {
                return Err(Error::invalid(
                    ErrorCode::InvalidDrbd,
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
                ErrorCode::LayerStackChanged,
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
                ErrorCode::StoragePoolChanged,
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
        for o in self.store.drbd_uses()? {
            if o.name == d.name {
                continue;
            }
            if let Some((i, m)) = drbd
                .minors
                .iter()
                .enumerate()
                .find(|(_, m)| o.minors.contains(m))
            {
                return Err(Error::new(
                    Kind::Conflict,
                    ErrorCode::MinorInUse,
                    format!(
                        "DRBD minor {m} is used by {} on this node; pick a free minor",
                        o.name
                    ),
                )
                .field(format!("drbd.minors[{i}]")));
            }
            if o.port == drbd.port {
                return Err(Error::new(
                    Kind::Conflict,
                    ErrorCode::PortInUse,
                    format!(
                        "port {} is used by {} on this node; pick a free port",
                        drbd.port, o.name
                    ),
                )
                .field("drbd.port"));
            }
        }
        Ok(())
    }

    /// Refuses to take DRBD over from LINSTOR while LINSTOR's `.res` for the resource is in
    /// its directory: two configurations for one DRBD resource, each adjusted by its own
    /// daemon, would fight (and LINSTOR's satellite rewrites its file). The user stops the
    /// satellite (or deletes the resource from LINSTOR with its volumes kept) and moves the
    /// file away; the next apply then renders blockstor's own `.res`. The message compares
    /// what blockstor would render with LINSTOR's file, so a mismatch is seen first.
    pub(super) fn check_linstor_drbd(&self, d: &DesiredResource) -> Result<()> {
        let Some(drbd) = &d.drbd else { return Ok(()) };
        let dir = &self.config.linstor_res_dir;
        let path = linstor::res_path(dir, &d.name);
        if !self.host.exists(&path) {
            return Ok(());
        }
        let comparison = match linstor::read_res(self.host.as_ref(), dir, &d.name) {
            Ok(Some((_, res))) => {
                let hostname = linstor::hostname().unwrap_or_default();
                match res.local(&[self.config.node_name.as_str(), hostname.as_str()]) {
                    Some(local) => {
                        let theirs = (
                            local.node_id,
                            local.volumes.iter().map(|v| v.minor).collect::<Vec<_>>(),
                            local.port,
                        );
                        let ours = (
                            Some(drbd.node_id),
                            drbd.minors.iter().map(|m| Some(*m)).collect::<Vec<_>>(),
                            Some(drbd.port),
                        );
                        let show =
                            |(id, minors, port): &(Option<u32>, Vec<Option<u32>>, Option<u16>)| {
                                let minors: Vec<String> = minors
                                    .iter()
                                    .map(|m| m.map_or("?".into(), |m| m.to_string()))
                                    .collect();
                                format!(
                                    "node-id {}, minors [{}], port {}",
                                    id.map_or("?".into(), |i| i.to_string()),
                                    minors.join(", "),
                                    port.map_or("?".into(), |p| p.to_string())
                                )
                            };
                        if theirs == ours {
                            format!("blockstor's settings match LINSTOR's ({})", show(&ours))
                        } else {
                            format!(
                                "blockstor would render {} where LINSTOR has {}; import the \
                                 resource again so state takes LINSTOR's values",
                                show(&ours),
                                show(&theirs)
                            )
                        }
                    }
                    None => "no section of it is this node".into(),
                }
            }
            Ok(None) => String::new(),
            Err(e) => e,
        };
        Err(Error::new(
            Kind::Conflict,
            ErrorCode::LinstorDrbdActive,
            format!(
                "LINSTOR's {} still configures DRBD resource {} on node {}; blockstor will not \
                 take DRBD over while it exists ({comparison}). Nothing was changed. Stop the \
                 LINSTOR satellite on this node (or delete the resource in LINSTOR keeping its \
                 volumes), move the file out of {}, then apply again: blockstor then writes its \
                 own .res with the same node ids, minors and ports, and never recreates DRBD \
                 metadata",
                path.display(),
                d.name,
                self.config.node_name,
                dir.display()
            ),
        )
        .field("layer_stack"))
    }
}

/// Refuses a props key that looks like a secret and a DRBD option the agent writes itself
/// (the rules of [`blockstor_proto::secret_rules`], which the provider applies at plan): a
/// secret prop would be stored and shown in clear, and a second `shared-secret` makes drbdadm
/// quote both secrets in its error.
fn refuse_secret_carriers(d: &DesiredResource) -> Result<()> {
    if let Some((key, why)) = d
        .props
        .keys()
        .find_map(|k| refused_prop(k).map(|why| (k, why)))
    {
        return Err(Error::invalid(
            ErrorCode::InvalidProp,
            format!("props[\"{key}\"]"),
            why,
        ));
    }
    if let Some(x) = &d.drbd {
        if let Some((key, why)) = x
            .options
            .keys()
            .find_map(|k| refused_drbd_option(k).map(|why| (k, why)))
        {
            return Err(Error::invalid(
                ErrorCode::InvalidDrbd,
                format!("drbd.options[\"{key}\"]"),
                why,
            ));
        }
    }
    Ok(())
}
