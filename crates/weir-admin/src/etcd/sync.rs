//! Keeping the hub in step with etcd: read the whole prefix, then watch it
//! from the next revision.
//!
//! - Each watch answer is one change set ([`super::apply`]).
//! - A broken connection: retry with jittered exponential backoff from
//!   100 ms up to `deployment.etcd.resync_delay` (reset once a watch is
//!   established), resuming the watch where it stopped; meanwhile the last
//!   configuration keeps serving.
//! - A watch request lives `deployment.etcd.watch_timeout`, then is opened
//!   again from the next revision (not an error, no wait).
//! - At start, without a warm-start configuration, `startup_retry` failed
//!   reads per host make the source give up ([`EtcdSource::wait_gave_up`]).
//! - A compacted revision: read everything again at once (no backoff).
//! - An etcd whose cluster id changed or whose revision went backwards
//!   (restored, restarted empty): read everything again; an etcd without
//!   any resource then does not replace a configuration that has some (see
//!   docs/operations.md), until something is written under the prefix.
//! - A probe every few seconds notices a partition a silent TCP connection
//!   would hide; it gets `deployment.etcd.health_check_timeout` to answer.

use std::sync::Arc;
use std::time::Duration;

use super::apply::{apply, Change, Outcome};
use super::client::{EtcdError, WatchMessage};
use super::EtcdSource;
use crate::hub::{ConfigHub, Engine};

/// How often the connection is probed while a watch is open.
const PROBE_EVERY: Duration = Duration::from_secs(3);

/// Jittered exponential backoff, 100 ms doubling up to `max`
/// (`deployment.etcd.resync_delay`).
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Backoff {
        Backoff {
            next: Self::FIRST.min(max),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }

    /// Sleeps between half the current step and the step, then doubles it.
    async fn sleep(&mut self) {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jittered = step.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        tokio::time::sleep(jittered).await;
    }
}

/// Where the hub stands in etcd's history.
#[derive(Debug, Clone, Copy)]
struct Position {
    cluster_id: u64,
    revision: i64,
}

/// Runs until the task is aborted.
pub async fn run<E: Engine>(hub: Arc<ConfigHub>, src: Arc<EtcdSource>, engine: Arc<E>) {
    let prefix = src.watch_prefix();
    let timing = src.timing;
    let mut backoff = Backoff::new(timing.resync_delay);
    let mut at: Option<Position> = None;
    let mut need_full = true;
    let mut holding = false;
    let mut failed_reads = 0u64;
    loop {
        if need_full {
            match src.client.range_prefix(&prefix).await {
                Err(e) => {
                    src.failed(&e);
                    failed_reads += 1;
                    if src.startup_gives_up(failed_reads, &e) {
                        return;
                    }
                    backoff.sleep().await;
                    continue;
                }
                Ok((h, kvs)) => {
                    let moved =
                        at.is_some_and(|p| p.cluster_id != h.cluster_id || h.revision < p.revision);
                    if moved {
                        tracing::warn!(cluster_id = %format!("{:x}", h.cluster_id), revision = h.revision, "etcd was replaced or restored (new cluster id or older revision): everything read again");
                    }
                    tracing::debug!(keys = kvs.len(), revision = h.revision, "etcd: prefix read");
                    let outcome = apply(
                        &hub,
                        &src,
                        &*engine,
                        Change::Full(kvs),
                        h.revision,
                        moved || holding,
                    )
                    .await;
                    holding = outcome == Outcome::Held;
                    at = Some(Position {
                        cluster_id: h.cluster_id,
                        revision: h.revision,
                    });
                    need_full = false;
                }
            }
        }
        let Some(pos) = at else {
            need_full = true;
            continue;
        };
        let mut stream = match src.client.watch(&prefix, pos.revision + 1).await {
            Ok(s) => s,
            Err(e) => {
                src.failed(&e);
                backoff.sleep().await;
                continue;
            }
        };
        src.watch_opened();
        let renew = tokio::time::sleep(timing.watch_timeout);
        tokio::pin!(renew);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                // watch_timeout: the next request resumes from the last
                // revision applied (`at`); nothing is missed.
                () = &mut renew => break,
                _ = probe.tick() => {
                    let answer = tokio::time::timeout(
                        timing.health_check_timeout,
                        src.client.probe(&prefix),
                    )
                    .await
                    .unwrap_or_else(|_| Err(src.client.unhealthy(timing.health_check_timeout)));
                    match answer {
                        Ok(h) if at.is_some_and(|p| h.cluster_id != p.cluster_id || h.revision < p.revision) => {
                            need_full = true;
                            break;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            src.failed(&e);
                            backoff.sleep().await;
                            break;
                        }
                    }
                }
            };
            match msg {
                Ok(Some(WatchMessage::Created(h))) => {
                    if h.cluster_id != pos.cluster_id || h.revision < pos.revision {
                        need_full = true;
                        break;
                    }
                    src.connected(h.cluster_id);
                    backoff.reset();
                }
                Ok(Some(WatchMessage::Events(_, events))) => {
                    if events.is_empty() {
                        continue;
                    }
                    if holding {
                        // Written to after it came back empty: read it whole.
                        need_full = true;
                        break;
                    }
                    let revision = events
                        .iter()
                        .map(|e| match e {
                            super::client::Event::Put(kv) | super::client::Event::Delete(kv) => {
                                kv.mod_revision
                            }
                        })
                        .max()
                        .unwrap_or(pos.revision);
                    apply(
                        &hub,
                        &src,
                        &*engine,
                        Change::Events(events),
                        revision,
                        false,
                    )
                    .await;
                    at = Some(Position {
                        cluster_id: pos.cluster_id,
                        revision,
                    });
                }
                Ok(Some(WatchMessage::Compacted { compact_revision })) => {
                    tracing::info!(
                        from = pos.revision + 1,
                        compact_revision,
                        "etcd: the watched revision was compacted: everything read again"
                    );
                    need_full = true;
                    break;
                }
                Ok(Some(WatchMessage::Canceled(reason))) => {
                    src.failed(&EtcdError::Protocol {
                        host: String::new(),
                        message: format!("watch canceled: {reason}"),
                    });
                    need_full = true;
                    backoff.sleep().await;
                    break;
                }
                Ok(None) => {
                    src.failed(&EtcdError::Unreachable {
                        host: String::new(),
                        message: "the watch connection was closed".into(),
                    });
                    backoff.sleep().await;
                    break;
                }
                Err(e) => {
                    src.failed(&e);
                    backoff.sleep().await;
                    break;
                }
            }
        }
    }
}
