//! Smooth weighted round robin, the nginx algorithm, precomputed.
//!
//! nginx walks the nodes on every request, adding each weight to a running
//! score and taking the highest. The sequence that produces repeats every
//! `sum(weights) / gcd` picks, so it is computed once here and requests only
//! advance an atomic cursor through it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::BalanceNode;

/// Longest schedule kept; larger weight sums are scaled down proportionally.
const MAX_SCHEDULE_LEN: u64 = 4096;

/// A precomputed smooth weighted round-robin schedule.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    /// Node indices in nginx's order for one full cycle.
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub(crate) fn new(nodes: &[BalanceNode]) -> RoundRobin {
        let weights = reduced_weights(nodes);
        RoundRobin {
            schedule: smooth_schedule(&weights).into(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next schedule entry that `eligible` accepts; one cycle at most.
    pub(crate) fn pick(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|step| self.schedule[start.wrapping_add(step) % len] as usize)
            .find(|&node| eligible(node))
    }
}

/// Weights divided by their gcd, then scaled down (never below 1) when the
/// cycle would be longer than [`MAX_SCHEDULE_LEN`].
fn reduced_weights(nodes: &[BalanceNode]) -> Vec<u64> {
    let weights: Vec<u64> = nodes.iter().map(|n| u64::from(n.weight)).collect();
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE_LEN {
        for w in weights.iter_mut().filter(|w| **w > 0) {
            *w = (*w * MAX_SCHEDULE_LEN / total).max(1);
        }
        let divisor = weights.iter().copied().fold(0, gcd).max(1);
        weights.iter_mut().for_each(|w| *w /= divisor);
    }
    weights
}

/// nginx's smooth weighted round robin run for one full cycle.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            current[i] += w as i64;
            // Strictly greater: ties go to the earlier node, as in nginx.
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(best) = best else { break };
        current[best] -= total as i64;
        schedule.push(best as u32);
    }
    schedule
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

    fn picks(rr: &RoundRobin, count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| rr.pick(&|_| true).expect("a node"))
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        let rr = RoundRobin::new(&nodes(&[5, 1, 1]));
        // a a b a c a a, twice.
        assert_eq!(
            picks(&rr, 14),
            vec![0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn weights_1_2_3_over_600_picks_split_exactly() {
        let rr = RoundRobin::new(&nodes(&[1, 2, 3]));
        let mut counts = [0; 3];
        for node in picks(&rr, 600) {
            counts[node] += 1;
        }
        assert_eq!(counts, [100, 200, 300]);
    }

    #[test]
    fn weights_1_2_3_interleave_smoothly() {
        let rr = RoundRobin::new(&nodes(&[1, 2, 3]));
        assert_eq!(picks(&rr, 6), vec![2, 1, 0, 2, 1, 2]);
    }

    #[test]
    fn equal_weights_alternate() {
        let rr = RoundRobin::new(&nodes(&[100, 100, 100]));
        assert_eq!(picks(&rr, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weight_zero_is_left_out_of_the_schedule() {
        let rr = RoundRobin::new(&nodes(&[0, 3, 0, 1]));
        assert!(picks(&rr, 100).iter().all(|&n| n == 1 || n == 3));
        assert_eq!(rr.schedule.len(), 4);
    }

    #[test]
    fn skipped_node_hands_its_turn_to_the_next_entry() {
        let rr = RoundRobin::new(&nodes(&[1, 1, 1]));
        let all_but_middle = |i: usize| i != 1;
        let picked: Vec<_> = (0..4)
            .map(|_| rr.pick(&all_but_middle).expect("a node"))
            .collect();
        assert_eq!(picked, vec![0, 2, 2, 0]);
    }

    #[test]
    fn huge_weight_sum_is_scaled_and_keeps_proportions() {
        let rr = RoundRobin::new(&nodes(&[1_000_000, 3_000_000, 7]));
        assert!(rr.schedule.len() as u64 <= MAX_SCHEDULE_LEN + 3);
        let count = |n: u32| rr.schedule.iter().filter(|&&s| s == n).count();
        let ratio = count(1) as f64 / count(0) as f64;
        assert!((ratio - 3.0).abs() < 0.01, "ratio {ratio}");
        assert_eq!(count(2), 1, "tiny weights keep one slot");
    }
}
