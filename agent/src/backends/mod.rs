//! Storage backends: where backing volumes `<rd>_<vol:05>` live. One trait, one file each.

mod backend;
pub mod loopfile;
pub mod lvm;
pub mod zfs;

pub use backend::{Backend, Backing};

use std::sync::Arc;

use crate::config::{BackendConfig, PoolConfig};
use crate::host::Host;

/// What the pools look like, read once for a walk over many resources (a list) instead of
/// once per resource. Opaque: only the backends know what they keep in it.
#[derive(Debug, Default)]
pub struct PoolScan {
    /// Which loop device backs which file (`None` where there is no sysfs to read).
    loops: Option<Arc<loopfile::LoopScan>>,
}

impl PoolScan {
    /// Reads what every backend can share across a list. Read-only.
    pub fn take(host: &dyn Host) -> PoolScan {
        PoolScan {
            loops: loopfile::LoopScan::take(host).map(Arc::new),
        }
    }
}

/// The backend for a configured pool.
pub fn for_pool(pool: &PoolConfig) -> Arc<dyn Backend> {
    for_pool_with(pool, None)
}

/// The backend for a configured pool, observing through `scan` (taken for a whole list)
/// instead of the live system where it can. Only for read-only walks.
pub fn for_pool_with(pool: &PoolConfig, scan: Option<Arc<PoolScan>>) -> Arc<dyn Backend> {
    match &pool.backend {
        BackendConfig::Loopfile { directory } => Arc::new(loopfile::LoopFile {
            directory: directory.clone(),
            scan: scan.and_then(|s| s.loops.clone()),
        }),
        BackendConfig::Lvm { volume_group } => Arc::new(lvm::Lvm {
            volume_group: volume_group.clone(),
            thin_pool: None,
        }),
        BackendConfig::LvmThin {
            volume_group,
            thin_pool,
        } => Arc::new(lvm::Lvm {
            volume_group: volume_group.clone(),
            thin_pool: Some(thin_pool.clone()),
        }),
        BackendConfig::Zfs { dataset } => Arc::new(zfs::Zfs {
            dataset: dataset.clone(),
        }),
    }
}

#[cfg(test)]
mod contract_tests;
