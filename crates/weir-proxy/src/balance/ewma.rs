//! Latency-aware balancing: power of two choices over an EWMA cost, as
//! APISIX's `ewma` balancer.
//!
//! Two distinct eligible nodes are drawn at random and the one with the lower
//! `ewma_latency * (in_flight + 1) / weight` wins. A node that has never
//! answered costs 0, so new nodes get tried at once; an idle node's EWMA
//! decays towards 0 (10 s time constant), so a node that was slow gets
//! another chance later.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{mix64, now_nanos, BalanceNode};

/// The golden-ratio increment of splitmix64.
const SEQUENCE_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Power-of-two-choices state: a lock-free random sequence.
#[derive(Debug, Default)]
pub(crate) struct PowerOfTwoChoices {
    random_state: AtomicU64,
}

impl PowerOfTwoChoices {
    pub(crate) fn pick(
        &self,
        nodes: &[BalanceNode],
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = nodes.len();
        if len == 0 {
            return None;
        }
        let random = mix64(
            self.random_state
                .fetch_add(SEQUENCE_STEP, Ordering::Relaxed),
        );
        let (low, high) = (random as u32 as usize, (random >> 32) as usize);
        let first = first_eligible(low % len, len, eligible)?;
        let second_start = if len > 1 {
            (first + 1 + high % (len - 1)) % len
        } else {
            first
        };
        let Some(second) = first_eligible(second_start, len, |i| i != first && eligible(i)) else {
            return Some(first);
        };
        let now = now_nanos();
        let cost = |i: usize| {
            let node = &nodes[i];
            let latency = node.load.decayed_at(now);
            latency * f64::from(node.load.in_flight() + 1) / f64::from(node.weight.max(1))
        };
        Some(if cost(second) < cost(first) {
            second
        } else {
            first
        })
    }
}

/// The first index from `start` onwards (wrapping) that `accept` takes.
fn first_eligible(start: usize, len: usize, accept: impl Fn(usize) -> bool) -> Option<usize> {
    (start..len).chain(0..start).find(|&i| accept(i))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::nodes;
    use super::*;

    fn picks(p2c: &PowerOfTwoChoices, nodes: &[BalanceNode], count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| p2c.pick(nodes, &|_| true).expect("a node"))
            .collect()
    }

    #[test]
    fn prefers_lower_observed_latency() {
        let nodes = nodes(&[1, 1]);
        nodes[0].load.observe(Duration::from_millis(100));
        nodes[1].load.observe(Duration::from_millis(10));
        let p2c = PowerOfTwoChoices::default();
        assert!(picks(&p2c, &nodes, 100).iter().all(|&n| n == 1));
    }

    #[test]
    fn never_picks_the_slowest_of_three() {
        let nodes = nodes(&[1, 1, 1]);
        for (node, ms) in nodes.iter().zip([20, 500, 30]) {
            node.load.observe(Duration::from_millis(ms));
        }
        let p2c = PowerOfTwoChoices::default();
        let picked = picks(&p2c, &nodes, 300);
        assert!(!picked.contains(&1));
        assert!(
            picked.contains(&0) && picked.contains(&2),
            "both faster nodes get traffic"
        );
    }

    #[test]
    fn fresh_node_is_tried_before_a_measured_one() {
        let nodes = nodes(&[1, 1]);
        nodes[0].load.observe(Duration::from_millis(5));
        let p2c = PowerOfTwoChoices::default();
        assert!(picks(&p2c, &nodes, 50).iter().all(|&n| n == 1));
    }

    #[test]
    fn in_flight_requests_raise_the_cost() {
        let nodes = nodes(&[1, 1]);
        nodes[0].load.observe(Duration::from_millis(10));
        nodes[1].load.observe(Duration::from_millis(15));
        let _busy: Vec<_> = (0..3).map(|_| nodes[0].load.begin()).collect();
        let p2c = PowerOfTwoChoices::default();
        // 10 ms * 4 in flight costs more than 15 ms * 1.
        assert!(picks(&p2c, &nodes, 50).iter().all(|&n| n == 1));
    }

    #[test]
    fn single_eligible_node_is_returned() {
        let nodes = nodes(&[1, 1, 1]);
        let p2c = PowerOfTwoChoices::default();
        for _ in 0..20 {
            assert_eq!(p2c.pick(&nodes, &|i| i == 2), Some(2));
        }
    }
}
