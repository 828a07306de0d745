//! `GET /v1/node`: versions, pools with free/total space, DRBD minors and ports in use.

use blockstor_proto::wire::{NodeInfo, PoolInfo, Versions};
use blockstor_proto::LayerStack;

use super::versions::Stamp;
use super::Engine;
use crate::backends;
use crate::error::Result;
use crate::store::{ResourceRecord, StoredSpec};

impl Engine {
    /// `GET /v1/node`: versions, pools with space, used minors and ports.
    pub async fn node(&self) -> Result<NodeInfo> {
        let mut scratch = ResourceRecord::new(StoredSpec {
            name: "node_info".parse().expect("valid name"),
            layer_stack: LayerStack::parse(&["STORAGE"]).expect("valid stack"),
            volumes: vec![],
            pool: "none".parse().expect("valid name"),
            props: Default::default(),
            drbd: None,
        });
        let cx = self.cx(&mut scratch, None, true);
        let mut pools = Vec::new();
        for p in &self.config.pools {
            let backend = backends::for_pool(p);
            // A pool whose tool is missing reports zero rather than failing the whole call.
            let (free_kib, total_kib) = backend.space(&cx).await.unwrap_or_else(|e| {
                tracing::warn!(pool = %p.name, error = %e, "pool space unavailable");
                (0, 0)
            });
            pools.push(PoolInfo {
                name: p.name.clone(),
                backend: p.backend.kind().to_owned(),
                free_kib,
                total_kib,
            });
        }
        let (mut used_minors, mut used_ports) = (Vec::new(), Vec::new());
        for d in self.store.drbd_uses()? {
            used_minors.extend(d.minors);
            used_ports.push(d.port);
        }
        used_minors.sort_unstable();
        used_ports.sort_unstable();
        Ok(NodeInfo {
            name: self.config.node_name.clone(),
            versions: self.versions().await,
            pools,
            used_minors,
            used_ports,
        })
    }

    /// The tool versions, asked once and again only when a tool binary or the DRBD module
    /// changed (see [`super::versions`]).
    async fn versions(&self) -> Versions {
        let stamp = Stamp::take(self.host.as_ref());
        self.versions
            .get(stamp, self.runner.as_ref(), self.host.drbd_available())
            .await
    }
}
