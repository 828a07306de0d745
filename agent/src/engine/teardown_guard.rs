//! What a DELETE checks and waits for before anything is torn down (issue 18): no device of
//! the chain in use unless `force`, and, when one replica of a DRBD resource leaves while
//! others stay, an UpToDate replica among those that stay (docs/design.md §5).

use std::path::Path;
use std::time::Duration;

use blockstor_proto::wire::DeleteOptions;

use super::Engine;
use crate::error::{Error, Result};
use crate::inuse::{self, InUse, User};
use crate::layers::drbd::{peers, version, DEFAULT_WAIT, WAIT_POLL};
use crate::layers::Cx;

/// How long a device held open only by processes is looked at again before the delete is
/// refused, and how often.
const PROBE_SETTLE: Duration = Duration::from_secs(2);
const PROBE_POLL: Duration = Duration::from_millis(100);

/// Whether every user found is a process holding the device open (no mount, holder, Primary).
fn only_processes(found: &InUse) -> bool {
    found.users.iter().all(|u| matches!(u, User::Opened { .. }))
}

impl Engine {
    /// Who uses `device`, without the chain's own holders below the top: `None` when nobody.
    fn users_of(&self, device: &str, topmost: &[String]) -> Result<Option<InUse>> {
        let found = self
            .host
            .device_users(Path::new(device))
            .map_err(|e| Error::internal(format!("cannot tell whether {device} is in use: {e}")))?;
        let Some(mut found) = found else {
            return Ok(None);
        };
        if !topmost.iter().any(|t| t == device) {
            // A lower device is held by the layer above it: that is the chain itself.
            found.users.retain(|u| !matches!(u, User::Holder { .. }));
        }
        Ok((!found.users.is_empty()).then_some(found))
    }

    /// Refuses with `device_in_use` when any of `devices` (each layer's device, bottom-up;
    /// `topmost` the ones a user mounts) is mounted, open, held by something outside the chain,
    /// or is a DRBD replica in the Primary role here.
    pub(super) async fn refuse_in_use(
        &self,
        cx: &Cx<'_>,
        devices: &[String],
        topmost: &[String],
    ) -> Result<()> {
        for device in devices {
            let mut found = self.users_of(device, topmost)?;
            // A process that only probes the device (udev's blkid, another `losetup -a`) has
            // it open for a moment: look again for a while before calling that a user.
            let settle = tokio::time::Instant::now() + PROBE_SETTLE;
            while found.as_ref().is_some_and(only_processes) && tokio::time::Instant::now() < settle
            {
                tokio::time::sleep(PROBE_POLL).await;
                found = self.users_of(device, topmost)?;
            }
            if let Some(found) = found {
                return Err(found.error(&self.config.node_name));
            }
        }
        if let Some(drbd) = cx.drbd.as_ref().filter(|d| d.up) {
            let primary = inuse::drbd_primary(
                self.runner.as_ref(),
                &self.config.node_name,
                Path::new(&drbd.res_file),
                &cx.rd,
            )
            .await?;
            if let Some(user) = primary {
                let device = topmost
                    .first()
                    .cloned()
                    .unwrap_or_else(|| drbd.res_file.clone());
                let found = InUse {
                    device,
                    users: vec![user],
                };
                return Err(found.error(&self.config.node_name));
            }
        }
        Ok(())
    }

    /// One replica leaves a DRBD resource whose others stay: wait (bounded) until one of
    /// `options.remaining` is UpToDate, then `down`. Nothing to do when DRBD is not up here.
    pub(super) async fn leave_replica_set(
        &self,
        cx: &mut Cx<'_>,
        options: &DeleteOptions,
    ) -> Result<()> {
        let Some(observed) = cx.drbd.clone().filter(|d| d.up) else {
            return Ok(());
        };
        let dialect = version::detect(cx).await?.dialect();
        let res_file = std::path::PathBuf::from(&observed.res_file);
        let local = peers::Local {
            node: &self.config.node_name,
            res_file: &res_file,
            dialect,
            minors: &observed.minors,
            // A leaving replica is only waited for and taken down, never adjusted.
            client_volumes: None,
        };
        let bound = options
            .wait_seconds
            .map_or(DEFAULT_WAIT, Duration::from_secs);
        let wait = peers::Wait {
            deadline: tokio::time::Instant::now() + bound,
            poll: WAIT_POLL,
        };
        let step = peers::NodeStep::Removed {
            remaining: options.remaining.iter().cloned().collect(),
        };
        peers::run(cx, &local, &step, wait).await?;
        // Down now (or found down): the DRBD teardown has only the `.res` left to remove.
        if let Some(d) = cx.drbd.as_mut() {
            d.up = false;
        }
        Ok(())
    }
}
