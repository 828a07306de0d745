//! The layers of the chain (STORAGE, LUKS, DRBD) behind one [`Layer`] trait, and the context
//! they act through. A layer *describes* steps; [`StepCx::act`] journals and runs them (or, when
//! planning, only records them).

pub mod drbd;
pub mod luks;
pub mod storage;

use std::collections::BTreeMap;

use async_trait::async_trait;
use blockstor_proto::wire::{DesiredResource, LuksSpec, ObservedDrbd};

pub use crate::backends::Backing;
use crate::error::Result;
pub use crate::step::StepCx;

/// One layer of the chain. Every method first looks at the system; `apply` is idempotent
/// (what is already true is skipped) and `teardown` undoes `apply`.
#[async_trait]
pub trait Layer: Send + Sync {
    /// Which layer this is.
    fn kind(&self) -> blockstor_proto::Layer;
    /// Reads this layer's state of every volume from the system into `vols`; changes nothing.
    async fn observe(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()>;
    /// Converges every volume to the desired state; runs only the steps still needed.
    /// Called after `observe`.
    async fn apply(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()>;
    /// Before a teardown, right after this layer's `observe`: make what the layers above must
    /// undo reachable (a loop file not attached since a reboot still carries a LUKS header
    /// that must be erased). Default: nothing.
    async fn prepare_teardown(&self, _cx: &mut Cx<'_>, _vols: &mut [Vol]) -> Result<()> {
        Ok(())
    }
    /// Removes this layer from every volume; missing pieces are skipped. Called after
    /// `observe` of all layers, top-down.
    async fn teardown(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()>;
}

/// The state of one volume while the engine walks the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vol {
    pub number: u32,
    /// Desired size in KiB (for teardown: the last applied size).
    pub size_kib: u64,
    /// The backing volume, when it exists.
    pub backing: Option<Backing>,
    /// The backing volume was created by this request.
    pub created_now: bool,
    /// The backing volume grew in this request (LUKS then resizes its mapping).
    pub grew_now: bool,
    pub luks: Option<LuksState>,
    /// The topmost active device so far.
    pub top: Option<String>,
    /// The device DRBD sits on (the top before the DRBD layer), set by DRBD's observe.
    pub below_drbd: Option<String>,
}

/// LUKS state of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksState {
    pub uuid: String,
    pub open: bool,
}

/// What a layer acts through: the steps context (runner, host, record; see [`StepCx`]), and
/// the request data of the LUKS and DRBD layers.
pub struct Cx<'a> {
    pub step: StepCx<'a>,
    /// The request being applied (`None` for get and delete).
    pub desired: Option<&'a DesiredResource>,
    /// The request's LUKS section, secrets included: borrowed, never copied.
    pub luks: Option<&'a LuksSpec>,
    pub props: BTreeMap<String, String>,
    /// The DRBD layer's resource-level observation.
    pub drbd: Option<ObservedDrbd>,
}

impl Cx<'_> {
    /// [`StepCx::act`], callable as `cx.act(layer, &cmd_built_from(cx))`: a method of `Cx`
    /// itself, so the command may borrow `cx` while the step is run.
    pub async fn act(
        &mut self,
        layer: blockstor_proto::Layer,
        cmd: &crate::runner::Command,
    ) -> Result<crate::runner::Output> {
        self.step.act(layer, cmd).await
    }
}

impl<'a> std::ops::Deref for Cx<'a> {
    type Target = StepCx<'a>;
    fn deref(&self) -> &StepCx<'a> {
        &self.step
    }
}

impl<'a> std::ops::DerefMut for Cx<'a> {
    fn deref_mut(&mut self) -> &mut StepCx<'a> {
        &mut self.step
    }
}
