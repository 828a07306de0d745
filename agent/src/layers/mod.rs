//! The layers of the chain (STORAGE, LUKS, DRBD) behind one [`Layer`] trait, and the context
//! they act through. A layer *describes* steps; [`Cx::act`] journals and runs them (or, when
//! planning, only records them).

pub mod drbd;
pub mod luks;
pub mod storage;

use std::collections::BTreeMap;

use async_trait::async_trait;
use blockstor_proto::wire::{DesiredResource, ObservedDrbd, Passphrase, PlannedStep};
use blockstor_proto::ResourceName;

use crate::error::Result;
use crate::host::Host;
use crate::runner::{Command, Output, Runner};
use crate::store::{ResourceRecord, Store};

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

/// LUKS state of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksState {
    pub uuid: String,
    pub open: bool,
}

/// What a layer acts through: the runner, the host, the resource's record and request data.
pub struct Cx<'a> {
    pub runner: &'a dyn Runner,
    pub host: &'a dyn Host,
    pub store: Option<&'a Store>,
    pub record: &'a mut ResourceRecord,
    pub rd: ResourceName,
    /// The LUKS passphrase of this request (apply only).
    pub passphrase: Option<Passphrase>,
    pub props: BTreeMap<String, String>,
    /// The request being applied (`None` for get and delete).
    pub desired: Option<DesiredResource>,
    /// The DRBD layer's resource-level observation.
    pub drbd: Option<ObservedDrbd>,
    /// Planning: mutating steps are recorded, not run.
    pub dry_run: bool,
    /// Loop attachments read once for a whole list (read-only walks only); `None` reads them
    /// live, as every apply must.
    pub loop_scan: Option<std::sync::Arc<crate::backends::loopfile::LoopScan>>,
    /// Mutating steps, in order, for `plan` (and a log of what apply did).
    pub steps: Vec<PlannedStep>,
}

impl Cx<'_> {
    /// Runs a read-only command, also when planning. Non-zero exits come back as output.
    pub async fn observe(&self, cmd: &Command) -> Result<Output> {
        Ok(self.runner.run(cmd).await?)
    }

    /// Runs a mutating command: journal intent, run (exit 0 required), journal done. When
    /// planning, only records the step and answers an empty success.
    pub async fn act(&mut self, layer: blockstor_proto::Layer, cmd: &Command) -> Result<Output> {
        let mut argv = cmd.argv();
        if cmd.stdin.is_some() {
            // Shows where the secret goes (stdin) without showing it.
            argv.push("<redacted>".to_owned());
        }
        self.steps.push(PlannedStep {
            layer: layer.as_str().to_owned(),
            argv,
        });
        if self.dry_run {
            return Ok(Output::ok(""));
        }
        let seq = self.record.intent(layer.as_str(), cmd.to_string());
        self.persist_journal()?;
        tracing::info!(rd = %self.rd, layer = layer.as_str(), command = %cmd, "step");
        let out = self.runner.run_ok(cmd).await;
        crate::crash::after_step();
        if out.is_ok() {
            self.record.done(seq);
            self.persist_journal()?;
        }
        Ok(out?)
    }

    /// Like [`Cx::act`] for a step the agent does itself (zeroing, removing a file);
    /// `what` names it in the plan and journal.
    pub fn act_host(
        &mut self,
        layer: blockstor_proto::Layer,
        what: Vec<String>,
        f: impl FnOnce(&dyn Host) -> std::io::Result<()>,
    ) -> Result<()> {
        self.act_host_with(layer, what, f).map(|_| ())
    }

    /// [`Cx::act_host`] for a step with a result (the loop device attached); `None` when
    /// planning, since nothing ran.
    pub fn act_host_with<T>(
        &mut self,
        layer: blockstor_proto::Layer,
        what: Vec<String>,
        f: impl FnOnce(&dyn Host) -> std::io::Result<T>,
    ) -> Result<Option<T>> {
        self.steps.push(PlannedStep {
            layer: layer.as_str().to_owned(),
            argv: what.clone(),
        });
        if self.dry_run {
            return Ok(None);
        }
        let action = what.join(" ");
        let seq = self.record.intent(layer.as_str(), action.clone());
        self.persist_journal()?;
        tracing::info!(rd = %self.rd, layer = layer.as_str(), action = %action, "step");
        let value = f(self.host).map_err(|e| {
            crate::error::Error::new(
                crate::error::Kind::Internal,
                "host_io_failed",
                format!("{action}: {e}"),
            )
        })?;
        crate::crash::after_step();
        self.record.done(seq);
        self.persist_journal()?;
        Ok(Some(value))
    }

    /// Writes a journal entry (intent or done) lazily (see [`Store::put_lazy`]), unless
    /// planning. The journal tells what a crash cut short; it decides nothing: the next apply
    /// re-observes the system. What does decide (the volume marks that allow formatting or
    /// removing) is written with [`Cx::persist`], and that commit carries the journal with it.
    /// An fdatasync per step would cost more than the step (truncate, losetup: ~3 ms each).
    pub fn persist_journal(&self) -> Result<()> {
        match (self.dry_run, self.store) {
            (false, Some(store)) => Ok(store.put_lazy(self.record)?),
            _ => Ok(()),
        }
    }

    /// Writes the record durably (fsynced), unless planning. For the marks that guard data.
    pub fn persist(&self) -> Result<()> {
        match (self.dry_run, self.store) {
            (false, Some(store)) => Ok(store.put(self.record)?),
            _ => Ok(()),
        }
    }
}
