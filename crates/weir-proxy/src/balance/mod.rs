//! Choosing an upstream node: smooth weighted round robin, consistent
//! hashing, least connections and EWMA latency, as APISIX offers them.
//!
//! A [`Balancer`] is built once per node-set generation and is read-only on
//! the hot path (atomics only). Live load figures sit in [`NodeLoad`], shared
//! by `Arc` between generations so they survive node-set updates.

mod chash;
mod ewma;
mod least_conn;
mod roundrobin;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use weir_config::LbType;

use self::chash::HashRing;
use self::ewma::PowerOfTwoChoices;
use self::least_conn::LeastConn;
use self::roundrobin::RoundRobin;

/// Seconds over which older latency samples fade (APISIX ewma `DECAY_TIME`).
const EWMA_DECAY_SECS: f64 = 10.0;

/// Live per-node load figures, shared between balancer generations so they survive node-set updates.
#[derive(Debug, Default)]
pub struct NodeLoad {
    in_flight: AtomicU32,
    /// Latency EWMA in seconds, as `f64` bits; 0 until the first sample.
    ewma_bits: AtomicU64,
    /// When `ewma_bits` was last updated: nanoseconds since [`clock_origin`]
    /// plus one, so 0 means "never".
    touched_at: AtomicU64,
}

/// Marks one request in flight on a node; dropping it ends the request.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while this guard lives"]
pub struct InFlight {
    load: Arc<NodeLoad>,
}

impl NodeLoad {
    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: Arc::clone(self),
        }
    }

    /// Folds a response latency into the EWMA.
    pub fn observe(&self, latency: Duration) {
        self.observe_at(latency.as_secs_f64(), now_nanos());
    }

    /// Requests currently in flight on this node.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency EWMA in seconds, decayed towards 0 for the time since the
    /// last sample so an idle node gets tried again.
    pub fn ewma_secs(&self) -> f64 {
        self.decayed_at(now_nanos())
    }

    fn observe_at(&self, sample_secs: f64, now: u64) {
        let previous = self.touched_at.swap(now, Ordering::Relaxed);
        let weight = if previous == 0 {
            0.0
        } else {
            decay_factor(previous, now)
        };
        // Concurrent observers may interleave; losing one sample is harmless.
        let _ = self
            .ewma_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                Some((old * weight + sample_secs * (1.0 - weight)).to_bits())
            });
    }

    fn decayed_at(&self, now: u64) -> f64 {
        let touched = self.touched_at.load(Ordering::Relaxed);
        if touched == 0 {
            return 0.0;
        }
        f64::from_bits(self.ewma_bits.load(Ordering::Relaxed)) * decay_factor(touched, now)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `exp(-elapsed / decay)`: how much of an old value is left after the time between two clock readings.
fn decay_factor(then: u64, now: u64) -> f64 {
    let elapsed = now.saturating_sub(then) as f64 / 1e9;
    (-elapsed / EWMA_DECAY_SECS).exp()
}

/// The process-wide instant `NodeLoad` timestamps count from.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`clock_origin`], plus one so that 0 stays "never".
fn now_nanos() -> u64 {
    u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// One node as the balancer sees it.
#[derive(Debug, Clone)]
pub struct BalanceNode {
    /// `host:port`; the node's identity on the consistent-hash ring.
    pub key: String,
    /// Relative share of traffic; 0 means the node is never chosen.
    pub weight: u32,
    /// Live load figures, shared with earlier and later generations.
    pub load: Arc<NodeLoad>,
}

/// A load balancer over one generation of an upstream's nodes.
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
}

#[derive(Debug)]
enum Strategy {
    RoundRobin(RoundRobin),
    Chash(HashRing),
    LeastConn(LeastConn),
    Ewma(PowerOfTwoChoices),
}

impl Balancer {
    /// Prepares a balancer of `kind` for `nodes`; `pick` must be given the same slice.
    pub fn new(kind: LbType, nodes: &[BalanceNode]) -> Balancer {
        let strategy = match kind {
            LbType::Roundrobin => Strategy::RoundRobin(RoundRobin::new(nodes)),
            LbType::Chash => Strategy::Chash(HashRing::new(nodes)),
            LbType::LeastConn => Strategy::LeastConn(LeastConn::default()),
            LbType::Ewma => Strategy::Ewma(PowerOfTwoChoices::default()),
        };
        Balancer { strategy }
    }

    /// Picks a node index. `hash` is only used by chash. `skip(i)` is true for nodes that must not be chosen (already tried for this request, or unhealthy). Weight-0 nodes are never chosen. None when nothing is left.
    pub fn pick(
        &self,
        nodes: &[BalanceNode],
        hash: u64,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let eligible = |i: usize| nodes.get(i).is_some_and(|n| n.weight > 0) && !skip(i);
        match &self.strategy {
            Strategy::RoundRobin(rr) => rr.pick(&eligible),
            Strategy::Chash(ring) => ring.pick(hash, &eligible),
            Strategy::LeastConn(lc) => lc.pick(nodes, &eligible),
            Strategy::Ewma(p2c) => p2c.pick(nodes, &eligible),
        }
    }
}

/// A stable 64-bit hash (FNV-1a with a final avalanche) for chash keys.
pub fn hash_bytes(b: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = b.iter().fold(FNV_OFFSET, |h, &byte| {
        (h ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    mix64(hash)
}

/// MurmurHash3's 64-bit finaliser: spreads every input bit over the output.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Nodes `n0`, `n1`, ... with the given weights and fresh load figures.
    pub(crate) fn nodes(weights: &[u32]) -> Vec<BalanceNode> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BalanceNode {
                key: format!("10.0.0.{i}:80"),
                weight,
                load: Arc::default(),
            })
            .collect()
    }

    /// A `skip` that never skips.
    pub(crate) fn none(_: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{nodes, none};
    use super::*;

    #[test]
    fn in_flight_guard_counts_up_and_down() {
        let load = Arc::new(NodeLoad::default());
        let first = load.begin();
        let second = load.begin();
        assert_eq!(load.in_flight(), 2);
        drop(first);
        assert_eq!(load.in_flight(), 1);
        drop(second);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn first_latency_sample_becomes_the_ewma() {
        let load = NodeLoad::default();
        assert_eq!(load.decayed_at(5), 0.0, "fresh nodes look free");
        load.observe_at(0.2, 1_000);
        assert!((load.decayed_at(1_000) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn ewma_decays_with_ten_second_time_constant() {
        let load = NodeLoad::default();
        load.observe_at(1.0, 1);
        let ten_seconds_later = 1 + 10_000_000_000;
        assert!((load.decayed_at(ten_seconds_later) - (-1.0f64).exp()).abs() < 1e-9);
        // A new sample after 10 s weighs 1 - 1/e.
        load.observe_at(0.0, ten_seconds_later);
        assert!((load.decayed_at(ten_seconds_later) - (-1.0f64).exp()).abs() < 1e-9);
    }

    #[test]
    fn hash_bytes_is_stable_and_spreads() {
        assert_eq!(hash_bytes(b"abc"), hash_bytes(b"abc"));
        assert_ne!(hash_bytes(b"abc"), hash_bytes(b"abd"));
        // Pinned: the ring positions must not change between releases.
        assert_eq!(hash_bytes(b""), mix64(0xcbf2_9ce4_8422_2325));
    }

    #[test]
    fn weight_zero_is_never_chosen_by_any_kind() {
        let nodes = nodes(&[0, 1, 0]);
        for kind in [
            LbType::Roundrobin,
            LbType::Chash,
            LbType::LeastConn,
            LbType::Ewma,
        ] {
            let balancer = Balancer::new(kind, &nodes);
            for h in 0..200u64 {
                assert_eq!(
                    balancer.pick(&nodes, hash_bytes(&h.to_le_bytes()), &none),
                    Some(1),
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_left_gives_none_for_every_kind() {
        let nodes = nodes(&[1, 1]);
        for kind in [
            LbType::Roundrobin,
            LbType::Chash,
            LbType::LeastConn,
            LbType::Ewma,
        ] {
            let balancer = Balancer::new(kind, &nodes);
            assert_eq!(balancer.pick(&nodes, 7, &|_| true), None, "{kind:?}");
            assert_eq!(balancer.pick(&[], 7, &none), None, "{kind:?}");
        }
    }

    #[test]
    fn skip_is_honoured_by_every_kind() {
        let nodes = nodes(&[1, 1, 1]);
        for kind in [
            LbType::Roundrobin,
            LbType::Chash,
            LbType::LeastConn,
            LbType::Ewma,
        ] {
            let balancer = Balancer::new(kind, &nodes);
            for h in 0..300u64 {
                let picked = balancer.pick(&nodes, hash_bytes(&h.to_le_bytes()), &|i| i != 2);
                assert_eq!(picked, Some(2), "{kind:?}");
            }
        }
    }
}
