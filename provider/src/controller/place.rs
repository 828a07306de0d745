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
