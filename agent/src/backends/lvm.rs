//! LVM pools: thick LVs in a volume group, or thin LVs in a thin pool (`lvm-thin`).
//! Device `/dev/<vg>/<rd>_<vol:05>`.

use async_trait::async_trait;
use blockstor_proto::{volume_name, Layer};

use super::backend::{parse_kib, Backend, Backing};
use crate::error::{Error, Result};
use crate::runner::Command;
use crate::step::StepCx;

/// A thick (`thin_pool: None`) or thin LVM pool.
#[derive(Debug, Clone)]
pub struct Lvm {
    pub volume_group: String,
    pub thin_pool: Option<String>,
}

impl Lvm {
    fn lv(&self, cx: &StepCx<'_>, vol: u32) -> String {
        format!("{}/{}", self.volume_group, volume_name(&cx.rd, vol))
    }
}

#[async_trait]
impl Backend for Lvm {
    fn kind(&self) -> &'static str {
        if self.thin_pool.is_some() {
            "lvm-thin"
        } else {
            "lvm"
        }
    }

    fn takes_space_up_front(&self) -> bool {
        self.thin_pool.is_none()
    }

    async fn observe(&self, cx: &mut StepCx<'_>, vol: u32) -> Result<Option<Backing>> {
        let lv = self.lv(cx, vol);
        let out = cx
            .observe(&Command::new(
                "lvs",
                [
                    "--noheadings",
                    "--units",
                    "k",
                    "--nosuffix",
                    "-o",
                    "lv_size",
                    lv.as_str(),
                ],
            ))
            .await?;
        if !out.success() {
            // lvs exits 5 with "Failed to find logical volume" when it does not exist.
            return Ok(None);
        }
        let size_kib = parse_kib(&out.stdout)
            .ok_or_else(|| Error::internal(format!("cannot parse lvs size {:?}", out.stdout)))?;
        Ok(Some(Backing {
            device: Some(format!("/dev/{lv}")),
            size_kib,
            device_kib: None,
        }))
    }

    async fn create(&self, cx: &mut StepCx<'_>, vol: u32, size_kib: u64) -> Result<Backing> {
        let name = volume_name(&cx.rd, vol);
        let size = format!("{size_kib}k");
        let args: Vec<String> = match &self.thin_pool {
            Some(tp) => vec![
                "--yes".into(),
                "-n".into(),
                name,
                "-V".into(),
                size,
                "--thinpool".into(),
                tp.clone(),
                self.volume_group.clone(),
            ],
            None => vec![
                "--yes".into(),
                "--wipesignatures".into(),
                "y".into(),
                "-n".into(),
                name,
                "-L".into(),
                size,
                self.volume_group.clone(),
            ],
        };
        cx.act(Layer::Storage, &Command::new("lvcreate", args))
            .await?;
        Ok(Backing {
            device: Some(format!("/dev/{}", self.lv(cx, vol))),
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
        let lv = self.lv(cx, vol);
        cx.act(
            Layer::Storage,
            &Command::new("lvextend", ["-L".to_owned(), format!("{size_kib}k"), lv]),
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
        let lv = self.lv(cx, vol);
        cx.act(
            Layer::Storage,
            &Command::new("lvremove", ["--yes", lv.as_str()]),
        )
        .await?;
        Ok(())
    }

    async fn volume_names(&self, cx: &StepCx<'_>) -> Result<Vec<String>> {
        let out = cx
            .observe(&Command::new(
                "lvs",
                ["--noheadings", "-o", "lv_name", self.volume_group.as_str()],
            ))
            .await?;
        Ok(out.stdout.lines().map(|l| l.trim().to_owned()).collect())
    }

    async fn space(&self, cx: &StepCx<'_>) -> Result<(u64, u64)> {
        let parse = |s: &str| -> Result<Vec<f64>> {
            s.split_whitespace()
                .map(|n| n.replace(',', ".").parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::internal(format!("cannot parse LVM output {s:?}")))
        };
        match &self.thin_pool {
            None => {
                let out = cx
                    .runner
                    .run_ok(&Command::new(
                        "vgs",
                        [
                            "--noheadings",
                            "--units",
                            "k",
                            "--nosuffix",
                            "-o",
                            "vg_free,vg_size",
                            self.volume_group.as_str(),
                        ],
                    ))
                    .await?;
                match parse(&out.stdout)?[..] {
                    [free, total] => Ok((free as u64, total as u64)),
                    _ => Err(Error::internal(format!(
                        "cannot parse vgs output {:?}",
                        out.stdout
                    ))),
                }
            }
            Some(tp) => {
                let out = cx
                    .runner
                    .run_ok(&Command::new(
                        "lvs",
                        [
                            "--noheadings".to_owned(),
                            "--units".into(),
                            "k".into(),
                            "--nosuffix".into(),
                            "-o".into(),
                            "lv_size,data_percent".into(),
                            format!("{}/{tp}", self.volume_group),
                        ],
                    ))
                    .await?;
                match parse(&out.stdout)?[..] {
                    [total, pct] => Ok(((total * (100.0 - pct) / 100.0) as u64, total as u64)),
                    _ => Err(Error::internal(format!(
                        "cannot parse lvs output {:?}",
                        out.stdout
                    ))),
                }
            }
        }
    }
}
