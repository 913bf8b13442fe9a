//! Consistent hashing on a ketama-style ring.
//!
//! Each node owns `160 * weight / gcd(weights)` points on a 64-bit ring,
//! placed by hashing its `host:port`, so a node's points depend on nothing but
//! its own key and weight: adding a node only takes keys over to it, removing
//! one only hands its keys on, and every other key stays where it was (as
//! long as the weights' gcd stays the same, which it does when all weights
//! are equal).

use super::{hash_bytes, mix64, BalanceNode};

/// Points per unit of (gcd-reduced) weight, as nginx and ketama use.
const POINTS_PER_WEIGHT: u64 = 160;
/// Upper bound on ring size; beyond it every node's share is scaled down.
const MAX_POINTS: u64 = 1 << 18;

/// A sorted ring of `(position, node index)` points.
#[derive(Debug)]
pub(crate) struct HashRing {
    points: Box<[(u64, u32)]>,
}

impl HashRing {
    pub(crate) fn new(nodes: &[BalanceNode]) -> HashRing {
        let divisor = nodes
            .iter()
            .map(|n| u64::from(n.weight))
            .fold(0, gcd)
            .max(1);
        let total: u64 = nodes
            .iter()
            .map(|n| POINTS_PER_WEIGHT * u64::from(n.weight) / divisor)
            .sum();
        let mut points = Vec::with_capacity(total.min(MAX_POINTS) as usize);
        for (index, node) in nodes.iter().enumerate() {
            if node.weight == 0 {
                continue;
            }
            let mut count = POINTS_PER_WEIGHT * u64::from(node.weight) / divisor;
            if total > MAX_POINTS {
                count = (count * MAX_POINTS / total).max(1);
            }
            let base = hash_bytes(node.key.as_bytes());
            points.extend((1..=count).map(|v| (point_position(base, v), index as u32)));
        }
        points.sort_unstable();
        HashRing {
            points: points.into(),
        }
    }

    /// The owner of the first point at or after `hash`, walking clockwise past
    /// points whose node `eligible` rejects.
    pub(crate) fn pick(&self, hash: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        let start = self
            .points
            .partition_point(|&(position, _)| position < hash);
        (0..len)
            .map(|step| self.points[(start + step) % len].1 as usize)
            .find(|&node| eligible(node))
    }
}

/// Where virtual point `v` of a node whose key hashes to `base` sits (a
/// splitmix64 sequence seeded by the key).
fn point_position(base: u64, v: u64) -> u64 {
    mix64(base.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::nodes;
    use super::*;

    const KEYS: u64 = 10_000;

    fn key_hash(k: u64) -> u64 {
        hash_bytes(format!("user-{k}").as_bytes())
    }

    /// Which node key each of the test keys lands on.
    fn owners(nodes: &[BalanceNode]) -> Vec<String> {
        let ring = HashRing::new(nodes);
        (0..KEYS)
            .map(|k| {
                let index = ring.pick(key_hash(k), &|_| true).expect("a node");
                nodes[index].key.clone()
            })
            .collect()
    }

    #[test]
    fn same_key_always_gets_the_same_node() {
        let nodes = nodes(&[1, 1, 1, 1]);
        let ring = HashRing::new(&nodes);
        for k in 0..100 {
            let first = ring.pick(key_hash(k), &|_| true);
            assert!((0..5).all(|_| ring.pick(key_hash(k), &|_| true) == first));
        }
        assert_eq!(owners(&nodes), owners(&nodes), "rebuilt rings agree");
    }

    #[test]
    fn adding_a_node_moves_about_one_share_and_only_to_the_new_node() {
        let before = nodes(&[1; 10]);
        let after = nodes(&[1; 11]);
        let new_key = &after[10].key;
        let (old, new) = (owners(&before), owners(&after));
        let moved: Vec<_> = old.iter().zip(&new).filter(|(o, n)| o != n).collect();
        assert!(
            moved.iter().all(|(_, n)| *n == new_key),
            "keys only move to the new node"
        );
        let fair_share = KEYS as usize / 11;
        assert!(
            moved.len() <= fair_share * 3 / 2,
            "moved {} keys, fair share {fair_share}",
            moved.len()
        );
        assert!(
            moved.len() >= fair_share / 2,
            "the new node takes its share: {}",
            moved.len()
        );
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = nodes(&[1; 8]);
        let mut after = before.clone();
        let removed = after.remove(3).key;
        let (old, new) = (owners(&before), owners(&after));
        for (o, n) in old.iter().zip(&new) {
            if *o != removed {
                assert_eq!(o, n);
            }
        }
    }

    #[test]
    fn skipped_node_sends_its_keys_where_removal_would() {
        let all = nodes(&[1; 6]);
        let mut without_two = all.clone();
        without_two.remove(2);
        let ring = HashRing::new(&all);
        let expected = owners(&without_two);
        for k in 0..KEYS {
            let index = ring.pick(key_hash(k), &|i| i != 2).expect("a node");
            assert_eq!(all[index].key, expected[k as usize]);
        }
    }

    #[test]
    fn heavier_node_gets_proportionally_more_keys() {
        let nodes = nodes(&[1, 3]);
        let heavy = owners(&nodes)
            .iter()
            .filter(|k| **k == nodes[1].key)
            .count();
        let share = heavy as f64 / KEYS as f64;
        assert!((0.68..0.82).contains(&share), "heavy node share {share}");
    }

    #[test]
    fn equal_weights_of_any_size_make_the_same_ring() {
        assert_eq!(owners(&nodes(&[1, 1, 1])), owners(&nodes(&[50, 50, 50])));
    }

    #[test]
    fn huge_weights_are_capped() {
        let ring = HashRing::new(&nodes(&[u32::MAX, u32::MAX / 2, 1]));
        assert!(ring.points.len() as u64 <= MAX_POINTS + 3);
        assert!(
            ring.points.iter().any(|&(_, n)| n == 2),
            "tiny weights keep a point"
        );
    }
}
