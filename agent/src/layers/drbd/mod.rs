//! DRBD: replication above LUKS or STORAGE. Renders `<state_dir>/drbd.d/<rd>.res` for the
//! node's DRBD version ([`render`]), creates metadata only where none exists, brings the
//! resource up with `drbdadm adjust` (idempotent), and on first creation forces the lowest node
//! id to be the initial sync source. Teardown: `drbdadm down`, then the `.res` goes.

pub mod peers;
pub mod render;
pub mod status;
pub(crate) mod tools;
pub mod version;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use blockstor_proto::wire::{DrbdJoin, DrbdSpec, ObservedDrbd};
use blockstor_proto::{Layer as L, NodeName};

use super::{Cx, Layer, Vol};
use crate::error::{Error, ErrorCode, Kind, Result};
use render::{Dialect, LocalVolume};

/// What `drbdadm resize` prints when DRBD 8.4 has no Primary among connected replicas.
const NO_PRIMARY_REFUSAL: &str = "Need one Primary node to resize";
/// What `drbdadm resize` prints while a resync runs.
const RESYNC_REFUSAL: &str = "Resize not allowed during resync";
/// Bound on a DRBD wait when the request gives no `wait_seconds`.
pub const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
/// How often a DRBD wait reads the replication state.
pub const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a resize waits for a resync to finish, and how often it tries again.
const RESYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const RESYNC_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The replication layer.
pub struct Drbd {
    /// `<state_dir>/drbd.d`.
    pub res_dir: PathBuf,
    pub node: NodeName,
    /// LINSTOR's `.res` directory: a resource LINSTOR still runs is observed through its file.
    pub linstor_res_dir: PathBuf,
}

impl Drbd {
    fn res_file(&self, cx: &Cx<'_>) -> PathBuf {
        self.res_dir.join(format!("{}.res", cx.rd))
    }

    /// The file to observe the resource through, and this node's host name in it: ours, or,
    /// when only LINSTOR's exists (a LINSTOR-built resource not yet taken over), LINSTOR's.
    fn observed_res(&self, cx: &Cx<'_>) -> (PathBuf, String) {
        let ours = self.res_file(cx);
        if cx.host.exists(&ours) {
            return (ours, self.node.as_str().to_owned());
        }
        if let Ok(Some((path, parsed))) =
            crate::linstor::read_res(cx.host, &self.linstor_res_dir, &cx.rd)
        {
            let hostname = crate::linstor::hostname().unwrap_or_default();
            if let Some(local) = parsed.local(&[self.node.as_str(), hostname.as_str()]) {
                return (path, local.name.clone());
            }
        }
        (ours, self.node.as_str().to_owned())
    }

    /// A disk created under a resource that is already up (a diskless client turned
    /// diskful in place) gets fresh metadata, then `adjust` attaches it and it syncs from its
    /// UpToDate peers as a target. Its volumes are not marked for the initial sync: the peers
    /// hold the data, so this node never becomes a sync source (no `primary --force`).
    /// `drbdmeta` accepts the disk while the minor runs diskless, as LINSTOR's toggle-disk
    /// relies on.
    async fn metadata_for_added_disks(
        &self,
        cx: &mut Cx<'_>,
        vols: &[Vol],
        locals: &[LocalVolume],
        res_arg: &str,
        dialect: Dialect,
    ) -> Result<()> {
        for (v, l) in vols.iter().zip(locals) {
            let Some(disk) = l.disk.as_deref() else {
                continue;
            };
            if !v.created_now || tools::has_metadata(cx, l.minor, disk, dialect).await? {
                continue;
            }
            let target = format!("{}/{}", cx.rd, l.number);
            let cmd = tools::create_md(&self.node, res_arg, dialect, target);
            cx.act(L::Drbd, &cmd).await?;
        }
        Ok(())
    }

    fn res_arg(path: &Path) -> String {
        path.display().to_string()
    }

    /// Whether the resource is up: `drbdadm role` answers for 8.4 and 9 alike (drbdadm
    /// dispatches to the utils matching the kernel; drbdsetup 8.4 has no `status`).
    async fn is_up(&self, cx: &Cx<'_>, res: &Path, host: &str) -> Result<bool> {
        Ok(self.role(cx, res, host).await?.is_some())
    }

    /// This replica's role (`Primary`, `Secondary`, `Unknown`) when the resource is up here.
    async fn role(&self, cx: &Cx<'_>, res: &Path, host: &str) -> Result<Option<String>> {
        if !cx.host.exists(res) {
            return Ok(None);
        }
        let out = cx
            .observe(&tools::drbdadm_as(
                host,
                ["-c", Self::res_arg(res).as_str(), "role", cx.rd.as_str()],
            ))
            .await?;
        if !out.success() {
            return Ok(None);
        }
        // DRBD 8.4 prints `Local/Peer`; 9 prints the local role.
        let role = out.stdout.lines().next().unwrap_or("").split('/').next();
        Ok(Some(role.unwrap_or("").trim().to_owned()).map(|r| {
            if r.is_empty() {
                "Unknown".to_owned()
            } else {
                r
            }
        }))
    }

    /// This replica's disk state, the worst over its volumes, from `drbdadm dstate` (8.4:
    /// `Local/Peer` per volume; 9: the local state per volume). `None` when DRBD does not say.
    async fn disk_state(&self, cx: &Cx<'_>, res: &Path, host: &str) -> Option<String> {
        let cmd = tools::drbdadm_as(
            host,
            ["-c", Self::res_arg(res).as_str(), "dstate", cx.rd.as_str()],
        );
        let out = cx.observe(&cmd).await.ok().filter(|o| o.success())?;
        worst_disk_state(&out.stdout)
    }

    /// `drbdadm resize` of one volume, then the pending mark goes. Runs when the storage grew
    /// in this apply and on every later apply while the mark (set durably before the grow) is
    /// still there: a resize that failed, or that a crash or power cut cut short, is retried
    /// until it succeeds. DRBD 9 only grows once every replica's lower device has grown; the
    /// provider applies the growth on all replicas, and the last resize grows them all.
    /// A second resize of a device already at size changes nothing, so losing the cleared
    /// mark (written lazily) costs one harmless extra resize.
    async fn resize(&self, cx: &mut Cx<'_>, res_arg: &str, number: u32) -> Result<()> {
        let target = format!("{}/{}", cx.rd, number);
        let cmd = tools::drbdadm(&self.node, ["-c", res_arg, "resize", target.as_str()]);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match cx.act(L::Drbd, &cmd).await {
                Ok(_) => break,
                // DRBD refuses to resize while a resync runs (after a replica came back
                // from a power cut it catches up first); that is short for the few blocks
                // written meanwhile, so wait for it instead of failing the apply.
                Err(e) if e.message.contains(RESYNC_REFUSAL) && waited < RESYNC_WAIT => {
                    tokio::time::sleep(RESYNC_POLL).await;
                    waited += RESYNC_POLL;
                }
                Err(e) if e.message.contains(NO_PRIMARY_REFUSAL) => {
                    return Err(Error::new(
                        Kind::Unprocessable,
                        ErrorCode::DrbdResizeNeedsPrimary,
                        format!(
                            "volume {number} grew but DRBD did not: DRBD 8.4 resizes a \
                             connected resource only while one replica is Primary ({}). Make one \
                             replica Primary (`drbdadm primary {}`, or mount it) and apply \
                             again; the resize is retried on every apply until it succeeds.",
                            NO_PRIMARY_REFUSAL, cx.rd
                        ),
                    )
                    .field(format!("volumes[{number}].size_kib")));
                }
                Err(e) => return Err(e),
            }
        }
        cx.record.volume(number).pending_drbd_resize = false;
        cx.persist_journal()
    }

    /// A node added to a resource whose peers hold the data: metadata where none exists, up,
    /// then a bounded wait until it is the sync target of an UpToDate peer ([`peers::run`]).
    /// Never the initial-sync branch: no `primary`, no `--overwrite-data-of-peer`, and any
    /// initial-sync mark left here is dropped.
    #[allow(clippy::too_many_arguments)]
    async fn join(
        &self,
        cx: &mut Cx<'_>,
        x: &DrbdSpec,
        join: &DrbdJoin,
        res: &Path,
        res_text: String,
        locals: &[LocalVolume],
        dialect: Dialect,
    ) -> Result<()> {
        if !cx.dry_run && !cx.host.drbd_available() {
            return Err(Self::no_module(&format!(
                "lower devices and {} written",
                res.display()
            )));
        }
        let local = peers::Local {
            node: &self.node,
            res_file: res,
            dialect,
            minors: &x.minors,
            client_volumes: x
                .diskless
                .then(|| locals.iter().map(|l| l.number).collect()),
        };
        let bound = x
            .wait_seconds
            .map_or(DEFAULT_WAIT, std::time::Duration::from_secs);
        let wait = peers::Wait {
            deadline: tokio::time::Instant::now() + bound,
            poll: WAIT_POLL,
        };
        let step = peers::NodeStep::Added {
            res_text,
            volumes: locals.to_vec(),
            peers: x.peers.iter().map(|p| p.name.clone()).collect(),
            until_up_to_date: join.until_up_to_date,
        };
        peers::run(cx, &local, &step, wait).await?;
        let marked: Vec<u32> = locals.iter().map(|l| l.number).collect();
        let mut changed = false;
        for number in marked {
            if let Some(v) = cx.record.volumes.get_mut(&number) {
                changed |= std::mem::take(&mut v.awaiting_initial_sync);
            }
        }
        if changed {
            cx.persist()?;
        }
        Ok(())
    }

    fn no_module(done: &str) -> Error {
        Error::new(
            Kind::Unprocessable,
            ErrorCode::KernelFeatureMissing,
            format!(
                "cannot bring DRBD up: the drbd kernel module is not loaded. Run `modprobe drbd` \
                 (Debian kernels ship DRBD 8.4; DRBD 9 needs drbd-dkms) and apply again. Already \
                 done and reused: {done}."
            ),
        )
        .field("layer_stack")
    }
}

/// DRBD's disk state of a replica without a local disk.
const DISKLESS: &str = "Diskless";

/// The worst local disk state in `drbdadm dstate` output (one line per volume, `Local/Peer`
/// on 8.4), ordered by how far it is from holding the current data.
fn worst_disk_state(dstate: &str) -> Option<String> {
    const ORDER: [&str; 9] = [
        "Diskless",
        "Failed",
        "Detaching",
        "Attaching",
        "Negotiating",
        "Inconsistent",
        "Outdated",
        "Consistent",
        "UpToDate",
    ];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(0);
    dstate
        .lines()
        .filter_map(|l| l.trim().split('/').next())
        .filter(|s| !s.is_empty())
        .min_by_key(|s| rank(s))
        .map(str::to_owned)
}

#[async_trait]
impl Layer for Drbd {
    fn kind(&self) -> L {
        L::Drbd
    }

    async fn observe(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        for v in vols.iter_mut() {
            v.below_drbd = v.top.take();
        }
        let Some(spec) = cx.record.spec.drbd.clone() else {
            return Ok(());
        };
        let (res, host) = self.observed_res(cx);
        let role = if cx.host.exists(&res) || cx.host.drbd_available() {
            self.role(cx, &res, &host).await?
        } else {
            None
        };
        let up = role.is_some();
        let disk_state = match up {
            true => self.disk_state(cx, &res, &host).await,
            false => None,
        };
        for (v, minor) in vols.iter_mut().zip(&spec.minors) {
            v.top = up.then(|| format!("/dev/drbd{minor}"));
        }
        cx.drbd = Some(ObservedDrbd {
            node_id: spec.node_id,
            port: spec.port,
            minors: spec.minors.clone(),
            res_file: Self::res_arg(&res),
            up,
            role,
            diskless: spec.diskless || disk_state.as_deref() == Some(DISKLESS),
            disk_state,
        });
        Ok(())
    }

    async fn apply(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        let d = cx
            .desired
            .ok_or_else(|| Error::internal("DRBD apply without a request"))?;
        let x = d.drbd.clone().ok_or_else(|| {
            Error::invalid(
                ErrorCode::DrbdMissing,
                "drbd",
                "the layer stack holds DRBD but the request has no drbd section",
            )
        })?;
        let versions = version::detect(cx).await?;
        let dialect = versions.dialect();
        let locals: Vec<LocalVolume> = vols
            .iter()
            .zip(&x.minors)
            .map(|(v, minor)| {
                // A diskless client has no lower device: `disk none;`.
                let disk = match x.diskless {
                    true => None,
                    false => Some(v.below_drbd.clone().ok_or_else(|| {
                        Error::internal(format!("volume {} has no lower device", v.number))
                    })?),
                };
                Ok(LocalVolume {
                    number: v.number,
                    minor: *minor,
                    disk,
                })
            })
            .collect::<Result<_>>()?;
        let text = render::render(d, &x, &self.node, &locals, dialect)?;
        let res = self.res_file(cx);
        let current = cx
            .host
            .read_to_string(&res)
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", res.display())))?;
        let joined_text = text.clone();
        let res_changed = current.as_deref() != Some(text.as_str());
        if res_changed {
            // The content holds the shared secret: the plan and journal show only the path.
            let path = res.clone();
            cx.act_host(
                L::Drbd,
                vec!["(agent) write".into(), Self::res_arg(&res)],
                move |h| h.write_private(&path, &text),
            )?;
        }
        let res_arg = Self::res_arg(&res);
        if let Some(join) = x.join.clone() {
            self.join(cx, &x, &join, &res, joined_text, &locals, dialect)
                .await?;
        } else {
            let up = !cx.dry_run
                && cx.host.drbd_available()
                && self.is_up(cx, &res, self.node.as_str()).await?;
            if up {
                self.metadata_for_added_disks(cx, vols, &locals, &res_arg, dialect)
                    .await?;
            } else {
                for (v, l) in vols.iter().zip(&locals) {
                    let fresh = v.created_now && cx.dry_run;
                    let Some(disk) = l.disk.as_deref() else {
                        continue;
                    };
                    if fresh || !tools::has_metadata(cx, l.minor, disk, dialect).await? {
                        let target = format!("{}/{}", cx.rd, l.number);
                        let cmd = tools::create_md(&self.node, &res_arg, dialect, target);
                        cx.act(L::Drbd, &cmd).await?;
                        cx.record.volume(v.number).awaiting_initial_sync = true;
                        cx.persist()?;
                    }
                }
                if !cx.dry_run && !cx.host.drbd_available() {
                    return Err(Self::no_module(&format!(
                        "lower devices, {} written, DRBD metadata present",
                        res.display()
                    )));
                }
            }
            let client: Option<Vec<u32>> = x
                .diskless
                .then(|| locals.iter().map(|l| l.number).collect());
            tools::adjust(
                cx,
                &self.node,
                &res_arg,
                dialect,
                client.as_deref(),
                res_changed,
            )
            .await?;
            let lowest = x.peers.iter().all(|p| p.node_id > x.node_id);
            let awaiting = vols.iter().any(|v| {
                cx.record
                    .volumes
                    .get(&v.number)
                    .is_some_and(|r| r.awaiting_initial_sync)
            });
            if awaiting {
                if lowest {
                    let force: Vec<String> = match dialect {
                        Dialect::V9 => vec!["primary".into(), "--force".into(), cx.rd.to_string()],
                        Dialect::V84 => vec![
                            "--".into(),
                            "--overwrite-data-of-peer".into(),
                            "primary".into(),
                            cx.rd.to_string(),
                        ],
                    };
                    let mut args = vec!["-c".to_owned(), res_arg.clone()];
                    args.extend(force);
                    cx.act(L::Drbd, &tools::drbdadm(&self.node, args)).await?;
                    cx.act(
                        L::Drbd,
                        &tools::drbdadm(
                            &self.node,
                            ["-c", res_arg.as_str(), "secondary", cx.rd.as_str()],
                        ),
                    )
                    .await?;
                }
                for v in vols.iter() {
                    cx.record.volume(v.number).awaiting_initial_sync = false;
                }
                cx.persist()?;
            }
        }
        // What the kernel says once up, so the caller can warn about a replica not UpToDate
        // (read before a resize, which changes no state, so a resize stays the last step).
        let (role, disk_state) = match cx.dry_run {
            true => (None, None),
            false => (
                self.role(cx, &res, self.node.as_str()).await?,
                self.disk_state(cx, &res, self.node.as_str()).await,
            ),
        };
        for v in vols.iter() {
            let pending = cx
                .record
                .volumes
                .get(&v.number)
                .is_some_and(|r| r.pending_drbd_resize);
            if v.grew_now || pending {
                self.resize(cx, &res_arg, v.number).await?;
            }
        }
        for (v, l) in vols.iter_mut().zip(&locals) {
            v.top = Some(format!("/dev/drbd{}", l.minor));
        }
        cx.drbd = Some(ObservedDrbd {
            node_id: x.node_id,
            port: x.port,
            minors: x.minors.clone(),
            res_file: res_arg,
            up: true,
            role,
            disk_state,
            diskless: x.diskless,
        });
        Ok(())
    }

    async fn teardown(&self, cx: &mut Cx<'_>, vols: &mut [Vol]) -> Result<()> {
        let res = self.res_file(cx);
        if cx.drbd.as_ref().is_some_and(|o| o.up) {
            let res_arg = Self::res_arg(&res);
            cx.act(
                L::Drbd,
                &tools::drbdadm(&self.node, ["-c", res_arg.as_str(), "down", cx.rd.as_str()]),
            )
            .await?;
        }
        if cx.host.exists(&res) {
            let path = res.clone();
            cx.act_host(
                L::Drbd,
                vec!["(agent) remove".into(), Self::res_arg(&res)],
                move |h| h.remove_file(&path),
            )?;
        }
        cx.drbd = None;
        for v in vols.iter_mut() {
            v.top = None;
        }
        Ok(())
    }
}
