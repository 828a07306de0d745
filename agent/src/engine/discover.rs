//! Finding a resource the store does not know (the agent's state was lost, then `terraform
//! import`): its backing volumes are looked up by name in every pool.

use blockstor_proto::{Layer as L, LayerStack, ResourceName};

use super::Engine;
use crate::backends;
use crate::error::{Error, Result};
use crate::runner::Command;
use crate::store::{ResourceRecord, StoredSpec};

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
                Ok(names) => {
                    found.extend(names.iter().filter_map(|n| backends::resource_of_volume(n)))
                }
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
            let mut layers = Vec::new();
            if self.host.exists(&res) {
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
}
