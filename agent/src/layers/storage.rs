//! STORAGE: the backing volume of every volume, through the pool's [`Backend`].
//! Create when missing, grow when smaller, never shrink; teardown removes it.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Cx, Layer, Vol};
use crate::backends::Backend;
use blockstor_proto::secret_rules::new_passphrase_problem;

use crate::error::{Error, ErrorCode, Kind, Result};

/// The bottom layer.
pub struct Storage {
    pub backend: Arc<dyn Backend>,
    /// Set when the stack holds LUKS: a volume created here may then be formatted.
    pub luks_above: bool,
    /// Set when the stack holds DRBD: a grow here leaves a `drbdadm resize` pending.
    pub drbd_above: bool,
}

impl Storage {
    /// Records every volume about to be created as this agent's, in one fsynced write (with
    /// the resource's spec) *before* any of them exists: whatever a crash leaves behind (a
    /// file, a loop device, a half-written LUKS header), the record names it, so DELETE removes
    /// it and the next apply finishes it as this agent's own instead of adopting it as found.
    /// A mark without a volume is harmless: teardown skips what does not exist.
    fn record_before_creating(&self, cx: &mut Cx<'_>, vols: &[Vol]) -> Result<()> {
        let mut marked = false;
        for v in vols.iter().filter(|v| v.backing.is_none()) {
            let rec = cx.record.volume(v.number);
            rec.created_by_agent = true;
            // The one case where formatting a device that is not all zero is allowed.
            rec.awaiting_luks_format = self.luks_above;
            marked = true;
        }
        if marked {
            cx.persist()?;
        }
        Ok(())
    }

    /// Refusals that must come before any volume is made, so a refused request leaves
    /// nothing behind (not even an empty file): a passphrase a new LUKS header may not take,
    /// and a pool without the free space the new and grown volumes need.
    async fn check_before_making(&self, cx: &mut Cx<'_>, vols: &[Vol]) -> Result<()> {
        let needs = |v: &Vol| match &v.backing {
            None => v.size_kib,
            Some(b) => v.size_kib.saturating_sub(b.size_kib),
        };
        if vols.iter().all(|v| needs(v) == 0) {
            return Ok(());
        }
        if self.luks_above && vols.iter().any(|v| v.backing.is_none()) {
            // The first format of these volumes comes next, with this passphrase.
            if let Some(why) = cx
                .luks
                .and_then(|l| new_passphrase_problem(l.passphrase.expose()))
            {
                return Err(Error::invalid(ErrorCode::InvalidRequest, "passphrase", why));
            }
        }
        if !self.backend.takes_space_up_front() {
            return Ok(());
        }
        // Space unknown: the create or grow itself then reports the tool's own error.
        let Ok((free_kib, _)) = self.backend.space(cx).await else {
            return Ok(());
        };
        let mut need_kib = 0u64;
        for (i, v) in vols.iter().enumerate() {
            need_kib = need_kib.saturating_add(needs(v));
            if need_kib > free_kib {
                return Err(Error::new(
                    Kind::Unprocessable,
                    ErrorCode::InsufficientSpace,
                    format!(
                        "volume {} needs {} KiB more (with the volumes before it, {need_kib} \
                         KiB) but the {} pool has {free_kib} KiB free; use a smaller size, \
                         free space in the pool or use another pool",
                        v.number,
                        needs(v),
                        self.backend.kind()
                    ),
                )
                .field(format!("volumes[{i}].size_kib")));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Layer for Storage {
    fn kind(&self) -> blockstor_proto::Layer {
        blockstor_proto::Layer::Storage
    }

    async fn observe(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        for v in vols.iter_mut() {
            v.backing = self.backend.observe(cx, v.number).await?;
            v.top = v.backing.as_ref().and_then(|b| b.device.clone());
        }
        Ok(())
    }

    async fn apply(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        self.check_before_making(cx, vols).await?;
        self.record_before_creating(cx, vols)?;
        for (i, v) in vols.iter_mut().enumerate() {
            let backing = match v.backing.take() {
                None => {
                    let b = self.backend.create(cx, v.number, v.size_kib).await?;
                    v.created_now = true;
                    b
                }
                Some(b) if b.size_kib > v.size_kib => {
                    return Err(Error::invalid(
                        ErrorCode::ShrinkRefused,
                        format!("volumes[{i}].size_kib"),
                        format!(
                            "volume {} is {} KiB on this node and cannot shrink to {} KiB; \
                             keep the size or create a new resource",
                            v.number, b.size_kib, v.size_kib
                        ),
                    ))
                }
                // Also when the volume grew but its device was not told (a grow cut short).
                Some(b)
                    if b.size_kib < v.size_kib || b.device_kib.is_some_and(|k| k < b.size_kib) =>
                {
                    if self.drbd_above {
                        // Durable before the grow: once the backing volume is bigger, only
                        // this mark says DRBD still has to be told (see VolumeRecord).
                        let rec = cx.record.volume(v.number);
                        if !rec.pending_drbd_resize {
                            rec.pending_drbd_resize = true;
                            cx.persist()?;
                        }
                    }
                    let b = self.backend.activate(cx, v.number, b).await?;
                    v.grew_now = true;
                    self.backend.grow(cx, v.number, b, v.size_kib).await?
                }
                Some(b) => self.backend.activate(cx, v.number, b).await?,
            };
            v.top = backing.device.clone();
            v.backing = Some(backing);
        }
        Ok(())
    }

    async fn prepare_teardown(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        if !self.luks_above {
            return Ok(());
        }
        for v in vols.iter_mut() {
            let detached = v.backing.as_ref().is_some_and(|b| b.device.is_none());
            if detached && cx.record.owns(v.number) {
                let b = v.backing.take().expect("checked above");
                let b = self.backend.activate(cx, v.number, b).await?;
                v.top = b.device.clone();
                v.backing = Some(b);
            }
        }
        Ok(())
    }

    async fn teardown(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        for v in vols.iter_mut() {
            if v.backing.is_some() && !cx.record.owns(v.number) {
                tracing::warn!(rd = %cx.rd, volume = v.number,
                    "backing volume was neither created nor adopted by this agent; left in place");
                v.backing = None;
                cx.record.volumes.remove(&v.number);
                continue;
            }
            self.backend.remove(cx, v.number, v.backing.take()).await?;
            cx.record.volumes.remove(&v.number);
            v.top = None;
        }
        Ok(())
    }
}
