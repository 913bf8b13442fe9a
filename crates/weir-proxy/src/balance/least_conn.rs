//! Least connections: the node with the fewest requests in flight per unit
//! of weight.
//!
//! Like APISIX, the score is `(in_flight + 1) / weight`, so between idle
//! nodes the heavier one is preferred. Ties are broken by a start index that
//! rotates with every pick, so equally loaded nodes share the traffic.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::BalanceNode;

/// Rotating tie-breaker state for least-connections picks.
#[derive(Debug, Default)]
pub(crate) struct LeastConn {
    next_start: AtomicUsize,
}

impl LeastConn {
    pub(crate) fn pick(
        &self,
        nodes: &[BalanceNode],
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = nodes.len();
        if len == 0 {
            return None;
        }
        let start = self.next_start.fetch_add(1, Ordering::Relaxed) % len;
        let mut best: Option<(usize, Score)> = None;
        for index in (start..len).chain(0..start) {
            if !eligible(index) {
                continue;
            }
            let node = &nodes[index];
            let score = Score {
                load: u64::from(node.load.in_flight()) + 1,
                weight: u64::from(node.weight),
            };
            if best.is_none_or(|(_, b)| score.lower_than(b)) {
                best = Some((index, score));
            }
        }
        best.map(|(index, _)| index)
    }
}

/// `load / weight`, compared exactly by cross-multiplying.
#[derive(Debug, Clone, Copy)]
struct Score {
    load: u64,
    weight: u64,
}

impl Score {
    fn lower_than(self, other: Score) -> bool {
        self.load * other.weight < other.load * self.weight
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::test_support::nodes;
    use super::*;

    #[test]
    fn prefers_the_node_with_fewer_in_flight() {
        let nodes = nodes(&[1, 1, 1]);
        let _busy: Vec<_> = [0, 0, 2].iter().map(|&i| nodes[i].load.begin()).collect();
        let lc = LeastConn::default();
        for _ in 0..10 {
            assert_eq!(lc.pick(&nodes, &|_| true), Some(1));
        }
    }

    #[test]
    fn in_flight_is_weighed_against_weight() {
        let nodes = nodes(&[1, 4]);
        let _busy: Vec<_> = (0..2).map(|_| nodes[1].load.begin()).collect();
        let lc = LeastConn::default();
        assert_eq!(lc.pick(&nodes, &|_| true), Some(1), "(2+1)/4 beats (0+1)/1");
    }

    #[test]
    fn idle_equal_nodes_take_turns() {
        let nodes = nodes(&[1, 1, 1]);
        let lc = LeastConn::default();
        let picked: Vec<_> = (0..6)
            .map(|_| lc.pick(&nodes, &|_| true).expect("a node"))
            .collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn load_follows_the_guard_across_rebuilds() {
        let old = nodes(&[1, 1]);
        let guard = old[0].load.begin();
        // The next generation shares the NodeLoad of the surviving node.
        let new = vec![old[0].clone(), nodes(&[1, 1])[1].clone()];
        assert!(Arc::ptr_eq(&old[0].load, &new[0].load));
        let lc = LeastConn::default();
        assert_eq!(lc.pick(&new, &|_| true), Some(1));
        drop(guard);
        assert_eq!(new[0].load.in_flight(), 0);
    }
}
