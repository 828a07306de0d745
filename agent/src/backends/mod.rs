//! Storage backends: where backing volumes `<rd>_<vol:05>` live. One trait, one file each.

pub mod loopfile;
pub mod lvm;
pub mod zfs;

use std::sync::Arc;

use async_trait::async_trait;
use blockstor_proto::ResourceName;

use crate::config::{BackendConfig, PoolConfig};
use crate::error::Result;
use crate::layers::{Backing, Cx};

/// The backing volume name of volume `vol` of `rd`: `<rd>_<vol:05>`.
pub fn volume_name(rd: &ResourceName, vol: u32) -> String {
    format!("{rd}_{vol:05}")
}

/// A storage pool's backend. Idempotent by contract: `create` is only called when `observe`
/// found nothing, `grow` only when smaller, `remove` swallows "not found" so teardown converges.
/// Never shrinks.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `loopfile`, `lvm`, `lvm-thin` or `zfs`.
    fn kind(&self) -> &'static str;
    /// The backing volume, if it exists. Read-only.
    async fn observe(&self, cx: &mut Cx<'_>, vol: u32) -> Result<Option<Backing>>;
    /// Creates the backing volume with exactly `size_kib` and makes its block device available.
    async fn create(&self, cx: &mut Cx<'_>, vol: u32, size_kib: u64) -> Result<Backing>;
    /// Makes an existing backing volume's block device available (e.g. re-attach a loop file
    /// after reboot). Default: nothing to do.
    async fn activate(&self, _cx: &mut Cx<'_>, _vol: u32, backing: Backing) -> Result<Backing> {
        Ok(backing)
    }
    /// Grows to `size_kib` (larger than the current size).
    async fn grow(
        &self,
        cx: &mut Cx<'_>,
        vol: u32,
        current: Backing,
        size_kib: u64,
    ) -> Result<Backing>;
    /// Removes the backing volume (and detaches it).
    async fn remove(&self, cx: &mut Cx<'_>, vol: u32, current: Option<Backing>) -> Result<()>;
    /// `(free_kib, total_kib)` of the pool.
    async fn space(&self, cx: &Cx<'_>) -> Result<(u64, u64)>;
    /// Names of every volume in the pool (blockstor's are `<rd>_<vol:05>`). Read-only.
    async fn volume_names(&self, cx: &Cx<'_>) -> Result<Vec<String>>;
    /// Volume numbers of `cx.rd` present in the pool, for a resource the store does not know
    /// (an import after the agent's state was lost). Read-only.
    async fn discover(&self, cx: &Cx<'_>) -> Result<Vec<u32>> {
        let names = self.volume_names(cx).await?;
        Ok(numbers_in(&cx.rd, names.iter().map(String::as_str)))
    }
}

/// The resource a backing volume name `<rd>_<vol:05>` belongs to, if it is one of ours.
pub fn resource_of_volume(name: &str) -> Option<ResourceName> {
    let (rd, digits) = name.trim().rsplit_once('_')?;
    (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rd.parse().ok())
        .flatten()
}

/// The volume number in a backing volume name `<rd>_<vol:05>`, if `name` is one of `rd`'s.
pub fn parse_volume_name(rd: &ResourceName, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(rd.as_str())?.strip_prefix('_')?;
    (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Sorted, deduplicated volume numbers of `rd` among `names`.
pub(crate) fn numbers_in<'n>(
    rd: &ResourceName,
    names: impl IntoIterator<Item = &'n str>,
) -> Vec<u32> {
    let mut v: Vec<u32> = names
        .into_iter()
        .filter_map(|n| parse_volume_name(rd, n.trim()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The backend for a configured pool.
pub fn for_pool(pool: &PoolConfig) -> Arc<dyn Backend> {
    match &pool.backend {
        BackendConfig::Loopfile { directory } => Arc::new(loopfile::LoopFile {
            directory: directory.clone(),
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

/// Parses the first integer of a tool's output (`lvs --units k --nosuffix` prints `  65536.00`).
pub(crate) fn parse_kib(s: &str) -> Option<u64> {
    let t = s.trim();
    let int = t.split(['.', ',']).next()?;
    int.parse().ok()
}

#[cfg(test)]
mod contract_tests;
