//! A replica turned diskless in place (issue 18): the node keeps serving the resource through
//! its peers, so DRBD lets go of the local disk first (`drbdadm detach`), then LUKS and STORAGE
//! go top-down as in a delete. The DRBD layer's apply then renders `disk none;` and adjusts.

use blockstor_proto::wire::PlannedStep;
use blockstor_proto::Layer as L;

use super::{recorded_vols, Engine};
use crate::error::Result;
use crate::layers::drbd::tools;
use crate::store::ResourceRecord;

impl Engine {
    /// Drops this node's backing volumes of a resource that is now diskless here; nothing when
    /// none is left. Returns the steps (the plan shows them).
    pub(super) async fn drop_local_disk(
        &self,
        record: &mut ResourceRecord,
        dry_run: bool,
    ) -> Result<Vec<PlannedStep>> {
        let owned: Vec<u32> = record
            .volumes
            .keys()
            .copied()
            .filter(|n| record.owns(*n))
            .collect();
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        let mut layers = self.layers(&record.spec.layer_stack, &record.spec.pool, None)?;
        layers.retain(|l| l.kind() != L::Drbd);
        let mut vols = recorded_vols(record);
        vols.retain(|v| owned.contains(&v.number));
        let res = self
            .config
            .state_dir
            .join("drbd.d")
            .join(format!("{}.res", record.spec.name));
        let mut cx = self.cx(record, None, dry_run);
        for layer in &layers {
            layer.observe(&mut cx, &mut vols).await?;
            layer.prepare_teardown(&mut cx, &mut vols).await?;
        }
        let has_disk = vols.iter().any(|v| v.backing.is_some());
        if has_disk && self.host.exists(&res) && self.host.drbd_available() {
            let res_arg = res.display().to_string();
            let node = &self.config.node_name;
            let role = tools::drbdadm(node, ["-c", res_arg.as_str(), "role", cx.rd.as_str()]);
            if cx.observe(&role).await?.success() {
                let detach =
                    tools::drbdadm(node, ["-c", res_arg.as_str(), "detach", cx.rd.as_str()]);
                cx.act(L::Drbd, &detach).await?;
            }
        }
        for layer in layers.iter().rev() {
            layer.teardown(&mut cx, &mut vols).await?;
        }
        Ok(std::mem::take(&mut cx.steps))
    }
}
