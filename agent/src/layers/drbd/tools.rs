//! The DRBD tools as the layer and its peer changes run them: `drbdadm` as this node, and
//! whether a disk already carries DRBD metadata. Kept apart from the layer so that `peers` and
//! `status` can use them without importing the layer back.

use blockstor_proto::NodeName;

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
