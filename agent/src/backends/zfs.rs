//! ZFS pools: zvols `<dataset>/<rd>_<vol:05>`, device `/dev/zvol/<dataset>/<rd>_<vol:05>`.

use async_trait::async_trait;
use blockstor_proto::{volume_name, Layer};

use super::backend::{parse_kib, Backend, Backing};
use crate::error::{Error, Result};
use crate::runner::Command;
use crate::step::StepCx;

/// zvols under one dataset.
#[derive(Debug, Clone)]
pub struct Zfs {
    pub dataset: String,
}

impl Zfs {
    fn zvol(&self, cx: &StepCx<'_>, vol: u32) -> String {
        format!("{}/{}", self.dataset, volume_name(&cx.rd, vol))
    }
}

#[async_trait]
impl Backend for Zfs {
    fn kind(&self) -> &'static str {
        "zfs"
    }

    async fn observe(&self, cx: &mut StepCx<'_>, vol: u32) -> Result<Option<Backing>> {
        let zvol = self.zvol(cx, vol);
        let out = cx
            .observe(&Command::new(
                "zfs",
                ["get", "-H", "-p", "-o", "value", "volsize", zvol.as_str()],
            ))
            .await?;
        if !out.success() {
            // "dataset does not exist"
            return Ok(None);
        }
        let bytes = parse_kib(&out.stdout)
            .ok_or_else(|| Error::internal(format!("cannot parse zfs volsize {:?}", out.stdout)))?;
        Ok(Some(Backing {
            device: Some(format!("/dev/zvol/{zvol}")),
            size_kib: bytes / 1024,
            device_kib: None,
        }))
    }

    async fn create(&self, cx: &mut StepCx<'_>, vol: u32, size_kib: u64) -> Result<Backing> {
        let zvol = self.zvol(cx, vol);
        cx.act(
            Layer::Storage,
            &Command::new(
                "zfs",
                [
                    "create".to_owned(),
                    "-V".into(),
                    format!("{}", size_kib * 1024),
                    zvol.clone(),
                ],
            ),
        )
        .await?;
        Ok(Backing {
            device: Some(format!("/dev/zvol/{zvol}")),
            size_kib,
            device_kib: None,
        })
    }

    async fn grow(
        &self,
        cx: &mut StepCx<'_>,
        vol: u32,
        current: Backing,
        size_kib: u64,
    ) -> Result<Backing> {
        let zvol = self.zvol(cx, vol);
        cx.act(
            Layer::Storage,
            &Command::new(
                "zfs",
                [
                    "set".to_owned(),
                    format!("volsize={}", size_kib * 1024),
                    zvol,
                ],
            ),
        )
        .await?;
        Ok(Backing {
            size_kib,
            device_kib: None,
            ..current
        })
    }

    async fn remove(&self, cx: &mut StepCx<'_>, vol: u32, current: Option<Backing>) -> Result<()> {
        if current.is_none() {
            return Ok(());
        }
        let zvol = self.zvol(cx, vol);
        cx.act(
            Layer::Storage,
            &Command::new("zfs", ["destroy", zvol.as_str()]),
        )
        .await?;
        Ok(())
    }

    async fn volume_names(&self, cx: &StepCx<'_>) -> Result<Vec<String>> {
        let out = cx
            .observe(&Command::new(
                "zfs",
                ["list", "-H", "-o", "name", "-d", "1", self.dataset.as_str()],
            ))
            .await?;
        let prefix = format!("{}/", self.dataset);
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .map(str::to_owned)
            .collect())
    }

    async fn space(&self, cx: &StepCx<'_>) -> Result<(u64, u64)> {
        let out = cx
            .runner
            .run_ok(&Command::new(
                "zfs",
                [
                    "get",
                    "-H",
                    "-p",
                    "-o",
                    "value",
                    "available,used",
                    self.dataset.as_str(),
                ],
            ))
            .await?;
        let nums: Vec<u64> = out.stdout.lines().filter_map(parse_kib).collect();
        match nums[..] {
            [avail, used] => Ok((avail / 1024, (avail + used) / 1024)),
            _ => Err(Error::internal(format!(
                "cannot parse zfs output {:?}",
                out.stdout
            ))),
        }
    }
}
