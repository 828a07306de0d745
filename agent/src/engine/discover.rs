//! Finding a resource the store does not know (the agent's state was lost, or LINSTOR built
//! it, then `terraform import`): its backing volumes are looked up by name in every pool, and
//! LINSTOR's `.res` file and dm-crypt names say whether LINSTOR built it and with which DRBD
//! node id, minors and port.

use blockstor_proto::wire::{DrbdPeer, Origin};
use blockstor_proto::{Layer as L, LayerStack, ResourceName};

use super::Engine;
use crate::backends;
use crate::error::{Error, ErrorCode, Result};
use crate::linstor;
use crate::runner::Command;
use crate::store::{ResourceRecord, StoredDrbd, StoredSpec};

impl Engine {
    /// Names of resources with backing volumes (`<rd>_<vol:05>`) in any pool, sorted; pools
    /// that cannot be listed are skipped (logged at debug).
    pub(super) async fn discover_names(&self) -> Result<Vec<ResourceName>> {
        let mut found = std::collections::BTreeSet::new();
        for pool in &self.config.pools {
            let backend = backends::for_pool(pool);
            let mut record = ResourceRecord::new(StoredSpec {
                // Any valid name: listing a pool does not depend on it.
                name: "list".parse().expect("valid name"),
                layer_stack: LayerStack::parse(&["STORAGE"]).expect("valid stack"),
                volumes: vec![],
                pool: pool.name.clone(),
                props: Default::default(),
                drbd: None,
            });
            let cx = self.cx(&mut record, None, true);
            match backend.volume_names(&cx).await {
                Ok(names) => found.extend(
                    names
                        .iter()
                        .filter_map(|n| blockstor_proto::resource_of_volume(n)),
                ),
                Err(e) => {
                    tracing::debug!(pool = %pool.name, error = %e, "listing skipped a pool")
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Rebuilds a record (not stored) from what the system holds: backing volumes named
    /// `<rd>_<vol:05>` in some pool, LUKS if the first one has a header, DRBD if a `.res` exists.
    pub(super) async fn discover(&self, name: &ResourceName) -> Result<Option<ResourceRecord>> {
        for pool in &self.config.pools {
            let backend = backends::for_pool(pool);
            let mut record = ResourceRecord::new(StoredSpec {
                name: name.clone(),
                layer_stack: LayerStack::parse(&["STORAGE"]).expect("valid stack"),
                volumes: vec![],
                pool: pool.name.clone(),
                props: Default::default(),
                drbd: None,
            });
            let mut cx = self.cx(&mut record, None, true);
            let numbers = match backend.discover(&cx).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(pool = %pool.name, error = %e, "discovery skipped a pool");
                    continue;
                }
            };
            let Some(&first) = numbers.first() else {
                continue;
            };
            let mut volumes = Vec::new();
            let mut luks = false;
            for n in &numbers {
                let Some(b) = backend.observe(&mut cx, *n).await? else {
                    continue;
                };
                if *n == first {
                    if let Some(dev) = &b.device {
                        luks = cx
                            .observe(&Command::new("cryptsetup", ["isLuks", dev.as_str()]))
                            .await?
                            .success();
                    }
                }
                let size_kib = blockstor_proto::Size::from_kib(
                    b.size_kib.max(blockstor_proto::size::EXTENT_KIB),
                )
                .map_err(|e| Error::internal(e.to_string()))?;
                volumes.push(blockstor_proto::wire::VolumeSpec {
                    number: *n,
                    size_kib,
                });
            }
            let res = self
                .config
                .state_dir
                .join("drbd.d")
                .join(format!("{name}.res"));
            let numbers: Vec<u32> = volumes.iter().map(|v| v.number).collect();
            let linstor = self.discover_linstor(name, &numbers)?;
            if let Some(found) = &linstor {
                record.origin = Origin::Linstor;
                record.spec.drbd = found.drbd.clone();
                luks |= found.luks_below_drbd;
            }
            let mut layers = Vec::new();
            if self.host.exists(&res) || linstor.as_ref().is_some_and(|l| l.drbd.is_some()) {
                layers.push(L::Drbd);
            }
            if luks {
                layers.push(L::Luks);
            }
            layers.push(L::Storage);
            record.spec.layer_stack =
                LayerStack::from_layers(layers).map_err(|e| Error::internal(e.to_string()))?;
            record.spec.volumes = volumes;
            return Ok(Some(record));
        }
        Ok(None)
    }

    /// LINSTOR's marks of `name` on this node: its `.res` file (read into the DRBD settings
    /// LINSTOR gave this node) or its dm-crypt mapping name. `None` when there are none.
    fn discover_linstor(&self, name: &ResourceName, vols: &[u32]) -> Result<Option<LinstorFound>> {
        let dir = &self.config.linstor_res_dir;
        if !linstor::has_marks(self.host.as_ref(), dir, name, vols) {
            return Ok(None);
        }
        let Some((path, res)) = linstor::read_res(self.host.as_ref(), dir, name)
            .map_err(|m| linstor_res_error(name, m))?
        else {
            return Ok(Some(LinstorFound::default())); // only the dm-crypt name: no DRBD
        };
        let hostname = linstor::hostname().unwrap_or_default();
        let local = res
            .local(&[self.config.node_name.as_str(), hostname.as_str()])
            .ok_or_else(|| {
                linstor_res_error(
                    name,
                    format!(
                        "{}: no `on` section is this node (looked for {:?} and host name {:?})",
                        path.display(),
                        self.config.node_name.as_str(),
                        hostname
                    ),
                )
            })?;
        let missing = |what: &str| {
            linstor_res_error(
                name,
                format!(
                    "{}: the section of {} has no {what}",
                    path.display(),
                    local.name
                ),
            )
        };
        let node_id = local.node_id.ok_or_else(|| missing("node-id"))?;
        let port = local.port.ok_or_else(|| missing("address with a port"))?;
        let minors = local
            .volumes
            .iter()
            .map(|v| v.minor.ok_or_else(|| missing("device minor")))
            .collect::<Result<Vec<u32>>>()?;
        let peers = res
            .hosts
            .iter()
            .filter(|h| h.name != local.name)
            .filter_map(|h| {
                Some(DrbdPeer {
                    name: h.name.parse().ok()?,
                    node_id: h.node_id?,
                    address: h.address.clone()?,
                    port: h.port?,
                    diskless: false,
                })
            })
            .collect();
        let luks_below_drbd = local.volumes.iter().any(|v| {
            v.disk
                .as_deref()
                .is_some_and(|d| d.starts_with(&format!("/dev/mapper/{}", linstor::CRYPT_PREFIX)))
        });
        Ok(Some(LinstorFound {
            drbd: Some(StoredDrbd {
                node_id,
                port,
                minors,
                peers,
                protocol: res
                    .net
                    .get("protocol")
                    .cloned()
                    .unwrap_or_else(|| "C".into()),
                address: local.address.clone().unwrap_or_default(),
                // A LINSTOR replica with a disk (a diskless one has no volume to find).
                diskless: false,
            }),
            luks_below_drbd,
        }))
    }
}

/// What LINSTOR left of a resource on this node.
#[derive(Debug, Default)]
struct LinstorFound {
    /// From its `.res`: this node's node id, port, minors; the peers it names.
    drbd: Option<StoredDrbd>,
    /// Its `.res` puts DRBD on `/dev/mapper/Linstor-Crypt-…`.
    luks_below_drbd: bool,
}

fn linstor_res_error(name: &ResourceName, detail: String) -> Error {
    Error::new(
        crate::error::Kind::Conflict,
        ErrorCode::LinstorResUnreadable,
        format!(
            "resource {name} has a LINSTOR .res file this agent cannot read ({detail}); nothing \
             was changed. Check the file (`drbdadm -c FILE dump`), or set linstor_res_dir in \
             the agent config to LINSTOR's directory"
        ),
    )
}
