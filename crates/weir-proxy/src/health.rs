//! Node health: counters fed by active probes and by live traffic (passive),
//! with APISIX's (lua-resty-healthcheck's) semantics: consecutive successes
//! make a node healthy, and any failure kind reaching its threshold makes it
//! unhealthy. State lives in the node's shared state, so it survives reloads
//! and discovery updates for nodes that stay.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use weir_config::{ActiveCheck, CheckType, PassiveCheck};

use crate::body::ProxyBody;
use crate::upstream::{NodeSet, NodeState, Upstream};

/// What one observation says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A healthy status (or a TCP probe that connected).
    Success,
    /// A status in the unhealthy list.
    HttpFailure,
    /// Connection refused, reset, TLS failure.
    TcpFailure,
    /// No answer in time.
    Timeout,
    /// A status in neither list: no effect.
    Neutral,
}

/// Counts that flip a node's state.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Successes that make an unhealthy node healthy.
    pub successes: u32,
    /// HTTP failures that make a node unhealthy.
    pub http_failures: u32,
    /// TCP failures that make a node unhealthy.
    pub tcp_failures: u32,
    /// Timeouts that make a node unhealthy.
    pub timeouts: u32,
}

/// Health of one node. Lock-free; concurrent updates may interleave, which
/// at worst delays a transition by one observation.
#[derive(Debug, Default)]
pub struct NodeHealth {
    unhealthy: AtomicBool,
    successes: AtomicU32,
    http_failures: AtomicU32,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
}

/// A state change, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The node went healthy -> unhealthy.
    BecameUnhealthy,
    /// The node went unhealthy -> healthy.
    BecameHealthy,
}

impl NodeHealth {
    /// True unless checks marked the node unhealthy.
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// Feeds one observation; returns the transition it caused, if any.
    pub fn record(&self, outcome: Outcome, t: &Thresholds) -> Option<Transition> {
        let failure = |counter: &AtomicU32, limit: u32| -> Option<Transition> {
            self.successes.store(0, Ordering::Relaxed);
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= limit && !self.unhealthy.swap(true, Ordering::Relaxed) {
                self.reset_failures();
                return Some(Transition::BecameUnhealthy);
            }
            None
        };
        match outcome {
            Outcome::Neutral => None,
            Outcome::Success => {
                self.reset_failures();
                if self.is_healthy() {
                    return None;
                }
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= t.successes && self.unhealthy.swap(false, Ordering::Relaxed) {
                    self.successes.store(0, Ordering::Relaxed);
                    return Some(Transition::BecameHealthy);
                }
                None
            }
            Outcome::HttpFailure => failure(&self.http_failures, t.http_failures),
            Outcome::TcpFailure => failure(&self.tcp_failures, t.tcp_failures),
            Outcome::Timeout => failure(&self.timeouts, t.timeouts),
        }
    }

    fn reset_failures(&self) {
        self.http_failures.store(0, Ordering::Relaxed);
        self.tcp_failures.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
    }

    /// Counters for the control API.
    pub fn counters(&self) -> serde_json::Value {
        serde_json::json!({
            "success": self.successes.load(Ordering::Relaxed),
            "http_failure": self.http_failures.load(Ordering::Relaxed),
            "tcp_failure": self.tcp_failures.load(Ordering::Relaxed),
            "timeout_failure": self.timeouts.load(Ordering::Relaxed),
        })
    }
}

/// The compiled `checks` of one upstream.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// Probes, if configured.
    pub active: Option<ActiveCheck>,
    /// Traffic judgement, if configured.
    pub passive: Option<PassiveCheck>,
    /// TLS for `type: https` probes: the check's own
    /// `https_verify_certificate`, with the upstream's CA (`tls.ca_file`) or
    /// the web roots; independent of the upstream's scheme and `tls.verify`.
    pub probe_tls: Option<Arc<rustls::ClientConfig>>,
}

impl HealthPolicy {
    /// Classifies a proxied response for passive checks.
    pub fn passive_status(&self, status: StatusCode) -> Option<(Outcome, Thresholds)> {
        let p = self.passive.as_ref()?;
        let code = status.as_u16();
        let outcome = if p.check_type == CheckType::Tcp {
            Outcome::Success
        } else if p.unhealthy.http_statuses.contains(&code) {
            Outcome::HttpFailure
        } else if p.healthy.http_statuses.contains(&code) {
            Outcome::Success
        } else {
            Outcome::Neutral
        };
        Some((outcome, passive_thresholds(p)))
    }

    /// Classifies a failed attempt for passive checks.
    pub fn passive_failure(&self, timed_out: bool) -> Option<(Outcome, Thresholds)> {
        let p = self.passive.as_ref()?;
        let outcome = if timed_out {
            Outcome::Timeout
        } else {
            Outcome::TcpFailure
        };
        Some((outcome, passive_thresholds(p)))
    }
}

fn passive_thresholds(p: &PassiveCheck) -> Thresholds {
    Thresholds {
        successes: p.healthy.successes,
        http_failures: p.unhealthy.http_failures,
        tcp_failures: p.unhealthy.tcp_failures,
        timeouts: p.unhealthy.timeouts,
    }
}

/// Which nodes of a set may take a request: the healthy ones, or all of
/// them when every node is unhealthy (weir then fails open, and says so at
/// most once a second). Used by both request paths.
pub struct Eligibility {
    health_aware: bool,
    fail_open: bool,
}

static FAIL_OPEN_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Eligibility {
    /// Judges `set` of `upstream` for one request.
    pub fn of(upstream: &Upstream, set: &NodeSet) -> Eligibility {
        let health_aware = upstream.health.is_some();
        let fail_open = health_aware && set.nodes.iter().all(|n| !n.health.is_healthy());
        if fail_open && log_limited(&FAIL_OPEN_LOGGED) {
            tracing::warn!(upstream = %upstream.id, nodes = set.len(), "every node is unhealthy; failing open and using them all");
        }
        Eligibility {
            health_aware,
            fail_open,
        }
    }

    /// True when node `i` of `set` may take the request.
    pub fn allows(&self, set: &NodeSet, i: usize) -> bool {
        !self.health_aware || self.fail_open || set.nodes[i].health.is_healthy()
    }
}

/// True at most once per second per `slot`: keeps repeated warnings from
/// flooding the log.
pub fn log_limited(slot: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = slot.load(Ordering::Relaxed);
    now > last
        && slot
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Passive check on a node's answer in real traffic (both request paths).
pub fn observe_answer(upstream: &Upstream, node: &NodeState, status: StatusCode) {
    node.attempts.answered(status.as_u16());
    if let Some((outcome, t)) = upstream
        .health
        .as_ref()
        .and_then(|h| h.passive_status(status))
    {
        observe(&upstream.id, node, outcome, &t, "passive");
    }
}

/// Passive check on an attempt that got no answer (both request paths).
pub fn observe_failure(upstream: &Upstream, node: &NodeState, timed_out: bool) {
    node.attempts.failed(timed_out);
    if let Some((outcome, t)) = upstream
        .health
        .as_ref()
        .and_then(|h| h.passive_failure(timed_out))
    {
        observe(&upstream.id, node, outcome, &t, "passive");
    }
}

/// Records an observation and logs a state change.
pub fn observe(upstream: &str, node: &NodeState, outcome: Outcome, t: &Thresholds, source: &str) {
    match node.health.record(outcome, t) {
        Some(Transition::BecameUnhealthy) => {
            tracing::warn!(upstream, node = %node.key, ?outcome, source, "node marked unhealthy")
        }
        Some(Transition::BecameHealthy) => {
            tracing::info!(upstream, node = %node.key, source, "node marked healthy again")
        }
        None => {}
    }
}

/// Runs active probes for `upstream` until it is dropped (a reload replaced it).
pub fn spawn_active_checker(upstream: Weak<Upstream>, check: ActiveCheck) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: active health checks not started");
        return;
    };
    runtime.spawn(async move {
        let healthy_every = Duration::from_secs_f64(check.healthy.interval);
        let unhealthy_every = Duration::from_secs_f64(check.unhealthy.interval);
        let tick = healthy_every.min(unhealthy_every);
        let thresholds = Thresholds {
            successes: check.healthy.successes,
            http_failures: check.unhealthy.http_failures,
            tcp_failures: check.unhealthy.tcp_failures,
            timeouts: check.unhealthy.timeouts,
        };
        let mut last_probe: std::collections::HashMap<Arc<str>, Instant> = Default::default();
        loop {
            let Some(up) = upstream.upgrade() else { break };
            let set = up.node_set();
            let id = up.id.clone();
            let probe_tls = up.health.as_ref().and_then(|h| h.probe_tls.clone());
            drop(up);
            let mut probes = Vec::new();
            for node in &set.nodes {
                let every = if node.health.is_healthy() {
                    healthy_every
                } else {
                    unhealthy_every
                };
                let due = last_probe
                    .get(&node.key)
                    .is_none_or(|t| t.elapsed() + Duration::from_millis(5) >= every);
                if due {
                    last_probe.insert(node.key.clone(), Instant::now());
                    probes.push(probe_and_record(
                        id.clone(),
                        node.clone(),
                        check.clone(),
                        probe_tls.clone(),
                        thresholds,
                    ));
                }
            }
            futures::future::join_all(probes).await;
            last_probe.retain(|k, _| set.nodes.iter().any(|n| n.key == *k));
            drop(set);
            tokio::time::sleep(tick).await;
        }
        tracing::debug!("active health checker stopped (upstream replaced)");
    });
}

async fn probe_and_record(
    upstream: String,
    node: Arc<NodeState>,
    check: ActiveCheck,
    tls: Option<Arc<rustls::ClientConfig>>,
    t: Thresholds,
) {
    let outcome = probe(&node, &check, tls).await;
    observe(&upstream, &node, outcome, &t, "active");
}

/// One probe: TCP connect, or an HTTP(S) GET of `http_path`.
async fn probe(
    node: &NodeState,
    check: &ActiveCheck,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Outcome {
    let timeout = Duration::from_secs_f64(check.timeout);
    let mut endpoint = node.endpoint.clone();
    if let Some(port) = check.port {
        endpoint.port = port;
    }
    if check.check_type != CheckType::Https {
        endpoint.tls = None;
    } else if let Some(config) = tls {
        // The check's TLS, whatever the upstream's scheme; SNI and the
        // verified name from the check's `host`, else the node's.
        let name = check
            .host
            .as_deref()
            .map(crate::router::strip_port)
            .unwrap_or(&endpoint.host)
            .to_owned();
        match rustls::pki_types::ServerName::try_from(name) {
            Ok(server_name) => {
                endpoint.tls = Some(crate::pool::TlsTarget {
                    server_name,
                    config,
                })
            }
            Err(_) => return Outcome::TcpFailure,
        }
    }
    let attempt = async {
        let mut conn = match crate::pool::connect(&endpoint, timeout).await {
            Ok(c) => c,
            Err(crate::pool::ConnectError::Timeout(_)) => return Outcome::Timeout,
            Err(_) => return Outcome::TcpFailure,
        };
        if check.check_type == CheckType::Tcp {
            return Outcome::Success;
        }
        let host = check
            .host
            .clone()
            .unwrap_or_else(|| format!("{}:{}", endpoint.host, endpoint.port));
        let req = Request::get(check.http_path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "weir-healthcheck")
            .header(http::header::CONNECTION, "close")
            .body(ProxyBody::empty());
        let Ok(req) = req else {
            return Outcome::HttpFailure;
        };
        if conn.sender.ready().await.is_err() {
            return Outcome::TcpFailure;
        }
        match conn.sender.send_request(req).await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                if check.unhealthy.http_statuses.contains(&code) {
                    Outcome::HttpFailure
                } else if check.healthy.http_statuses.contains(&code) {
                    Outcome::Success
                } else {
                    Outcome::Neutral
                }
            }
            Err(_) => Outcome::TcpFailure,
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Outcome::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        successes: 2,
        http_failures: 3,
        tcp_failures: 2,
        timeouts: 2,
    };

    #[test]
    fn failures_reaching_a_threshold_mark_unhealthy_and_successes_restore() {
        let h = NodeHealth::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(Outcome::HttpFailure, &T), None);
        assert_eq!(h.record(Outcome::HttpFailure, &T), None);
        assert_eq!(
            h.record(Outcome::HttpFailure, &T),
            Some(Transition::BecameUnhealthy)
        );
        assert!(!h.is_healthy());
        assert_eq!(h.record(Outcome::Success, &T), None);
        assert_eq!(
            h.record(Outcome::Success, &T),
            Some(Transition::BecameHealthy)
        );
        assert!(h.is_healthy());
    }

    #[test]
    fn a_success_resets_failure_counts() {
        let h = NodeHealth::default();
        h.record(Outcome::TcpFailure, &T);
        h.record(Outcome::Success, &T);
        assert_eq!(h.record(Outcome::TcpFailure, &T), None);
        assert!(h.is_healthy());
        assert_eq!(
            h.record(Outcome::TcpFailure, &T),
            Some(Transition::BecameUnhealthy)
        );
    }

    #[test]
    fn neutral_statuses_change_nothing() {
        let h = NodeHealth::default();
        for _ in 0..10 {
            assert_eq!(h.record(Outcome::Neutral, &T), None);
        }
        assert!(h.is_healthy());
    }
}
