//! DRBD numbers across a change of the replica set (issue 18): staying nodes keep their node
//! id, the port and their minors for the resource's life; a removed node's id is retired; an
//! added node gets the smallest id of 0..=31 this resource never used, and minors free on
//! that node.

use std::collections::{BTreeMap, BTreeSet};

use blockstor_proto::wire::NodeInfo;
use blockstor_proto::NodeName;

use super::allocate::Reserved;
use super::desired::DrbdAllocation;

/// The largest DRBD node id.
pub const MAX_NODE_ID: u32 = 31;

/// Moves `alloc` to the replica set `nodes`. `infos` holds the `node_info` of every added node
/// (their used minors). Errors when no node id is left or an added node has no `node_info`.
pub fn change(
    alloc: &mut DrbdAllocation,
    nodes: &BTreeSet<NodeName>,
    infos: &BTreeMap<NodeName, &NodeInfo>,
    reserved: &mut Reserved,
) -> Result<(), String> {
    let removed: Vec<NodeName> = alloc
        .node_ids
        .keys()
        .filter(|n| !nodes.contains(*n))
        .cloned()
        .collect();
    for node in removed {
        if let Some(id) = alloc.node_ids.remove(&node) {
            alloc.retired_ids.insert(id);
        }
        alloc.node_minors.remove(&node);
    }
    let added: Vec<&NodeName> = nodes
        .iter()
        .filter(|n| !alloc.node_ids.contains_key(*n))
        .collect();
    for node in added {
        let used: BTreeSet<u32> = alloc
            .node_ids
            .values()
            .chain(&alloc.retired_ids)
            .copied()
            .collect();
        let Some(id) = (0..=MAX_NODE_ID).find(|id| !used.contains(id)) else {
            return Err(format!(
                "DRBD node ids 0..={MAX_NODE_ID} are all used or retired by this resource, so \
                 {node} cannot join it; replace the resource to start numbering again"
            ));
        };
        let Some(info) = infos.get(node) else {
            return Err(format!("node {node} did not report its DRBD minors"));
        };
        // The resource's minors where they are free on the new node (one `.res` reads the
        // same everywhere), else the smallest free there.
        if alloc.minors.iter().any(|m| info.used_minors.contains(m)) {
            let own = reserved.minors(&[info], &[], alloc.minors.len());
            alloc.node_minors.insert(node.clone(), own);
        }
        alloc.node_ids.insert(node.clone(), id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::desired::random_secret;
    use blockstor_proto::wire::Versions;

    fn set(names: &[&str]) -> BTreeSet<NodeName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn info(name: &str, used_minors: &[u32]) -> NodeInfo {
        NodeInfo {
            name: name.parse().unwrap(),
            versions: Versions::default(),
            pools: vec![],
            used_minors: used_minors.to_vec(),
            used_ports: vec![],
        }
    }

    fn alloc(nodes: &[&str]) -> DrbdAllocation {
        DrbdAllocation {
            port: 7003,
            minors: vec![1000, 1001],
            node_ids: set(nodes).into_iter().zip(0..).collect(),
            shared_secret: random_secret(),
            node_minors: BTreeMap::new(),
            retired_ids: BTreeSet::new(),
        }
    }

    fn ids(a: &DrbdAllocation) -> Vec<(String, u32)> {
        a.node_ids
            .iter()
            .map(|(n, i)| (n.as_str().to_owned(), *i))
            .collect()
    }

    #[test]
    fn an_added_node_gets_the_next_id_and_the_same_minors_when_free_there() {
        let mut a = alloc(&["n1", "n2"]);
        let before = a.clone();
        let n3 = info("n3", &[1005]);
        let infos = BTreeMap::from([("n3".parse().unwrap(), &n3)]);
        change(
            &mut a,
            &set(&["n1", "n2", "n3"]),
            &infos,
            &mut Reserved::default(),
        )
        .unwrap();
        assert_eq!(
            ids(&a),
            [("n1".into(), 0), ("n2".into(), 1), ("n3".into(), 2)]
        );
        assert_eq!((a.port, &a.minors), (before.port, &before.minors));
        assert_eq!(a.minors_of(&"n3".parse().unwrap()), [1000, 1001]);
        assert_eq!(a.shared_secret.expose(), before.shared_secret.expose());
    }

    #[test]
    fn an_added_node_whose_minors_are_taken_gets_its_own_free_ones() {
        let mut a = alloc(&["n1", "n2"]);
        let n3 = info("n3", &[1000, 1002]);
        let infos = BTreeMap::from([("n3".parse().unwrap(), &n3)]);
        change(
            &mut a,
            &set(&["n1", "n2", "n3"]),
            &infos,
            &mut Reserved::default(),
        )
        .unwrap();
        assert_eq!(a.minors_of(&"n3".parse().unwrap()), [1001, 1003]);
        assert_eq!(
            a.minors_of(&"n1".parse().unwrap()),
            [1000, 1001],
            "staying nodes keep theirs"
        );
    }

    #[test]
    fn a_removed_id_is_never_given_again() {
        let mut a = alloc(&["n1", "n2"]);
        let (n3, n4) = (info("n3", &[]), info("n4", &[]));
        let infos = BTreeMap::from([("n3".parse().unwrap(), &n3), ("n4".parse().unwrap(), &n4)]);
        let mut r = Reserved::default();
        change(&mut a, &set(&["n1", "n3"]), &infos, &mut r).unwrap();
        assert_eq!(ids(&a), [("n1".into(), 0), ("n3".into(), 2)]);
        assert_eq!(a.retired_ids, BTreeSet::from([1]));
        change(&mut a, &set(&["n1", "n3", "n4"]), &infos, &mut r).unwrap();
        assert_eq!(a.node_ids[&"n4".parse::<NodeName>().unwrap()], 3);
    }

    #[test]
    fn no_id_left_is_an_error_naming_the_node() {
        let mut a = alloc(&["n1"]);
        a.retired_ids = (1..=MAX_NODE_ID).collect();
        let n2 = info("n2", &[]);
        let infos = BTreeMap::from([("n2".parse().unwrap(), &n2)]);
        let err = change(
            &mut a,
            &set(&["n1", "n2"]),
            &infos,
            &mut Reserved::default(),
        );
        assert!(err.unwrap_err().contains("n2"));
    }
}
