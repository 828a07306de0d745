//! The part of a request's context every step goes through: the runner, the host, the
//! resource's record (journal and marks) and the plan log. The layers' context holds one and
//! derefs to it; storage backends get only this, so they see nothing of LUKS or DRBD. It
//! imports nothing above it (no layer, no backend).

use blockstor_proto::wire::PlannedStep;
use blockstor_proto::ResourceName;

use crate::error::{Error, ErrorCode, Kind, Result};
use crate::host::Host;
use crate::runner::{Command, Output, Runner};
use crate::store::{ResourceRecord, Store};

/// What a step acts through: the runner, the host and the resource's record.
pub struct StepCx<'a> {
    pub runner: &'a dyn Runner,
    pub host: &'a dyn Host,
    pub store: Option<&'a Store>,
    pub record: &'a mut ResourceRecord,
    pub rd: ResourceName,
    /// Planning: mutating steps are recorded, not run.
    pub dry_run: bool,
    /// A read-only walk (get, list, discovery): the record is not written back, so hints
    /// need not be kept in it.
    pub read_only: bool,
    /// Mutating steps, in order, for `plan` (and a log of what apply did).
    pub steps: Vec<PlannedStep>,
}

impl StepCx<'_> {
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

    /// Like [`StepCx::act`] for a step the agent does itself (zeroing, removing a file);
    /// `what` names it in the plan and journal.
    pub fn act_host(
        &mut self,
        layer: blockstor_proto::Layer,
        what: Vec<String>,
        f: impl FnOnce(&dyn Host) -> std::io::Result<()>,
    ) -> Result<()> {
        self.act_host_with(layer, what, f).map(|_| ())
    }

    /// [`StepCx::act_host`] for a step with a result (the loop device attached); `None` when
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
            Error::new(
                Kind::Internal,
                ErrorCode::HostIoFailed,
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
    /// removing) is written with [`StepCx::persist`], and that commit carries the journal with it.
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
