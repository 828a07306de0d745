//! What the kernel says about a resource's replication, read the way each DRBD version allows:
//! DRBD 9 answers `drbdsetup status --json <rd>` (local disk states, every connection with its
//! peer's disk state, replication state and percent in sync); drbdsetup 8.4 has no `status`,
//! so there `drbdadm dstate` (`Local/Peer` per volume), `drbdadm cstate` (per volume) and the
//! `sync'ed: N%` lines of `/proc/drbd` tell the same for the one peer.

use std::fmt;
use std::path::Path;

use blockstor_proto::{ErrorCode, NodeName};
use serde::Deserialize;

use super::render::Dialect;
use super::tools;
use crate::error::{Error, Kind, Result};
use crate::layers::Cx;
use crate::runner::Command;

/// DRBD's disk state of a replica that holds the current data.
pub const UP_TO_DATE: &str = "UpToDate";

/// One reading of a resource's replication on this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// This node's disk state, per volume.
    pub local: Vec<String>,
    pub peers: Vec<PeerView>,
}

/// One peer as this node sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerView {
    pub name: String,
    /// `Connected`, `Connecting`, `StandAlone`, … (DRBD 8.4: the first volume's cstate).
    pub connection: String,
    pub volumes: Vec<PeerVolume>,
}

/// One volume between this node and a peer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerVolume {
    /// This node's replication state towards the peer: `Established`, `SyncTarget`, …
    pub replication: String,
    /// The peer's disk state: `UpToDate`, `Inconsistent`, `DUnknown`, …
    pub disk: String,
    /// How much of the volume is in sync, when the kernel says (100 once in sync).
    pub percent_in_sync: Option<f64>,
}

impl PeerView {
    /// Whether the peer holds the current data of every volume.
    pub fn up_to_date(&self) -> bool {
        !self.volumes.is_empty() && self.volumes.iter().all(|v| v.disk == UP_TO_DATE)
    }

    /// The lowest percent in sync over the volumes, when the kernel reports one.
    pub fn percent_in_sync(&self) -> Option<f64> {
        self.volumes
            .iter()
            .filter_map(|v| v.percent_in_sync)
            .reduce(f64::min)
    }
}

impl Snapshot {
    /// Whether this node holds the current data of every volume.
    pub fn local_up_to_date(&self) -> bool {
        !self.local.is_empty() && self.local.iter().all(|d| d == UP_TO_DATE)
    }
}

impl fmt::Display for Snapshot {
    /// `local UpToDate; n2 Connected disk Inconsistent (45.0% in sync)`, for errors and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = if self.local.is_empty() {
            "unknown".to_owned()
        } else {
            self.local.join("/")
        };
        write!(f, "local {local}")?;
        for p in &self.peers {
            let disks: Vec<&str> = p.volumes.iter().map(|v| v.disk.as_str()).collect();
            let disks = if disks.is_empty() {
                "unknown".to_owned()
            } else {
                disks.join("/")
            };
            write!(f, "; {} {} disk {disks}", p.name, p.connection)?;
            if let Some(pct) = p.percent_in_sync().filter(|p| *p < 100.0) {
                write!(f, " ({pct:.1}% in sync)")?;
            }
        }
        if self.peers.is_empty() {
            write!(f, "; no peer connected")?;
        }
        Ok(())
    }
}

/// Where to read the state of a resource on this node.
pub struct Source<'a> {
    pub node: &'a NodeName,
    pub res_file: &'a Path,
    pub dialect: Dialect,
    /// This node's minors, per volume (DRBD 8.4 finds the sync progress by minor).
    pub minors: &'a [u32],
    /// DRBD 8.4's one peer, which `drbdadm dstate` does not name.
    pub peer_84: Option<&'a NodeName>,
}

/// Reads the replication state once; `None` when the resource is not up on this node.
pub async fn read(cx: &Cx<'_>, src: &Source<'_>) -> Result<Option<Snapshot>> {
    match src.dialect {
        Dialect::V9 => {
            let out = cx
                .observe(&Command::new(
                    "drbdsetup",
                    ["status", "--json", cx.rd.as_str()],
                ))
                .await?;
            if !out.success() {
                return Ok(None);
            }
            parse_v9(&out.stdout, cx.rd.as_str())
        }
        Dialect::V84 => {
            let res = src.res_file.display().to_string();
            let ask =
                |what: &str| tools::drbdadm(src.node, ["-c", res.as_str(), what, cx.rd.as_str()]);
            let dstate = cx.observe(&ask("dstate")).await?;
            let cstate = cx.observe(&ask("cstate")).await?;
            if !dstate.success() || !cstate.success() {
                return Ok(None);
            }
            let proc_drbd = cx
                .host
                .read_to_string(Path::new("/proc/drbd"))
                .ok()
                .flatten()
                .unwrap_or_default();
            let peer = src.peer_84.map(|p| p.to_string()).unwrap_or_default();
            Ok(Some(parse_v84(
                &dstate.stdout,
                &cstate.stdout,
                &proc_drbd,
                src.minors,
                &peer,
            )))
        }
    }
}

#[derive(Deserialize)]
struct JsonResource {
    name: String,
    #[serde(default)]
    devices: Vec<JsonDevice>,
    #[serde(default)]
    connections: Vec<JsonConnection>,
}

#[derive(Deserialize)]
struct JsonDevice {
    #[serde(rename = "disk-state")]
    disk_state: String,
}

#[derive(Deserialize)]
struct JsonConnection {
    name: String,
    #[serde(rename = "connection-state")]
    connection_state: String,
    #[serde(default)]
    peer_devices: Vec<JsonPeerDevice>,
}

#[derive(Deserialize)]
struct JsonPeerDevice {
    #[serde(rename = "replication-state")]
    replication_state: String,
    #[serde(rename = "peer-disk-state")]
    peer_disk_state: String,
    #[serde(rename = "percent-in-sync")]
    percent_in_sync: Option<f64>,
}

/// Parses `drbdsetup status --json` (DRBD 9) for resource `rd`; `None` when it is not listed.
pub fn parse_v9(json: &str, rd: &str) -> Result<Option<Snapshot>> {
    let all: Vec<JsonResource> = serde_json::from_str(json).map_err(|e| {
        Error::new(
            Kind::Internal,
            ErrorCode::ToolFailed,
            format!("cannot read `drbdsetup status --json {rd}`: {e}"),
        )
    })?;
    let Some(r) = all.into_iter().find(|r| r.name == rd) else {
        return Ok(None);
    };
    Ok(Some(Snapshot {
        local: r.devices.into_iter().map(|d| d.disk_state).collect(),
        peers: r
            .connections
            .into_iter()
            .map(|c| PeerView {
                name: c.name,
                connection: c.connection_state,
                volumes: c
                    .peer_devices
                    .into_iter()
                    .map(|p| PeerVolume {
                        replication: p.replication_state,
                        disk: p.peer_disk_state,
                        percent_in_sync: p.percent_in_sync,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// Builds a snapshot from DRBD 8.4's `drbdadm dstate` (`Local/Peer` per volume), `drbdadm
/// cstate` (per volume) and `/proc/drbd` (`sync'ed: N%` under the minor's line while syncing).
pub fn parse_v84(
    dstate: &str,
    cstate: &str,
    proc_drbd: &str,
    minors: &[u32],
    peer: &str,
) -> Snapshot {
    let cstates: Vec<&str> = cstate
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut snap = Snapshot::default();
    let mut volumes = Vec::new();
    for (i, line) in dstate
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let (local, peer_disk) = line.split_once('/').unwrap_or((line, "DUnknown"));
        snap.local.push(local.to_owned());
        let replication = cstates.get(i).copied().unwrap_or("Unknown").to_owned();
        let synced = minors.get(i).and_then(|m| synced_percent_84(proc_drbd, *m));
        let percent_in_sync = match replication.as_str() {
            r if r.starts_with("Sync") || r.starts_with("PausedSync") => synced,
            _ if peer_disk == UP_TO_DATE && local == UP_TO_DATE => Some(100.0),
            _ => synced,
        };
        volumes.push(PeerVolume {
            replication,
            disk: peer_disk.to_owned(),
            percent_in_sync,
        });
    }
    if !volumes.is_empty() {
        let connection = volumes[0].replication.clone();
        snap.peers.push(PeerView {
            name: peer.to_owned(),
            connection,
            volumes,
        });
    }
    snap
}

/// The `sync'ed: 45.3%` figure of `minor` in DRBD 8.4's `/proc/drbd`.
fn synced_percent_84(proc_drbd: &str, minor: u32) -> Option<f64> {
    let head = format!("{minor}: cs:");
    let mut in_minor = false;
    for line in proc_drbd.lines() {
        let t = line.trim_start();
        if t.split_once(": cs:").is_some() {
            in_minor = t.starts_with(&head);
            continue;
        }
        if in_minor {
            if let Some(rest) = t.split_once("sync'ed:").map(|(_, r)| r) {
                return rest.trim().split('%').next()?.trim().parse().ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `drbdsetup status --json` while n3 (fresh) syncs from n1 and n2 is gone.
    pub(crate) const V9_SYNCING: &str = r#"[{"name":"db","node-id":2,"role":"Secondary",
        "devices":[{"volume":0,"minor":1000,"disk-state":"Inconsistent","client":false}],
        "connections":[
          {"peer-node-id":0,"name":"n1","connection-state":"Connected","peer-role":"Secondary",
           "peer_devices":[{"volume":0,"replication-state":"SyncTarget","peer-disk-state":"UpToDate",
             "has-sync-details":true,"percent-in-sync":45.25}]},
          {"peer-node-id":1,"name":"n2","connection-state":"Connecting","peer-role":"Unknown",
           "peer_devices":[{"volume":0,"replication-state":"Off","peer-disk-state":"DUnknown",
             "has-sync-details":false}]}]}]"#;

    #[test]
    fn drbd9_status_json_yields_disk_states_and_sync_progress_per_peer() {
        let s = parse_v9(V9_SYNCING, "db").unwrap().unwrap();
        assert_eq!(s.local, ["Inconsistent"]);
        assert!(!s.local_up_to_date());
        assert_eq!(s.peers.len(), 2);
        assert!(s.peers[0].up_to_date() && !s.peers[1].up_to_date());
        assert_eq!(s.peers[0].volumes[0].replication, "SyncTarget");
        assert_eq!(s.peers[0].percent_in_sync(), Some(45.25));
        assert_eq!(
            s.to_string(),
            "local Inconsistent; n1 Connected disk UpToDate (45.2% in sync); \
             n2 Connecting disk DUnknown"
        );
        assert_eq!(parse_v9("[]", "db").unwrap(), None);
        assert!(parse_v9("not json", "db").is_err());
    }

    #[test]
    fn drbd84_dstate_cstate_and_proc_drbd_yield_the_one_peer_and_its_progress() {
        let proc_drbd = "version: 8.4.11 (api:1/proto:86-101)\n\
            1000: cs:SyncSource ro:Secondary/Secondary ds:UpToDate/Inconsistent C r-----\n\
            \x20   ns:1 nr:0 dw:0 dr:1 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:51200\n\
            \t[==>.................] sync'ed: 15.4% (51200/60000)K\n\
            1001: cs:Connected ro:Secondary/Secondary ds:UpToDate/UpToDate C r-----\n";
        let s = parse_v84(
            "UpToDate/Inconsistent\nUpToDate/UpToDate\n",
            "SyncSource\nConnected\n",
            proc_drbd,
            &[1000, 1001],
            "n2",
        );
        assert_eq!(s.local, ["UpToDate", "UpToDate"]);
        assert_eq!(s.peers.len(), 1);
        let p = &s.peers[0];
        assert_eq!((p.name.as_str(), p.up_to_date()), ("n2", false));
        assert_eq!(p.volumes[0].percent_in_sync, Some(15.4));
        assert_eq!(p.volumes[1].percent_in_sync, Some(100.0));
        assert_eq!(p.percent_in_sync(), Some(15.4));
        assert_eq!(
            s.to_string(),
            "local UpToDate/UpToDate; n2 SyncSource disk Inconsistent/UpToDate (15.4% in sync)"
        );
    }
}
