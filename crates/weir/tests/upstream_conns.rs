//! Upstream keep-alive connections as a node sees them: `keepalive_pool`
//! (docs/configuration.md) — `size` idle connections kept per node,
//! `idle_timeout` seconds an idle connection is kept, `requests` per
//! connection before it is closed — counted in TCP connections the node
//! accepts and closes.
//!
//! Each case runs once per transport (`every_transport!`, see
//! `common/wire.rs`): the fast path keeps bare TCP connections, the general
//! path hyper connections, in pools of their own.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::wire::*;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::timeout;

/// Bound on every wait for the gateway or the node to get somewhere.
const SETTLE: Duration = Duration::from_secs(10);

/// What a [`CountingNode`] has seen.
#[derive(Debug, Default, Clone)]
struct Counts {
    /// TCP connections accepted.
    accepted: usize,
    /// Connections the gateway closed (end of stream seen by the node).
    closed: usize,
    /// For each request, in arrival order, its connection (1-based, in
    /// accept order).
    requests: Vec<usize>,
}

impl Counts {
    /// Requests carried by each connection, in accept order.
    fn per_connection(&self) -> Vec<usize> {
        (1..=self.accepted)
            .map(|c| self.requests.iter().filter(|r| **r == c).count())
            .collect()
    }
}

/// A node that counts the connections it accepts and sees closed, and
/// answers the n-th request it gets (1-based) once `release` reaches n: a
/// test can hold requests in flight, so that each holds a connection.
struct CountingNode {
    addr: SocketAddr,
    counts: watch::Sender<Counts>,
    release: watch::Sender<usize>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingNode {
    /// A node that answers every request at once.
    async fn start() -> CountingNode {
        Self::holding(usize::MAX).await
    }

    /// A node that answers requests up to the `release`-th at once and
    /// holds the rest until [`CountingNode::release`].
    async fn holding(release: usize) -> CountingNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
        let addr = listener.local_addr().expect("node address");
        let counts = watch::channel(Counts::default()).0;
        let release = watch::channel(release).0;
        let (c, r) = (counts.clone(), release.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut id = 0;
                c.send_modify(|c| {
                    c.accepted += 1;
                    id = c.accepted;
                });
                let (c, mut r) = (c.clone(), r.subscribe());
                tokio::spawn(async move {
                    let mut wire = Wire::new(stream);
                    loop {
                        let target = match wire.head().await {
                            Ok(Some(head)) => head.start.split(' ').nth(1).unwrap_or("").to_owned(),
                            // The gateway closed (or broke) the connection.
                            Ok(None) | Err(_) => break,
                        };
                        let mut nth = 0;
                        c.send_modify(|c| {
                            c.requests.push(id);
                            nth = c.requests.len();
                        });
                        if r.wait_for(|released| *released >= nth).await.is_err() {
                            break;
                        }
                        use tokio::io::AsyncWriteExt;
                        if wire.io.write_all(&ok(&target)).await.is_err() {
                            break;
                        }
                    }
                    c.send_modify(|c| c.closed += 1);
                });
            }
        });
        CountingNode {
            addr,
            counts,
            release,
            accept,
        }
    }

    fn node(&self) -> String {
        self.addr.to_string()
    }

    fn counts(&self) -> Counts {
        self.counts.borrow().clone()
    }

    /// Answers every request up to the `n`-th.
    fn release(&self, n: usize) {
        self.release.send_replace(n);
    }

    /// Waits (bounded) until the counts satisfy `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Counts) -> bool) -> Counts {
        let mut rx = self.counts.subscribe();
        let counts = match timeout(SETTLE, rx.wait_for(|c| pred(c))).await {
            Ok(Ok(c)) => c.clone(),
            Ok(Err(_)) => panic!("{what}: the node stopped"),
            Err(_) => panic!("{what}: not within {SETTLE:?}: {:?}", self.counts()),
        };
        counts
    }
}

impl Drop for CountingNode {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A gateway with one route to `node` and this `keepalive_pool`.
async fn gateway_with_pool(
    t: Transport,
    node: &CountingNode,
    pool: serde_json::Value,
) -> TestGateway {
    let route = serde_json::json!({
        "id": "wire",
        "uri": "/*",
        "upstream": {"nodes": {node.node(): 1}, "keepalive_pool": pool},
    });
    gateway_with(t, &[node.node()], serde_json::json!({"routes": [route]})).await
}

/// Idle pooled connections the gateway holds to `node` (`/v1/upstreams`).
async fn idle_connections(gw: &TestGateway, node: &CountingNode) -> u64 {
    let upstreams = control_json(gw, "/v1/upstreams").await;
    upstreams
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["nodes"].as_array().into_iter().flatten())
        .filter(|n| n["port"] == node.addr.port())
        .map(|n| n["idle_connections"].as_u64().expect("idle_connections"))
        .sum()
}

/// Waits (bounded) until the gateway's pool and the node agree that every
/// connection the node accepted is either idle in the pool or closed; then
/// returns (idle, counts).
async fn settled(gw: &TestGateway, node: &CountingNode) -> (u64, Counts) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let idle = idle_connections(gw, node).await;
        let counts = node.counts();
        if idle as usize + counts.closed == counts.accepted {
            return (idle, counts);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections never settled within {SETTLE:?}: {idle} idle, {counts:?}"
        );
        // Poll the control API: the pool has no event to wait on.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends one GET per client connection, all before any answer.
async fn send_concurrently(gw: &TestGateway, paths: &[String]) -> Vec<Client> {
    let mut clients = Vec::new();
    for p in paths {
        let mut c = Client::connect(gw).await;
        c.send(&get(p)).await;
        clients.push(c);
    }
    clients
}

async fn read_all(clients: Vec<Client>, paths: &[String]) {
    for (mut c, p) in clients.into_iter().zip(paths) {
        let r = c.response().await;
        assert_eq!((r.status, r.text()), (200, p.clone()), "{p}: {r:?}");
    }
}

/// `keepalive_pool.size: 1`: three requests in flight at once need three
/// connections; once they are answered the pool keeps one and closes the
/// other two; three more at once reuse that one and open two new ones.
async fn the_pool_keeps_at_most_size_idle_connections_and_closes_the_rest(t: Transport) {
    const AT_ONCE: usize = 3;
    let node = CountingNode::holding(0).await;
    let gw = gateway_with_pool(t, &node, serde_json::json!({"size": 1})).await;

    for round in 0..2 {
        let paths: Vec<String> = (0..AT_ONCE).map(|i| format!("/r{round}/{i}")).collect();
        let clients = send_concurrently(&gw, &paths).await;
        let arrived = (round + 1) * AT_ONCE;
        node.wait_for(&format!("round {round}: all requests in flight"), |c| {
            c.requests.len() == arrived
        })
        .await;
        node.release(arrived);
        read_all(clients, &paths).await;
        let (idle, counts) = settled(&gw, &node).await;
        let accepted = AT_ONCE + round * (AT_ONCE - 1);
        assert_eq!(
            (counts.accepted, idle, counts.closed),
            (accepted, 1, accepted - 1),
            "round {round}: (connections accepted, idle in the pool, closed): {counts:?}"
        );
    }
}

/// `keepalive_pool.requests: 3`: nine requests one after another travel on
/// three connections, three requests each, and the gateway closes each
/// connection after its third.
async fn a_connection_is_closed_after_keepalive_pool_requests(t: Transport) {
    const LIMIT: usize = 3;
    let node = CountingNode::start().await;
    let gw = gateway_with_pool(t, &node, serde_json::json!({"requests": LIMIT})).await;
    let mut c = Client::connect(&gw).await;
    for i in 0..3 * LIMIT {
        let path = format!("/n/{i}");
        c.send(&get(&path)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.text()), (200, path), "request {i}: {r:?}");
        // The connection is back in the pool or closed before the next
        // request, so the count does not depend on timing.
        settled(&gw, &node).await;
    }
    let counts = node.counts();
    assert_eq!(
        counts.per_connection(),
        vec![LIMIT; 3],
        "requests carried by each connection: {counts:?}"
    );
    assert_eq!(
        counts.closed, 3,
        "the gateway closes each connection after its {LIMIT}th request: {counts:?}"
    );
}

/// `keepalive_pool.idle_timeout: 0.3`: a connection idle for longer is not
/// used again (the next request opens a new one, and the old one is
/// closed); with the default (60 s) the same pause keeps it in use.
async fn an_idle_connection_older_than_idle_timeout_is_not_reused(t: Transport) {
    const IDLE_TIMEOUT: f64 = 0.3;
    // Well past the idle timeout; machine load can only make it longer.
    const PAUSE: Duration = Duration::from_secs(1);
    for (pool, reused) in [
        (serde_json::json!({"idle_timeout": IDLE_TIMEOUT}), false),
        (serde_json::json!({}), true),
    ] {
        let node = CountingNode::start().await;
        let gw = gateway_with_pool(t, &node, pool.clone()).await;
        let mut c = Client::connect(&gw).await;
        c.send(&get("/first")).await;
        assert_eq!(c.response().await.status, 200);
        let (idle, _) = settled(&gw, &node).await;
        assert_eq!(idle, 1, "{pool}: the first connection is pooled");
        tokio::time::sleep(PAUSE).await;
        c.send(&get("/second")).await;
        assert_eq!(c.response().await.status, 200);
        let (_, counts) = settled(&gw, &node).await;
        if reused {
            assert_eq!(
                counts.per_connection(),
                vec![2],
                "{pool}: reused after {PAUSE:?} idle: {counts:?}"
            );
        } else {
            assert_eq!(
                (counts.per_connection(), counts.closed),
                (vec![1, 1], 1),
                "{pool}: a connection idle for {PAUSE:?} is not reused, and is \
                 closed: {counts:?}"
            );
        }
    }
}

every_transport!(
    the_pool_keeps_at_most_size_idle_connections_and_closes_the_rest,
    a_connection_is_closed_after_keepalive_pool_requests,
    an_idle_connection_older_than_idle_timeout_is_not_reused,
);
