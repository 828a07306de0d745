//! The order of a DRBD replica-set change across the cluster (docs/design.md §5, issue 18).
//! Shared: the provider drives the stages node by node, and each agent runs its node's part
//! (`agent/src/layers/drbd/peers.rs`), so both follow this one function.
//!
//! On DRBD 9 a move adds first and removes only after the new replica is UpToDate; DRBD 8.4
//! holds two replicas, so it removes first (redundancy drops to one copy until the sync ends;
//! the caller warns).

use std::collections::BTreeSet;

use crate::{ErrorCode, NodeName};

/// Which DRBD the nodes run: it decides the order and how many replicas fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrbdVersion {
    V84,
    V9,
}

/// A node's part in a change of the replica set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In the old and the new set: re-render and `adjust`.
    Staying,
    /// Only in the new set: metadata, up, sync target of an UpToDate peer.
    Added,
    /// Only in the old set: wait for an UpToDate replica that stays, then down.
    Removed,
}

impl Role {
    /// `node`'s role when the replica set goes from `old` to `new`; `None` when in neither.
    pub fn of(node: &NodeName, old: &BTreeSet<NodeName>, new: &BTreeSet<NodeName>) -> Option<Role> {
        match (old.contains(node), new.contains(node)) {
            (true, true) => Some(Role::Staying),
            (false, true) => Some(Role::Added),
            (true, false) => Some(Role::Removed),
            (false, false) => None,
        }
    }
}

/// One node's step of a change, in the order [`stages`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub node: NodeName,
    pub role: Role,
    /// The replicas this node's `.res` lists for this step (itself included). For a removed
    /// node: the replicas that stay, one of which must be UpToDate before it goes down.
    pub replicas: BTreeSet<NodeName>,
    /// An added node waits until its own disk is UpToDate before the next stage runs (a move on
    /// DRBD 9, where removal follows).
    pub until_up_to_date: bool,
}

/// Why a change cannot be staged: the error code, the field to fix and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub code: ErrorCode,
    pub field: &'static str,
    pub message: String,
}

/// The ordered steps that take a resource from replica set `old` to `new`, for nodes running
/// `version`. Staying nodes may appear twice (once per re-render). Errors when DRBD 8.4 cannot
/// hold the new set, when a move on 8.4 would leave no copy, or when `new` is empty.
pub fn stages(
    old: &BTreeSet<NodeName>,
    new: &BTreeSet<NodeName>,
    version: DrbdVersion,
) -> Result<Vec<Stage>, StageError> {
    if new.is_empty() {
        return Err(StageError {
            code: ErrorCode::InvalidDrbd,
            field: "nodes",
            message: "the change would remove every replica; deleting the resource is a destroy, not a change".to_owned(),
        });
    }
    let added: BTreeSet<NodeName> = new.difference(old).cloned().collect();
    let removed: BTreeSet<NodeName> = old.difference(new).cloned().collect();
    let staying: BTreeSet<NodeName> = old.intersection(new).cloned().collect();
    let stage = |node: &NodeName, role, replicas: &BTreeSet<NodeName>, until_up_to_date| Stage {
        node: node.clone(),
        role,
        replicas: replicas.clone(),
        until_up_to_date,
    };
    let mut out = Vec::new();
    match version {
        DrbdVersion::V9 => {
            let union: BTreeSet<NodeName> = old.union(new).cloned().collect();
            if !added.is_empty() {
                out.extend(old.iter().map(|n| stage(n, Role::Staying, &union, false)));
                let wait = !removed.is_empty();
                out.extend(added.iter().map(|n| stage(n, Role::Added, &union, wait)));
            }
            if !removed.is_empty() {
                out.extend(removed.iter().map(|n| stage(n, Role::Removed, new, false)));
                out.extend(new.iter().map(|n| stage(n, Role::Staying, new, false)));
            }
        }
        DrbdVersion::V84 => {
            if new.len() > 2 {
                return Err(StageError {
                    code: ErrorCode::DrbdVersionUnsupported,
                    field: "nodes",
                    message: format!(
                        "DRBD 8.4 replicates between two nodes; {} were requested. Install \
                         DRBD 9 or keep two nodes",
                        new.len()
                    ),
                });
            }
            if staying.is_empty() && !removed.is_empty() {
                return Err(StageError {
                    code: ErrorCode::DrbdVersionUnsupported,
                    field: "nodes",
                    message: format!(
                        "DRBD 8.4 removes a replica before adding one, and no node of {} stays, \
                         so no copy would be left. Move one replica at a time",
                        names(old)
                    ),
                });
            }
            if added.is_empty() && removed.is_empty() {
                return Ok(out);
            }
            out.extend(removed.iter().map(|n| stage(n, Role::Removed, new, false)));
            out.extend(staying.iter().map(|n| stage(n, Role::Staying, new, false)));
            out.extend(added.iter().map(|n| stage(n, Role::Added, new, false)));
        }
    }
    Ok(out)
}

/// Names of `set`, comma-separated.
pub fn names(set: &BTreeSet<NodeName>) -> String {
    set.iter()
        .map(NodeName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
