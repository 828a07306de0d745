//! Changing a DRBD resource's replica set in place (add, remove or move a replica) without
//! touching its data: docs/design.md §5 and issue 18.
//!
//! [`stages`] orders a change across the cluster: which node does what, with which replica set
//! in its `.res`, in which order. On DRBD 9 a move adds first and removes only after the new
//! replica is UpToDate; DRBD 8.4 holds two replicas, so it removes first (redundancy drops to
//! one copy until the sync ends; the caller warns). [`run`] does one node's part through the
//! runner:
//! - staying node: the `.res` rewritten with the new replica set, then `drbdadm adjust` (node
//!   ids, port and minors of the staying nodes never change; the caller keeps them);
//! - added node (its STORAGE/LUKS built by the normal chain first): `create-md` where no
//!   metadata exists, up (`adjust`), then a bounded wait until it is the sync target of an
//!   UpToDate peer. Never `primary`, never `--force` on it: a fresh replica that became a sync
//!   source would overwrite its peers with zeros;
//! - removed node: a bounded wait (progress at INFO) until a replica that stays is UpToDate,
//!   then `drbdadm down`; the engine's normal top-down teardown follows.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use blockstor_proto::{ErrorCode, Layer as L, NodeName};
use tokio::time::Instant;

use super::render::{Dialect, LocalVolume};
use super::status::{self, Snapshot, Source};
use super::tools;
use crate::error::{Error, Kind, Result};
use crate::layers::Cx;

use blockstor_proto::drbd_stages::{self, DrbdVersion};
pub use blockstor_proto::drbd_stages::{names, Role, Stage};

/// The ordered steps that take a resource from replica set `old` to `new`, for nodes running
/// `dialect`: [`blockstor_proto::drbd_stages::stages`], shared with the provider, which drives
/// them across the nodes.
pub fn stages(
    old: &BTreeSet<NodeName>,
    new: &BTreeSet<NodeName>,
    dialect: Dialect,
) -> Result<Vec<Stage>> {
    let version = match dialect {
        Dialect::V84 => DrbdVersion::V84,
        Dialect::V9 => DrbdVersion::V9,
    };
    drbd_stages::stages(old, new, version).map_err(|e| Error::invalid(e.code, e.field, e.message))
}

/// How long and how often a step waits for DRBD.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// From the resource's `timeouts` block.
    pub deadline: Instant,
    pub poll: Duration,
}

/// What this node does for its [`Stage`].
#[derive(Debug, Clone)]
pub enum NodeStep {
    Staying {
        /// The `.res` rendered with the stage's replica set.
        res_text: String,
    },
    Added {
        res_text: String,
        /// This node's volumes as rendered; those without a disk (a diskless client) get no
        /// metadata.
        volumes: Vec<LocalVolume>,
        /// The other replicas (DRBD 8.4: the one peer, named in messages).
        peers: BTreeSet<NodeName>,
        until_up_to_date: bool,
    },
    Removed {
        /// The replicas that stay; one of them must be UpToDate.
        remaining: BTreeSet<NodeName>,
    },
}

/// This node and where its resource lives.
pub struct Local<'a> {
    pub node: &'a NodeName,
    pub res_file: &'a Path,
    pub dialect: Dialect,
    /// This node's minors, per volume.
    pub minors: &'a [u32],
    /// The volume numbers, when this node is a diskless client.
    pub client_volumes: Option<Vec<u32>>,
}

/// Runs this node's step of a change.
pub async fn run(cx: &mut Cx<'_>, local: &Local<'_>, step: &NodeStep, wait: Wait) -> Result<()> {
    let res = local.res_file.display().to_string();
    match step {
        NodeStep::Staying { res_text } => {
            let changed = write_res(cx, local.res_file, res_text)?;
            adjust(cx, local, &res, changed).await
        }
        NodeStep::Added {
            res_text,
            volumes,
            peers,
            until_up_to_date,
        } => {
            let changed = write_res(cx, local.res_file, res_text)?;
            for v in volumes {
                let Some(disk) = v.disk.as_deref() else {
                    continue;
                };
                if tools::has_metadata(cx, v.minor, disk, local.dialect).await? {
                    continue;
                }
                // The data comes from a peer: this is a sync target's empty metadata.
                let target = format!("{}/{}", cx.rd, v.number);
                let cmd = tools::create_md(local.node, &res, local.dialect, target);
                cx.act(L::Drbd, &cmd).await?;
            }
            adjust(cx, local, &res, changed).await?;
            let diskless = volumes.iter().all(|v| v.disk.is_none());
            if diskless {
                // A client reads through its peers; it has no disk to sync.
                return Ok(());
            }
            let peer_84 = peers.iter().next();
            wait_for(cx, local, peer_84, wait, Goal::SyncTarget).await?;
            if *until_up_to_date {
                wait_for(cx, local, peer_84, wait, Goal::LocalUpToDate).await?;
            }
            Ok(())
        }
        NodeStep::Removed { remaining } => {
            // DRBD 8.4 has one peer, which `dstate` does not name.
            let peer_84 = remaining.iter().next();
            let goal = Goal::OtherUpToDate(remaining);
            if wait_for(cx, local, peer_84, wait, goal).await? == Outcome::NotUp {
                // Already down (a retry after a crash, or never brought up): this replica
                // serves nothing, so removing it costs no redundancy; the teardown follows.
                return Ok(());
            }
            let down = tools::drbdadm(local.node, ["-c", res.as_str(), "down", cx.rd.as_str()]);
            cx.act(L::Drbd, &down).await?;
            Ok(())
        }
    }
}

/// Writes the `.res` when it differs; returns whether it did.
fn write_res(cx: &mut Cx<'_>, res_file: &Path, text: &str) -> Result<bool> {
    let current = cx
        .host
        .read_to_string(res_file)
        .map_err(|e| Error::internal(format!("cannot read {}: {e}", res_file.display())))?;
    if current.as_deref() == Some(text) {
        return Ok(false);
    }
    // The content holds the shared secret: the plan and journal show only the path.
    let path = res_file.to_owned();
    let text = text.to_owned();
    cx.act_host(
        L::Drbd,
        vec!["(agent) write".into(), res_file.display().to_string()],
        move |h| h.write_private(&path, &text),
    )?;
    Ok(true)
}

/// `adjust` as [`tools::adjust`] does it for this node (a diskless client on 8.4 differs).
async fn adjust(cx: &mut Cx<'_>, local: &Local<'_>, res: &str, changed: bool) -> Result<()> {
    let client: Option<Vec<u32>> = local.client_volumes.clone();
    tools::adjust(
        cx,
        local.node,
        res,
        local.dialect,
        client.as_deref(),
        changed,
    )
    .await
}

/// What a wait is for.
enum Goal<'a> {
    /// Added node: syncing from an UpToDate peer (or already UpToDate).
    SyncTarget,
    /// Added node in a move: its own disk UpToDate.
    LocalUpToDate,
    /// Removed node: one of these replicas UpToDate.
    OtherUpToDate(&'a BTreeSet<NodeName>),
}

impl Goal<'_> {
    fn reached(&self, s: &Snapshot) -> bool {
        match self {
            Goal::SyncTarget => {
                s.local_up_to_date()
                    || s.peers.iter().any(|p| {
                        p.up_to_date()
                            && p.volumes.iter().all(|v| {
                                v.replication == "SyncTarget" || v.replication == "PausedSyncT"
                            })
                    })
            }
            Goal::LocalUpToDate => s.local_up_to_date(),
            Goal::OtherUpToDate(remaining) => s
                .peers
                .iter()
                .any(|p| p.up_to_date() && remaining.iter().any(|r| r.as_str() == p.name)),
        }
    }

    fn describe(&self, rd: &str) -> String {
        match self {
            Goal::SyncTarget => format!("become the sync target of an UpToDate peer for {rd}"),
            Goal::LocalUpToDate => format!("finish syncing {rd} (UpToDate)"),
            Goal::OtherUpToDate(remaining) => format!(
                "see another replica of {rd} UpToDate (one of {}) before removing this one",
                names(remaining)
            ),
        }
    }

    /// The sync progress that matters for this wait, when the kernel reports one.
    fn percent(&self, s: &Snapshot) -> Option<f64> {
        let peers = s.peers.iter().filter(|p| match self {
            Goal::OtherUpToDate(remaining) => remaining.iter().any(|r| r.as_str() == p.name),
            _ => p.up_to_date(),
        });
        peers.filter_map(|p| p.percent_in_sync()).reduce(f64::max)
    }
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reached,
    /// The resource is not up here (a removal has nothing to guard).
    NotUp,
    /// Planning: nothing ran, so there is nothing to wait for.
    Planned,
}

/// Polls the replication state until `goal` holds, logging progress at INFO; fails at the
/// deadline with the node, the goal and the states last seen.
async fn wait_for(
    cx: &Cx<'_>,
    local: &Local<'_>,
    peer_84: Option<&NodeName>,
    wait: Wait,
    goal: Goal<'_>,
) -> Result<Outcome> {
    if cx.dry_run {
        return Ok(Outcome::Planned);
    }
    let src = Source {
        node: local.node,
        res_file: local.res_file,
        dialect: local.dialect,
        minors: local.minors,
        peer_84,
    };
    let started = Instant::now();
    loop {
        let snap = match status::read(cx, &src).await? {
            Some(snap) => snap,
            None if matches!(goal, Goal::OtherUpToDate(_)) => return Ok(Outcome::NotUp),
            // Just brought up: DRBD answers in a moment.
            None => Snapshot::default(),
        };
        if matches!(goal, Goal::SyncTarget | Goal::LocalUpToDate) {
            refuse_sync_source(local.node, cx.rd.as_str(), &snap)?;
        }
        if goal.reached(&snap) {
            return Ok(Outcome::Reached);
        }
        let now = Instant::now();
        if now >= wait.deadline {
            return Err(Error::new(
                Kind::Unprocessable,
                ErrorCode::DrbdSyncTimeout,
                format!(
                    "node {}: waited {} s to {}; last seen: {snap}",
                    local.node,
                    now.duration_since(started).as_secs(),
                    goal.describe(cx.rd.as_str()),
                ),
            ));
        }
        tracing::info!(
            rd = %cx.rd,
            node = %local.node,
            percent_in_sync = %goal.percent(&snap).map(|p| format!("{p:.1}")).unwrap_or_else(|| "unknown".into()),
            state = %snap,
            "waiting for DRBD to {}",
            goal.describe(cx.rd.as_str())
        );
        tokio::time::sleep(wait.poll.min(wait.deadline - now)).await;
    }
}

/// An added replica holds no data yet; if DRBD ever picked it as a sync source it would copy
/// that emptiness over its peers, so stop at once (nothing here ever forces that).
fn refuse_sync_source(node: &NodeName, rd: &str, s: &Snapshot) -> Result<()> {
    let source = s.peers.iter().find(|p| {
        p.volumes
            .iter()
            .any(|v| v.replication == "SyncSource" || v.replication == "PausedSyncS")
    });
    match source {
        Some(p) if !s.local_up_to_date() => Err(Error::new(
            Kind::Conflict,
            ErrorCode::InvalidDrbd,
            format!(
                "node {node}: the replica just added to {rd} became the sync source towards {} \
                 although it holds no data; stop and check the peers ({s})",
                p.name
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
