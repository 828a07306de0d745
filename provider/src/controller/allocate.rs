//! DRBD numbers: node ids, minors (from 1000) and the port (from 7000), each the smallest value
//! free on every chosen node, so one `.res` file is valid on all of them.

use std::collections::BTreeSet;

use blockstor_proto::wire::NodeInfo;

/// First DRBD minor blockstor uses.
pub const FIRST_MINOR: u32 = 1000;
/// First DRBD port blockstor uses.
pub const FIRST_PORT: u16 = 7000;

/// The smallest port ≥ 7000 that no node in `infos` uses.
pub fn port(infos: &[&NodeInfo]) -> u16 {
    port_excluding(infos, &BTreeSet::new())
}

/// `count` distinct minors ≥ 1000, the smallest that no node in `infos` uses.
pub fn minors(infos: &[&NodeInfo], count: usize) -> Vec<u32> {
    minors_excluding(infos, &BTreeSet::new(), count)
}

fn port_excluding(infos: &[&NodeInfo], taken: &BTreeSet<u16>) -> u16 {
    let used: BTreeSet<u16> = infos
        .iter()
        .flat_map(|i| i.used_ports.iter().copied())
        .chain(taken.iter().copied())
        .collect();
    (FIRST_PORT..=u16::MAX)
        .find(|p| !used.contains(p))
        .unwrap_or(FIRST_PORT)
}

fn minors_excluding(infos: &[&NodeInfo], taken: &BTreeSet<u32>, count: usize) -> Vec<u32> {
    let used: BTreeSet<u32> = infos
        .iter()
        .flat_map(|i| i.used_minors.iter().copied())
        .chain(taken.iter().copied())
        .collect();
    (FIRST_MINOR..)
        .filter(|m| !used.contains(m))
        .take(count)
        .collect()
}

/// Minors and ports this provider process has handed out. Terraform applies up to ten
/// resources at once, and each reads the same `used_minors`/`used_ports` from the agents before
/// any of them has applied: without this record they all pick the same smallest values and the
/// agents reject all but one (`minor_in_use`). Values stay reserved for the life of the
/// process, which is one Terraform command; by the next one the agents report them.
#[derive(Debug, Default)]
pub struct Reserved {
    minors: BTreeSet<u32>,
    ports: BTreeSet<u16>,
}

impl Reserved {
    /// Like [`port`], also skipping reserved ports; reserves the result.
    pub fn port(&mut self, infos: &[&NodeInfo]) -> u16 {
        let port = port_excluding(infos, &self.ports);
        self.ports.insert(port);
        port
    }

    /// Like [`minors`], also skipping `keep` and reserved minors; reserves the result.
    pub fn minors(&mut self, infos: &[&NodeInfo], keep: &[u32], count: usize) -> Vec<u32> {
        let taken: BTreeSet<u32> = self.minors.iter().chain(keep).copied().collect();
        let picked = minors_excluding(infos, &taken, count);
        self.minors.extend(picked.iter().copied());
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockstor_proto::wire::Versions;

    fn info(minors: &[u32], ports: &[u16]) -> NodeInfo {
        NodeInfo {
            name: "n1".parse().unwrap(),
            versions: Versions::default(),
            pools: vec![],
            used_minors: minors.to_vec(),
            used_ports: ports.to_vec(),
        }
    }

    #[test]
    fn picks_smallest_values_free_on_every_node() {
        let a = info(&[1000, 1002], &[7000]);
        let b = info(&[1001], &[7001]);
        assert_eq!(minors(&[&a, &b], 2), [1003, 1004]);
        assert_eq!(port(&[&a, &b]), 7002);
        assert_eq!(minors(&[], 1), [1000]);
        assert_eq!(port(&[]), 7000);
    }
}
