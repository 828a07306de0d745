//! The DRBD tools as the layer and its peer changes run them: `drbdadm` as this node, and
//! whether a disk already carries DRBD metadata. Kept apart from the layer so that `peers` and
//! `status` can use them without importing the layer back.

use blockstor_proto::{Layer as L, NodeName};

use super::render::Dialect;
use crate::error::{Error, ErrorCode, Kind, Result};
use crate::layers::Cx;
use crate::runner::Command;

/// Peers a DRBD 9 bitmap has room for; more than the product places, fewer than the default
/// 31 so metadata stays small.
pub(crate) const MAX_PEERS: u32 = 7;

/// `drbdadm <args>` acting as this node. The `.res` names hosts by node name, and
/// drbdadm picks "this host" by `uname -n` unless `__DRBD_NODE__` says otherwise; without
/// it every command fails with "not defined in your config (for this host)" wherever the
/// node name is not the hostname.
pub(crate) fn drbdadm<I, S>(node: &NodeName, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    drbdadm_as(node.as_str(), args)
}

/// `drbdadm create-md <rd>/<volume>` for `res` (DRBD 9: with room for [`MAX_PEERS`]).
/// `--force` only skips create-md's question; callers decide that no metadata is there.
pub(crate) fn create_md(node: &NodeName, res: &str, dialect: Dialect, target: String) -> Command {
    let mut args = vec!["-c".to_owned(), res.to_owned()];
    if dialect == Dialect::V9 {
        args.push(format!("--max-peers={MAX_PEERS}"));
    }
    args.extend(["--".into(), "--force".into(), "create-md".into(), target]);
    drbdadm(node, args)
}

/// [`drbdadm`] for a host named `host` in the `.res` (LINSTOR writes `uname -n`).
pub(crate) fn drbdadm_as<I, S>(host: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Command::new("drbdadm", args).with_env("__DRBD_NODE__", host)
}

/// Whether `disk` carries DRBD metadata (`drbdmeta … dump-md` exits 0).
pub(crate) async fn has_metadata(
    cx: &Cx<'_>,
    minor: u32,
    disk: &str,
    dialect: Dialect,
) -> Result<bool> {
    let fmt = if dialect == Dialect::V9 { "v09" } else { "v08" };
    let out = cx
        .observe(&Command::new(
            "drbdmeta",
            [
                "--force".to_owned(),
                minor.to_string(),
                fmt.into(),
                disk.into(),
                "internal".into(),
                "dump-md".into(),
            ],
        ))
        .await?;
    if out.success() {
        return Ok(true);
    }
    if out.stderr.contains("No valid meta data found") || out.status == 1 || out.status == 255 {
        return Ok(false);
    }
    Err(Error::new(
        Kind::Internal,
        ErrorCode::ToolFailed,
        format!(
            "cannot tell whether {disk} has DRBD metadata: {}",
            out.stderr.trim()
        ),
    ))
}

/// Brings the resource here to what its `.res` says: `drbdadm adjust`, except for a diskless
/// client on DRBD 8.4, whose drbdadm has no diskless volume (it reads `disk none;` as a device
/// path and both `adjust` and `up` run `attach none`). Such a client is set up without the
/// attach: `new-resource`, `new-minor` per volume, `connect`; once up, a changed `.res` (a new
/// peer) is taken by `disconnect` and `connect`, and an unchanged one needs nothing.
/// `client_volumes` holds the volume numbers when this node is a diskless client.
pub(crate) async fn adjust(
    cx: &mut Cx<'_>,
    node: &NodeName,
    res: &str,
    dialect: Dialect,
    client_volumes: Option<&[u32]>,
    res_changed: bool,
) -> Result<()> {
    let rd = cx.rd.to_string();
    let Some(volumes) = client_volumes.filter(|_| dialect == Dialect::V84) else {
        let cmd = drbdadm(node, ["-c", res, "adjust", rd.as_str()]);
        return cx.act(L::Drbd, &cmd).await.map(|_| ());
    };
    let up = cx
        .observe(&drbdadm(node, ["-c", res, "role", rd.as_str()]))
        .await?
        .success();
    let mut steps: Vec<Vec<String>> = Vec::new();
    if !up {
        steps.push(vec!["new-resource".into(), rd.clone()]);
        steps.extend(
            volumes
                .iter()
                .map(|v| vec!["new-minor".into(), format!("{rd}/{v}")]),
        );
        steps.push(vec!["connect".into(), rd.clone()]);
    } else if res_changed {
        steps.push(vec!["disconnect".into(), rd.clone()]);
        steps.push(vec!["connect".into(), rd.clone()]);
    }
    for step in steps {
        let mut args = vec!["-c".to_owned(), res.to_owned()];
        args.extend(step);
        cx.act(L::Drbd, &drbdadm(node, args)).await?;
    }
    Ok(())
}
