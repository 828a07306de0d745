//! Placement: which pool backs the volumes and which nodes get a replica.

use blockstor_proto::wire::NodeInfo;
use blockstor_proto::{NodeName, StoragePoolName};

/// Why placement failed; `field` is the attribute to fix (`storage_pool`, `nodes`,
/// `place_count`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaceError {
    pub field: &'static str,
    pub message: String,
}

/// The pool to use: `wanted` if set (it must exist on every node in `infos`), else the only
/// pool that every node in `infos` has.
pub fn choose_pool(
    infos: &[&NodeInfo],
    wanted: Option<&str>,
) -> Result<StoragePoolName, PlaceError> {
    if let Some(wanted) = wanted {
        let pool: StoragePoolName = wanted.parse().map_err(|e| PlaceError {
            field: "storage_pool",
            message: format!("storage_pool: {e}"),
        })?;
        if let Some(missing) = infos
            .iter()
            .find(|i| !i.pools.iter().any(|p| p.name == pool))
        {
            return Err(PlaceError {
                field: "storage_pool",
                message: format!(
                    "storage_pool {pool:?} does not exist on node {}; its pools are: {}. Add the pool to that agent's config or choose another.",
                    missing.name,
                    pool_names(missing)
                ),
            });
        }
        return Ok(pool);
    }
    let Some(first) = infos.first() else {
        return Err(PlaceError {
            field: "nodes",
            message: "no node is reachable to place the resource on".to_owned(),
        });
    };
    let common: Vec<&StoragePoolName> = first
        .pools
        .iter()
        .map(|p| &p.name)
        .filter(|name| {
            infos
                .iter()
                .all(|i| i.pools.iter().any(|p| &p.name == *name))
        })
        .collect();
    match common.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err(PlaceError {
            field: "storage_pool",
            message: "no storage pool exists on every node: set storage_pool in the resource group".to_owned(),
        }),
        many => Err(PlaceError {
            field: "storage_pool",
            message: format!(
                "several pools exist on every node ({}): set storage_pool in the resource group to choose one",
                many.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

fn pool_names(info: &NodeInfo) -> String {
    let names: Vec<&str> = info.pools.iter().map(|p| p.name.as_str()).collect();
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// Picks `count` nodes that have `pool`, most free space first, ties by name.
pub fn place(
    infos: &[&NodeInfo],
    pool: &StoragePoolName,
    count: usize,
) -> Result<Vec<NodeName>, PlaceError> {
    let mut candidates: Vec<(u64, &NodeName)> = infos
        .iter()
        .filter_map(|i| {
            let p = i.pools.iter().find(|p| &p.name == pool)?;
            Some((p.free_kib, &i.name))
        })
        .collect();
    if candidates.len() < count {
        return Err(PlaceError {
            field: "place_count",
            message: format!(
                "place_count is {count} but only {} reachable node(s) have storage pool {pool:?}: lower place_count or add nodes",
                candidates.len()
            ),
        });
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut chosen: Vec<NodeName> = candidates
        .into_iter()
        .take(count)
        .map(|(_, n)| n.clone())
        .collect();
    chosen.sort();
    Ok(chosen)
}

/// What placement needs to know of a replica it may remove: how much data is at risk there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub node: NodeName,
    /// A diskless DRBD client holds no data.
    pub diskless: bool,
    /// Its disk was last seen UpToDate (a full copy).
    pub up_to_date: bool,
}

/// A new replica count for a placed definition, in place: the replicas it keeps, plus the
/// best new ones (as [`place`] picks them) when the count grows, minus the ones with the least
/// data at risk when it shrinks: diskless first, then not UpToDate, then the last by name
/// (the ones placement by name would have picked last). Returns the new set, sorted.
pub fn recount(
    infos: &[&NodeInfo],
    pool: &StoragePoolName,
    held: &[Held],
    count: usize,
) -> Result<Vec<NodeName>, PlaceError> {
    let mut kept: Vec<&Held> = held.iter().collect();
    if count < kept.len() {
        // Sorted from the most to the least worth keeping; the tail goes.
        kept.sort_by(|a, b| {
            let risk = |h: &Held| (!h.diskless, h.up_to_date);
            risk(b).cmp(&risk(a)).then_with(|| a.node.cmp(&b.node))
        });
        kept.truncate(count);
    }
    let mut nodes: Vec<NodeName> = kept.iter().map(|h| h.node.clone()).collect();
    if count > nodes.len() {
        let others: Vec<&NodeInfo> = infos
            .iter()
            .copied()
            .filter(|i| !nodes.contains(&i.name))
            .collect();
        let more = place(&others, pool, count - nodes.len()).map_err(|_| PlaceError {
            field: "place_count",
            message: format!(
                "place_count is {count}: {} hold replicas, and of the other reachable nodes only {} have storage pool {pool:?} ({}). Lower place_count, add nodes, or add the pool to their agents' config.",
                join(&nodes),
                others.iter().filter(|i| i.pools.iter().any(|p| &p.name == pool)).count(),
                others.iter().map(|i| format!("{}: {}", i.name, pool_names(i))).collect::<Vec<_>>().join("; "),
            ),
        })?;
        nodes.extend(more);
    }
    nodes.sort();
    Ok(nodes)
}

fn join(nodes: &[NodeName]) -> String {
    let names: Vec<&str> = nodes.iter().map(NodeName::as_str).collect();
    if names.is_empty() {
        "no nodes".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockstor_proto::wire::{PoolInfo, Versions};

    fn info(name: &str, pools: &[(&str, u64)]) -> NodeInfo {
        NodeInfo {
            name: name.parse().unwrap(),
            versions: Versions::default(),
            pools: pools
                .iter()
                .map(|(p, free)| PoolInfo {
                    name: p.parse().unwrap(),
                    backend: "loopfile".into(),
                    free_kib: *free,
                    total_kib: 1 << 30,
                })
                .collect(),
            used_minors: vec![],
            used_ports: vec![],
        }
    }

    #[test]
    fn places_on_most_free_space_ties_by_name() {
        let (a, b, c) = (
            info("c", &[("files", 10)]),
            info("a", &[("files", 50)]),
            info("b", &[("files", 50)]),
        );
        let pool = "files".parse().unwrap();
        let chosen = place(&[&a, &b, &c], &pool, 2).unwrap();
        assert_eq!(
            chosen,
            ["a".parse::<NodeName>().unwrap(), "b".parse().unwrap()]
        );
        assert_eq!(place(&[&a, &b, &c], &pool, 1).unwrap()[0].as_str(), "a");
    }

    fn held(node: &str, diskless: bool, up_to_date: bool) -> Held {
        Held {
            node: node.parse().unwrap(),
            diskless,
            up_to_date,
        }
    }

    fn names(nodes: &[NodeName]) -> Vec<&str> {
        nodes.iter().map(NodeName::as_str).collect()
    }

    #[test]
    fn a_higher_count_keeps_every_replica_and_adds_the_most_free_ones() {
        let (a, b, c, d) = (
            info("a", &[("files", 1)]),
            info("b", &[("files", 1)]),
            info("c", &[("files", 10)]),
            info("d", &[("files", 50)]),
        );
        let pool = "files".parse().unwrap();
        let kept = [held("a", false, true), held("b", false, true)];
        let nodes = recount(&[&a, &b, &c, &d], &pool, &kept, 3).unwrap();
        assert_eq!(names(&nodes), ["a", "b", "d"]);
        let nodes = recount(&[&a, &b, &c, &d], &pool, &kept, 4).unwrap();
        assert_eq!(names(&nodes), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_lower_count_removes_diskless_then_not_up_to_date_then_the_last_by_name() {
        let pool = "files".parse().unwrap();
        let held3 = [
            held("a", false, true),
            held("b", true, false),
            held("c", false, false),
        ];
        assert_eq!(names(&recount(&[], &pool, &held3, 2).unwrap()), ["a", "c"]);
        assert_eq!(names(&recount(&[], &pool, &held3, 1).unwrap()), ["a"]);
        let healthy = [
            held("a", false, true),
            held("b", false, true),
            held("c", false, true),
        ];
        assert_eq!(
            names(&recount(&[], &pool, &healthy, 2).unwrap()),
            ["a", "b"]
        );
    }

    #[test]
    fn a_count_no_node_can_meet_names_the_nodes_and_their_pools() {
        let (a, b) = (info("a", &[("files", 1)]), info("b", &[("thin", 1)]));
        let pool = "files".parse().unwrap();
        let err = recount(&[&a, &b], &pool, &[held("a", false, true)], 2).unwrap_err();
        assert_eq!(err.field, "place_count");
        assert!(
            err.message.contains("a hold replicas") && err.message.contains("b: thin"),
            "{}",
            err.message
        );
    }

    #[test]
    fn too_few_nodes_names_place_count() {
        let a = info("a", &[("files", 10)]);
        let err = place(&[&a], &"files".parse().unwrap(), 2).unwrap_err();
        assert_eq!(err.field, "place_count");
    }

    #[test]
    fn the_only_common_pool_is_chosen_else_storage_pool_is_required() {
        let a = info("a", &[("files", 1), ("thin", 1)]);
        let b = info("b", &[("files", 1)]);
        assert_eq!(choose_pool(&[&a, &b], None).unwrap().as_str(), "files");
        let err = choose_pool(&[&a], None).unwrap_err();
        assert_eq!(err.field, "storage_pool");
        assert!(err.message.contains("files, thin"));
        let err = choose_pool(&[&a, &b], Some("thin")).unwrap_err();
        assert!(err.message.contains("node b"), "{}", err.message);
    }
}
