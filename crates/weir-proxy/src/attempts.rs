//! The attempt loop's decisions, shared by both transports: which node to
//! try next, what an answer or a failure means for the node's health, its
//! load figures and the access log, and whether another node may be tried.
//!
//! Each transport drives it with its own way of sending a request (bare
//! pooled sockets on the fast path, hyper on the general path):
//!
//! ```text
//! let mut plan = AttemptPlan::new(upstream, &set, hash, replayable, logging)?;
//! while let Some(node) = plan.next_node() {
//!     match transport.attempt(node).await {
//!         Ok(answer) => match plan.answered(&node, status, record) {
//!             Verdict::Use => return relay(answer, node.in_flight),
//!             Verdict::Retry => continue,
//!         },
//!         Err(f) if f.client_gone || f.client_fault => return Err(f),
//!         Err(f) => if !plan.failed(&node, &f, record) { return Err(f) },
//!     }
//! }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use weir_config::LbType;

use crate::access_log::AccessRecord;
use crate::balance::InFlight;
use crate::forward::{retry_clock, retry_deadline_passed, Tried};
use crate::health::Eligibility;
use crate::upstream::{NodeSet, NodeState, Upstream};

/// Why a request could not be answered by a node: the one error type of
/// both transports' attempt loops.
#[derive(Debug)]
pub struct Failure {
    /// The status to answer.
    pub status: StatusCode,
    /// The message the client gets (in `{"error_msg": ...}`).
    pub public: &'static str,
    /// What happened, for the log.
    pub reason: String,
    /// The request (or part of it) may have reached the node.
    pub sent: bool,
    /// The client went away; nothing more to answer.
    pub client_gone: bool,
    /// The client's request was at fault (a malformed body), not the node:
    /// answer `status`, retry nothing, count nothing against the node.
    pub client_fault: bool,
}

impl Failure {
    /// 502: the node failed.
    pub fn bad_gateway(reason: String, sent: bool) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            public: "502 Bad Gateway",
            reason,
            sent,
            client_gone: false,
            client_fault: false,
        }
    }

    /// 504: the node did not answer in time.
    pub fn timeout(reason: String, sent: bool) -> Failure {
        Failure {
            status: StatusCode::GATEWAY_TIMEOUT,
            public: "504 Gateway Timeout",
            reason,
            sent,
            client_gone: false,
            client_fault: false,
        }
    }

    /// 400: the client's body was malformed.
    pub fn client_fault(public: &'static str, reason: String) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            public,
            reason,
            sent: true,
            client_gone: false,
            client_fault: true,
        }
    }

    /// 408: the client stopped sending its request body for
    /// `http.body_timeout`; nothing is counted against the node.
    pub fn body_timeout(reason: String) -> Failure {
        Failure {
            status: StatusCode::REQUEST_TIMEOUT,
            public: "request body not received in time",
            reason,
            sent: true,
            client_gone: false,
            client_fault: true,
        }
    }

    /// The client left.
    pub fn client_gone() -> Failure {
        Failure {
            client_gone: true,
            ..Failure::bad_gateway("client went away".into(), true)
        }
    }

    /// 503: the upstream has no node.
    fn no_node(reason: String) -> Failure {
        Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            public: "503 Service Unavailable: no available node",
            reason,
            sent: false,
            client_gone: false,
            client_fault: false,
        }
    }
}

/// One node being tried.
pub struct NodeTry {
    /// Index in the node set.
    pub index: usize,
    /// The node.
    pub node: Arc<NodeState>,
    /// Counts the node's in-flight requests until dropped.
    pub in_flight: InFlight,
    started: Option<Instant>,
}

/// What to do with a node's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it.
    Use,
    /// Drop it and try another node (a 502/503/504 for a replayable
    /// request while another node is available).
    Retry,
}

/// The attempts of one request on one upstream.
pub struct AttemptPlan<'a> {
    upstream: &'a Upstream,
    set: &'a NodeSet,
    hash: u64,
    replayable: bool,
    max_attempts: usize,
    started: Option<Instant>,
    eligible: Eligibility,
    tried: Tried,
    /// A request that may have reached a node was already sent.
    sent: bool,
    timed: bool,
}

impl<'a> AttemptPlan<'a> {
    /// A plan over `set`. `idempotent_without_body`: the request may be sent
    /// again after it may have reached a node (RFC 9110 idempotent method,
    /// no body). `logging`: the access log wants attempt timings.
    pub fn new(
        upstream: &'a Upstream,
        set: &'a NodeSet,
        hash: u64,
        idempotent_without_body: bool,
        logging: bool,
    ) -> Result<AttemptPlan<'a>, Failure> {
        if set.is_empty() {
            return Err(Failure::no_node(upstream.service_name().map_or_else(
                || "no nodes configured".to_owned(),
                |s| format!("no endpoints for {s}"),
            )));
        }
        let max_attempts = 1 + upstream
            .retries
            .map_or(set.len().saturating_sub(1), |r| r as usize);
        Ok(AttemptPlan {
            upstream,
            set,
            hash,
            replayable: idempotent_without_body && max_attempts > 1,
            max_attempts,
            started: retry_clock(upstream),
            // Unhealthy nodes get no traffic, unless every node is
            // unhealthy: then weir fails open and uses them all.
            eligible: Eligibility::of(upstream, set),
            tried: Tried::default(),
            sent: false,
            timed: upstream.lb == LbType::Ewma || logging,
        })
    }

    /// True when the request may be sent again after it may have reached
    /// a node.
    pub fn replayable(&self) -> bool {
        self.replayable
    }

    /// Not tried yet, and healthy (or every node is unhealthy).
    fn available(&self, i: usize) -> bool {
        !self.tried.contains(i) && self.eligible.allows(self.set, i)
    }

    /// The highest priority among available nodes: only that group gets
    /// traffic (APISIX's node `priority`: lower groups are backups, used
    /// once every higher node has failed for this request or is unhealthy).
    fn top_priority(&self) -> i64 {
        if self.set.priorities.is_empty() {
            return 0;
        }
        (0..self.set.len())
            .filter(|&i| self.available(i))
            .map(|i| self.set.priority(i))
            .max()
            .unwrap_or(0)
    }

    fn usable(&self, i: usize, top: i64) -> bool {
        self.available(i) && self.set.priority(i) == top
    }

    /// The next node to try, or `None` when no more attempt is allowed
    /// (attempts or `retry_timeout` used up, nothing replayable left, no
    /// usable node).
    pub fn next_node(&mut self) -> Option<NodeTry> {
        if self.tried.len() >= self.max_attempts {
            return None;
        }
        if !self.tried.is_empty() && retry_deadline_passed(self.upstream, self.started) {
            return None;
        }
        if self.sent && !self.replayable {
            return None;
        }
        let top = self.top_priority();
        let index = match self.set.groups.iter().find(|g| g.priority == top) {
            // The top group's own balancer, over its own weights.
            Some(g) => g
                .balancer
                .pick(&g.balance_nodes, self.hash, &|j| {
                    !self.usable(g.members[j], top)
                })
                .map(|j| g.members[j])?,
            None => self
                .set
                .balancer
                .pick(&self.set.balance_nodes, self.hash, &|i| {
                    !self.usable(i, top)
                })?,
        };
        self.tried.push(index);
        let node = self.set.nodes[index].clone();
        let in_flight = node.load.begin();
        Some(NodeTry {
            index,
            node,
            in_flight,
            started: self.timed.then(Instant::now),
        })
    }

    fn elapsed(t: &NodeTry) -> Duration {
        t.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// A node answered with `status`: feeds ewma, passive health and the
    /// log, and says whether to relay the answer or try another node.
    pub fn answered(
        &mut self,
        t: &NodeTry,
        status: u16,
        record: Option<&mut AccessRecord>,
    ) -> Verdict {
        let elapsed = Self::elapsed(t);
        if self.upstream.lb == LbType::Ewma {
            t.node.load.observe(elapsed);
        }
        if let Some(r) = record {
            r.push_attempt(&t.node.key, Some(status), elapsed);
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        crate::health::observe_answer(self.upstream, &t.node, code);
        let another =
            (0..self.set.len()).any(|i| self.available(i) && self.set.balance_nodes[i].weight > 0);
        if matches!(status, 502..=504)
            && self.replayable
            && self.tried.len() < self.max_attempts
            && another
            && !retry_deadline_passed(self.upstream, self.started)
        {
            tracing::warn!(upstream = %self.upstream.id, node = %t.node.key, status, "node answered an error; retrying on another node");
            self.sent = true;
            return Verdict::Retry;
        }
        Verdict::Use
    }

    /// An attempt failed: feeds passive health and the log; true when
    /// another node may be tried (the request never left, or it can be
    /// replayed). A failure of the client's own is not the node's: nothing
    /// is counted against it.
    pub fn failed(&mut self, t: &NodeTry, f: &Failure, record: Option<&mut AccessRecord>) -> bool {
        if let Some(r) = record {
            r.push_attempt(&t.node.key, None, Self::elapsed(t));
        }
        if f.client_gone || f.client_fault {
            return false;
        }
        crate::health::observe_failure(
            self.upstream,
            &t.node,
            f.status == StatusCode::GATEWAY_TIMEOUT,
        );
        tracing::warn!(
            upstream = %self.upstream.id,
            node = %t.node.key,
            attempt = self.tried.len(),
            error = %f.reason,
            "upstream attempt failed"
        );
        self.sent |= f.sent;
        !f.sent || self.replayable
    }
}
