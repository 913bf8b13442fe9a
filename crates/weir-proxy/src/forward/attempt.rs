//! One attempt on one node over the general (hyper) path: a pooled or new
//! connection, the exchange, and the WebSocket tunnel after a 101.

use std::sync::Arc;

use http::request::Parts;
use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::attempts::Failure;
use crate::body::ProxyBody;
use crate::pool::{self, PooledConn};
use crate::upstream::{NodeSet, Upstream};

/// A failed attempt; `unsent` holds the request when it never left weir
/// (then `failure.sent` is false).
pub(super) struct AttemptFailure {
    pub(super) failure: Failure,
    pub(super) unsent: Option<(Parts, ProxyBody)>,
}

pub(super) type SenderBack = Option<(pool::H1Client, u32)>;

/// One attempt on one node: a pooled or new connection, then the exchange.
pub(super) async fn send_to_node(
    upstream: &Upstream,
    set: &NodeSet,
    idx: usize,
    head: Parts,
    body: ProxyBody,
) -> Result<(Response<Incoming>, SenderBack), AttemptFailure> {
    let node = &set.nodes[idx];
    let mut req = Request::from_parts(head, body);
    // A pooled connection may have been closed by the node meanwhile; hyper
    // then hands the request back unsent and we try a fresh connection.
    for _ in 0..2 {
        let mut conn: PooledConn = match node.pool.checkout() {
            Some(c) => c,
            None => match pool::connect(&node.endpoint, upstream.timeouts.connect).await {
                Ok(c) => c,
                Err(e) => {
                    let failure = if matches!(e, pool::ConnectError::Timeout(_)) {
                        Failure::timeout(e.to_string(), false)
                    } else {
                        Failure::bad_gateway(e.to_string(), false)
                    };
                    return Err(AttemptFailure {
                        failure,
                        unsent: Some(req.into_parts()),
                    });
                }
            },
        };
        if conn.sender.ready().await.is_err() {
            continue;
        }
        let reused = conn.reused;
        let exchange = conn.sender.try_send_request(req);
        let wait = upstream.timeouts.send + upstream.timeouts.read;
        match tokio::time::timeout(wait, exchange).await {
            Ok(Ok(resp)) => {
                let keep = !is_connection_close(resp.headers());
                let uses = conn.uses + 1;
                let back = keep.then(|| (conn.into_client(), uses));
                return Ok((resp, back));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    continue;
                }
                Some(unsent) => {
                    return Err(AttemptFailure {
                        failure: Failure::bad_gateway(
                            format!("{}: {}", node.key, e.error()),
                            false,
                        ),
                        unsent: Some(unsent.into_parts()),
                    });
                }
                None if e.error().is_user() => {
                    return Err(AttemptFailure {
                        failure: Failure::client_fault(
                            "400 Bad Request: invalid request body",
                            format!("request body: {}", e.error()),
                        ),
                        unsent: None,
                    })
                }
                None => {
                    return Err(AttemptFailure {
                        failure: Failure::bad_gateway(format!("{}: {}", node.key, e.error()), true),
                        unsent: None,
                    })
                }
            },
            Err(_) => {
                return Err(AttemptFailure {
                    failure: Failure::timeout(
                        format!("{}: no response within {:?}", node.key, wait),
                        true,
                    ),
                    unsent: None,
                })
            }
        }
    }
    Err(AttemptFailure {
        failure: Failure::bad_gateway(
            format!("{}: pooled connections kept failing", node.key),
            true,
        ),
        unsent: None,
    })
}

/// Copies bytes both ways between an upgraded client and node connection.
pub(super) async fn tunnel(down: OnUpgrade, up: OnUpgrade, node: Arc<str>) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(node = %node, error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(node = %node, error = %e, "tunnel closed with error");
    }
}

fn is_connection_close(h: &HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}
