//! Loop-file pool: a sparse file `<directory>/<rd>_<vol:05>.img` of the exact size, attached to a
//! loop device. Re-apply finds the existing attachment, so the device stays the same: first the
//! device recorded when the agent attached it, if the kernel confirms it still backs this very
//! file; else a sysfs scan of every loop device; else `losetup -j`. Grow = larger file + the
//! device told its new capacity; never shrinks. Every loop step is done in-process (the
//! agent's `set-size`, `attach-loop`, `set-capacity` and `detach-loop` steps, the equivalent of
//! `truncate --size`, `losetup -f --show`, `losetup -c` and `losetup -d`): the spawns were half
//! of a STORAGE apply's time and most of a destroy's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use blockstor_proto::{volume_name, Layer};

use super::backend::{Backend, Backing};
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::host::Host;
use crate::runner::Command;
use crate::step::StepCx;

/// A pool of loop files in one directory.
#[derive(Debug, Clone)]
pub struct LoopFile {
    pub directory: PathBuf,
    /// Loop attachments read once for a whole list (read-only walks only); `None` reads them
    /// live, as every apply must.
    pub scan: Option<std::sync::Arc<LoopScan>>,
}

impl LoopFile {
    /// The file behind volume `vol`.
    pub fn file(&self, cx: &StepCx<'_>, vol: u32) -> PathBuf {
        self.directory
            .join(format!("{}.img", volume_name(&cx.rd, vol)))
    }

    /// Loop devices `file` of volume `vol` is attached to. The device recorded at attach is
    /// checked alone (one ioctl) and trusted only if it backs this very file (device and
    /// inode): a stale record, after a reboot or a manual `losetup -d` that let another file
    /// take the number, must never be reported, resized or detached. Otherwise sysfs is
    /// scanned (a list brings one scan for all), else `losetup -j FILE` answers
    /// (`/dev/loop3: []: (/p/f)`). The record then follows what was found.
    async fn attachments(&self, cx: &mut StepCx<'_>, vol: u32, file: &Path) -> Result<Vec<String>> {
        if let Some(scan) = self.shared_scan() {
            return Ok(scan.devices(file));
        }
        let recorded = cx
            .record
            .volumes
            .get(&vol)
            .and_then(|v| v.loop_device.clone());
        if let Some(device) = recorded {
            if cx.host.loop_backs(&device, file).unwrap_or(false) {
                return Ok(vec![device]);
            }
        }
        let devices = self.every_attachment(cx, file).await?;
        remember(cx, vol, devices.first().cloned());
        Ok(devices)
    }

    /// Every loop device `file` is attached to, from a sysfs scan (else `losetup -j`), never
    /// from the record alone: removal must also find a second attachment made by hand, or the
    /// removed file would live on behind it, holding its space.
    async fn every_attachment(&self, cx: &StepCx<'_>, file: &Path) -> Result<Vec<String>> {
        if let Some(scan) = self.shared_scan() {
            return Ok(scan.devices(file));
        }
        match LoopScan::take(cx.host) {
            Some(scan) => Ok(scan.devices(file)),
            None => self.losetup_j(cx, file).await,
        }
    }

    /// The loop attachments read for a whole list, if this walk has them (and sysfs had them).
    fn shared_scan(&self) -> Option<&LoopScan> {
        self.scan.as_deref()
    }

    /// `losetup -j FILE`, where there is no sysfs to read.
    async fn losetup_j(&self, cx: &StepCx<'_>, file: &Path) -> Result<Vec<String>> {
        let out = cx
            .observe(&Command::new("losetup", ["-j", &path_str(file)?]))
            .await?;
        if !out.success() {
            return Err(Error::new(
                Kind::Internal,
                ErrorCode::ToolFailed,
                format!(
                    "`losetup -j {}` failed: {}",
                    file.display(),
                    out.stderr.trim()
                ),
            ));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_once(':').map(|(dev, _)| dev.trim().to_owned()))
            .filter(|d| d.starts_with("/dev/"))
            .collect())
    }

    /// Attaches `file` to a free loop device, in-process ([`crate::loopdev`]): what
    /// `losetup -f --show FILE` does, without the spawn.
    fn attach(&self, cx: &mut StepCx<'_>, vol: u32, file: &Path) -> Result<String> {
        let what = vec!["(agent) attach-loop".into(), path_str(file)?];
        let device = cx.act_host_with(Layer::Storage, what, |h| h.attach_loop(file))?;
        if device.is_some() {
            remember(cx, vol, device.clone());
        }
        Ok(device.unwrap_or_else(|| format!("<loop device of {}>", file.display())))
    }

    /// Tells `device` its file grew, in-process: what `losetup -c DEV` does.
    fn set_capacity(&self, cx: &mut StepCx<'_>, device: &str) -> Result<()> {
        let what = vec!["(agent) set-capacity".into(), device.to_owned()];
        cx.act_host(Layer::Storage, what, |h| h.set_loop_capacity(device))
    }

    /// Detaches `device`, in-process: what `losetup -d DEV` does.
    fn detach(&self, cx: &mut StepCx<'_>, device: &str) -> Result<()> {
        let what = vec!["(agent) detach-loop".into(), device.to_owned()];
        cx.act_host(Layer::Storage, what, |h| h.detach_loop(device))
    }

    /// Creates (sparse, 0600) or grows the file to `size_kib`, in-process: what
    /// `truncate --size=BYTES FILE` does, without the spawn.
    fn set_size(&self, cx: &mut StepCx<'_>, file: &Path, size_kib: u64) -> Result<()> {
        let bytes = size_kib * 1024;
        let what = vec![
            "(agent) set-size".into(),
            bytes.to_string(),
            path_str(file)?,
        ];
        cx.act_host(Layer::Storage, what, |h| h.set_len(file, bytes))
    }
}

/// Which file each attached loop device reads: the scan `losetup -j` does
/// (`/sys/block/loopN/loop/backing_file` holds the absolute path of the file), without spawning
/// it. A refresh observes every RD, and at hundreds of RDs the spawns (~2 ms each, more under
/// load, and each scanning every loop device itself) were most of the agent's time.
#[derive(Debug, Default)]
pub struct LoopScan {
    /// Backing file → its loop devices, `/dev/loop2` before `/dev/loop10`.
    by_file: HashMap<PathBuf, Vec<String>>,
}

impl LoopScan {
    /// Reads sysfs once. `None` where there is none (a fake host in tests, a container without
    /// `/sys`): then `losetup -j` answers.
    pub fn take(host: &dyn Host) -> Option<LoopScan> {
        let sys_block = Path::new("/sys/block");
        if !host.exists(sys_block) {
            return None;
        }
        let mut names: Vec<String> = host
            .list_dir(sys_block)
            .ok()?
            .into_iter()
            .filter(|n| n.starts_with("loop"))
            .collect();
        names.sort_by_key(|n| n[4..].parse::<u64>().unwrap_or(u64::MAX));
        let mut by_file: HashMap<PathBuf, Vec<String>> = HashMap::new();
        for name in names {
            let backing = sys_block.join(&name).join("loop/backing_file");
            let Ok(Some(text)) = host.read_to_string(&backing) else {
                continue; // not attached (or detached meanwhile)
            };
            by_file
                .entry(PathBuf::from(text.trim_end_matches('\n')))
                .or_default()
                .push(format!("/dev/{name}"));
        }
        Some(LoopScan { by_file })
    }

    /// The loop devices `file` is attached to.
    pub fn devices(&self, file: &Path) -> Vec<String> {
        // The kernel shows the path with symlinks resolved.
        let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
        self.by_file.get(&canonical).cloned().unwrap_or_default()
    }
}

/// Records the loop device volume `vol` was found on or attached to (or that it has none), so
/// the next lookup checks that one device instead of scanning them all. A hint only: it is
/// verified before every use. Written with the record's next write (lazily: a lost hint costs
/// one scan).
fn remember(cx: &mut StepCx<'_>, vol: u32, device: Option<String>) {
    if cx.read_only {
        return; // a read-only walk (get, list): its record is not written back
    }
    if cx.record.volumes.get(&vol).map(|v| &v.loop_device) != Some(&device) {
        cx.record.volume(vol).loop_device = device;
    }
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal(format!("path {} is not UTF-8", p.display())))
}

#[async_trait]
impl Backend for LoopFile {
    fn kind(&self) -> &'static str {
        "loopfile"
    }

    async fn observe(&self, cx: &mut StepCx<'_>, vol: u32) -> Result<Option<Backing>> {
        let file = self.file(cx, vol);
        let size = cx
            .host
            .file_size(&file)
            .map_err(|e| Error::internal(format!("cannot stat {}: {e}", file.display())))?;
        let Some(bytes) = size else {
            return Ok(None);
        };
        let device = self.attachments(cx, vol, &file).await?.into_iter().next();
        // What the kernel sees: smaller than the file after a grow cut short before `losetup -c`.
        let device_kib = device
            .as_deref()
            .and_then(|d| cx.host.device_size(Path::new(d)).ok().flatten())
            .map(|b| b / 1024);
        Ok(Some(Backing {
            device,
            size_kib: bytes / 1024,
            device_kib,
        }))
    }

    async fn create(&self, cx: &mut StepCx<'_>, vol: u32, size_kib: u64) -> Result<Backing> {
        let file = self.file(cx, vol);
        let dir = self.directory.clone();
        if !cx.dry_run {
            cx.host.create_dir_all(&dir).map_err(|e| {
                Error::internal(format!(
                    "cannot create pool directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        self.set_size(cx, &file, size_kib)?;
        let device = self.attach(cx, vol, &file)?;
        Ok(Backing {
            device: Some(device),
            size_kib,
            device_kib: None,
        })
    }

    async fn activate(&self, cx: &mut StepCx<'_>, vol: u32, backing: Backing) -> Result<Backing> {
        if backing.device.is_some() {
            return Ok(backing);
        }
        let file = self.file(cx, vol);
        let device = self.attach(cx, vol, &file)?;
        Ok(Backing {
            device: Some(device),
            device_kib: Some(backing.size_kib),
            ..backing
        })
    }

    async fn grow(
        &self,
        cx: &mut StepCx<'_>,
        vol: u32,
        current: Backing,
        size_kib: u64,
    ) -> Result<Backing> {
        let file = self.file(cx, vol);
        self.set_size(cx, &file, size_kib)?;
        if let Some(dev) = &current.device {
            self.set_capacity(cx, dev)?;
        }
        Ok(Backing {
            size_kib,
            device_kib: current.device.as_ref().map(|_| size_kib),
            ..current
        })
    }

    async fn remove(&self, cx: &mut StepCx<'_>, vol: u32, current: Option<Backing>) -> Result<()> {
        let file = self.file(cx, vol);
        if current.is_none() && cx.host.file_size(&file).ok().flatten().is_none() {
            return Ok(());
        }
        let mut devices = self.every_attachment(cx, &file).await?;
        // The device teardown itself attached may not be listed yet; detach it too.
        if let Some(dev) = current.and_then(|b| b.device) {
            if !devices.contains(&dev) {
                devices.push(dev);
            }
        }
        for dev in devices {
            self.detach(cx, &dev)?;
        }
        remember(cx, vol, None);
        let shown = path_str(&file)?;
        cx.act_host(Layer::Storage, vec!["(agent) remove".into(), shown], |h| {
            h.remove_file(&file)
        })
    }

    async fn volume_names(&self, cx: &StepCx<'_>) -> Result<Vec<String>> {
        let names = cx.host.list_dir(&self.directory).map_err(|e| {
            Error::internal(format!("cannot list {}: {e}", self.directory.display()))
        })?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_suffix(".img"))
            .map(str::to_owned)
            .collect())
    }

    async fn space(&self, cx: &StepCx<'_>) -> Result<(u64, u64)> {
        // The pool directory may not exist before the first volume: measure its parent then.
        // `statvfs` in-process, the figures `df --output=avail,size -k` prints.
        let probe = if cx.host.exists(&self.directory) {
            self.directory.as_path()
        } else {
            self.directory.parent().unwrap_or(Path::new("/"))
        };
        cx.host.fs_space_kib(probe).map_err(|e| {
            Error::internal(format!(
                "cannot read the free space of {}: {e}",
                probe.display()
            ))
        })
    }
}
