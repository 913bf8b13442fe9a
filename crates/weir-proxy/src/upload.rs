//! The node's timeouts while a client's request body streams to it on the
//! general path, as nginx's `proxy_send_timeout` and `proxy_read_timeout`:
//! `timeout.send` bounds each wait for the node to take more of the body,
//! `timeout.read` the wait for the response head once the body has all
//! gone out. An upload that keeps moving is never cut, however long it
//! takes; a wait on the client is the client's (`http.body_timeout`).
//!
//! hyper's client connection polls the request body only while it can
//! write what it gets (its write buffer has room), in the connection's own
//! task. [`UploadWatch`] records each poll, and whether it left hyper
//! waiting on the client; [`with_node_deadlines`] reads it from the
//! request's task.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Where a streamed request body stands, shared by the body (the
/// connection's task) and the attempt (the request's task).
#[derive(Debug)]
pub struct UploadWatch {
    base: Instant,
    /// Nanoseconds after `base` of the body's last poll.
    polled_at: AtomicU64,
    state: AtomicU8,
}

/// hyper took the last piece and may ask for more: the node's turn.
const SENDING: u8 = 0;
/// hyper asked for more and the client has not sent it: the client's turn.
const WAITING_CLIENT: u8 = 1;
/// The whole body has been handed to hyper.
const ENDED: u8 = 2;

/// Which of the node's timeouts ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTimeout {
    /// The node took none of the body for `timeout.send`.
    Send(Duration),
    /// The node gave no response head for `timeout.read` after the request
    /// went out.
    Read(Duration),
}

impl Default for UploadWatch {
    fn default() -> Self {
        UploadWatch {
            base: Instant::now(),
            polled_at: AtomicU64::new(0),
            state: AtomicU8::new(SENDING),
        }
    }
}

impl UploadWatch {
    /// Records a poll of the body: `pending` when it left hyper waiting on
    /// the client, `ended` when the body has given its last frame.
    pub fn polled(&self, pending: bool, ended: bool) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.polled_at.store(nanos, Ordering::Relaxed);
        let state = if ended {
            ENDED
        } else if pending {
            WAITING_CLIENT
        } else {
            SENDING
        };
        self.state.store(state, Ordering::Release);
    }

    fn snapshot(&self) -> (u8, Instant) {
        let state = self.state.load(Ordering::Acquire);
        let at = self.base + Duration::from_nanos(self.polled_at.load(Ordering::Relaxed));
        (state, at)
    }
}

/// Awaits `exchange` (a request whose body is watched by `watch`) under the
/// node's timeouts: `send` while the node has the body's next piece to take,
/// `read` from the body's end to the response head. While hyper waits on the
/// client no node timeout runs.
pub async fn with_node_deadlines<F: Future>(
    exchange: F,
    watch: &UploadWatch,
    send: Duration,
    read: Duration,
) -> Result<F::Output, NodeTimeout> {
    tokio::pin!(exchange);
    loop {
        let (state, at) = watch.snapshot();
        let deadline = match state {
            ENDED => at + read,
            SENDING => at + send,
            // The client's turn: look again after `send`.
            _ => Instant::now() + send,
        };
        tokio::select! {
            biased;
            out = &mut exchange => return Ok(out),
            () = tokio::time::sleep_until(deadline) => {
                if state == WAITING_CLIENT || watch.snapshot() != (state, at) {
                    continue;
                }
                return Err(if state == ENDED {
                    NodeTimeout::Read(read)
                } else {
                    NodeTimeout::Send(send)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_moving_is_never_cut() {
        let watch = std::sync::Arc::new(UploadWatch::default());
        let w = watch.clone();
        // 10 pieces, one every 600 ms: 6 s in all, against 1 s + 1 s.
        let exchange = async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                w.polled(false, false);
            }
            w.polled(false, true);
            tokio::time::sleep(Duration::from_millis(900)).await;
            "answer"
        };
        let out = with_node_deadlines(
            exchange,
            &watch,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(out, Ok("answer"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_stops_taking_the_body_times_out_after_send() {
        let watch = std::sync::Arc::new(UploadWatch::default());
        let w = watch.clone();
        let exchange = async move {
            w.polled(false, false);
            std::future::pending::<()>().await
        };
        let started = Instant::now();
        let out = with_node_deadlines(
            exchange,
            &watch,
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out, Err(NodeTimeout::Send(Duration::from_secs(2))));
        assert!(started.elapsed() < Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_the_client_is_not_the_nodes_time() {
        let watch = std::sync::Arc::new(UploadWatch::default());
        let w = watch.clone();
        let exchange = async move {
            w.polled(true, false);
            tokio::time::sleep(Duration::from_secs(30)).await;
            w.polled(false, true);
            std::future::pending::<()>().await
        };
        let started = Instant::now();
        let out = with_node_deadlines(
            exchange,
            &watch,
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(out, Err(NodeTimeout::Read(Duration::from_secs(3))));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(33) && took < Duration::from_secs(34),
            "{took:?}"
        );
    }
}
