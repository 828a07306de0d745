//! The contract every storage backend keeps, and the small parsers they share. Kept apart from
//! `mod.rs` so the backends import it without importing the module that picks them.

use async_trait::async_trait;
use blockstor_proto::{parse_volume_name, ResourceName};

use crate::error::Result;
use crate::step::StepCx;

/// A backing volume as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// Block device, e.g. `/dev/loop3`; `None` for a loop file not attached to a loop device.
    pub device: Option<String>,
    pub size_kib: u64,
    /// The size the kernel's block device shows, when it can lag behind `size_kib` (a loop
    /// device not yet told about a grown file); `None` when it always follows.
    pub device_kib: Option<u64>,
}

/// A storage pool's backend. Idempotent by contract: `create` is only called when `observe`
/// found nothing, `grow` only when smaller, `remove` swallows "not found" so teardown converges.
/// Never shrinks.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `loopfile`, `lvm`, `lvm-thin` or `zfs`.
    fn kind(&self) -> &'static str;
    /// The backing volume, if it exists. Read-only.
    async fn observe(&self, cx: &mut StepCx<'_>, vol: u32) -> Result<Option<Backing>>;
    /// Creates the backing volume with exactly `size_kib` and makes its block device available.
    async fn create(&self, cx: &mut StepCx<'_>, vol: u32, size_kib: u64) -> Result<Backing>;
    /// Makes an existing backing volume's block device available (e.g. re-attach a loop file
    /// after reboot). Default: nothing to do.
    async fn activate(&self, _cx: &mut StepCx<'_>, _vol: u32, backing: Backing) -> Result<Backing> {
        Ok(backing)
    }
    /// Grows to `size_kib` (larger than the current size).
    async fn grow(
        &self,
        cx: &mut StepCx<'_>,
        vol: u32,
        current: Backing,
        size_kib: u64,
    ) -> Result<Backing>;
    /// Removes the backing volume (and detaches it).
    async fn remove(&self, cx: &mut StepCx<'_>, vol: u32, current: Option<Backing>) -> Result<()>;
    /// `(free_kib, total_kib)` of the pool.
    async fn space(&self, cx: &StepCx<'_>) -> Result<(u64, u64)>;
    /// Whether a volume takes its whole size from the pool's free space when created or
    /// grown, so the agent checks the free space first. A thin pool over-provisions by design.
    fn takes_space_up_front(&self) -> bool {
        true
    }
    /// Names of every volume in the pool (blockstor's are `<rd>_<vol:05>`). Read-only.
    async fn volume_names(&self, cx: &StepCx<'_>) -> Result<Vec<String>>;
    /// Volume numbers of `cx.rd` present in the pool, for a resource the store does not know
    /// (an import after the agent's state was lost). Read-only.
    async fn discover(&self, cx: &StepCx<'_>) -> Result<Vec<u32>> {
        let names = self.volume_names(cx).await?;
        Ok(numbers_in(&cx.rd, names.iter().map(String::as_str)))
    }
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

/// Parses the first integer of a tool's output (`lvs --units k --nosuffix` prints `  65536.00`).
pub(crate) fn parse_kib(s: &str) -> Option<u64> {
    let t = s.trim();
    let int = t.split(['.', ',']).next()?;
    int.parse().ok()
}
