//! Node `priority` (APISIX's node groups): only the highest group with an
//! available node gets traffic; a lower group (`priority: -1`, a backup)
//! takes over only when every node above has failed for the request or is
//! unhealthy, and within one request the retry after a failed node goes to
//! the next node of the same group before any backup.
//!
//! On every client of `every_client!` (HTTP/1.1 plain, TLS, general path;
//! HTTP/2 h2c). Nodes are raw-socket backends that answer their name; a
//! "dead" one hangs up on every request it reads (its port stays bound, so
//! no parallel test can take it over), a refusing one is a bound port that
//! never listens.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::wire::*;
use serde_json::json;

/// A node answering its name, until `dead` is set: then it closes every
/// connection on the next request it reads, without answering.
struct Node {
    backend: RawBackend,
    dead: Arc<AtomicBool>,
}

impl Node {
    async fn start(name: &'static str) -> Node {
        let dead = Arc::new(AtomicBool::new(false));
        let flag = dead.clone();
        let backend = RawBackend::start(move |_| {
            if flag.load(Ordering::SeqCst) {
                Answer::HangUp
            } else {
                Answer::Send(ok(name))
            }
        })
        .await;
        Node { backend, dead }
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    fn revive(&self) {
        self.dead.store(false, Ordering::SeqCst);
    }

    fn seen(&self) -> usize {
        self.backend.seen().len()
    }
}

/// A node in APISIX's list form, weight 1.
fn node(addr: &str, priority: i64) -> serde_json::Value {
    weighted(addr, 1, priority)
}

fn weighted(addr: &str, weight: u32, priority: i64) -> serde_json::Value {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    json!({"host": host, "port": port.parse::<u16>().expect("port"), "weight": weight, "priority": priority})
}

async fn start(via: Via, nodes: Vec<serde_json::Value>) -> (TestGateway, AnyClient) {
    let gw = gateway_with(
        via.transport(),
        &[],
        json!({"routes": [{"uri": "/*", "upstream": {"nodes": nodes}}]}),
    )
    .await;
    let c = AnyClient::connect(via, &gw).await;
    (gw, c)
}

/// Sends `n` GETs on `c`; counts answers per node name.
async fn answers(c: &mut AnyClient, n: usize, what: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let r = c.send(&Req::get(&format!("/{i}"))).await;
        assert_eq!(r.status, 200, "{what}, request {i}: {r:?}");
        *counts.entry(r.text()).or_insert(0) += 1;
    }
    counts
}

fn only(name: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(name.to_owned(), n)])
}

async fn backup_gets_traffic_only_when_every_higher_node_failed(via: Via) {
    let (p1, p2, backup) = (
        Node::start("p1").await,
        Node::start("p2").await,
        Node::start("backup").await,
    );
    let (_gw, mut c) = start(
        via,
        vec![
            node(&p1.backend.node(), 1),
            node(&p2.backend.node(), 1),
            node(&backup.backend.node(), -1),
        ],
    )
    .await;

    let counts = answers(&mut c, 20, "all alive").await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["p1", "p2"],
        "the priority-1 group shares the traffic; the backup gets none: {counts:?}"
    );
    assert_eq!(backup.seen(), 0, "the backup was never tried");

    p1.kill();
    let p1_before = p1.seen();
    let counts = answers(&mut c, 20, "p1 dead").await;
    assert_eq!(
        counts,
        only("p2", 20),
        "the other priority-1 node takes all the traffic"
    );
    assert!(
        p1.seen() > p1_before,
        "the dead node was tried (and failed)"
    );
    assert_eq!(
        backup.seen(),
        0,
        "the backup was never tried while p2 answers"
    );

    p2.kill();
    let counts = answers(&mut c, 10, "p1 and p2 dead").await;
    assert_eq!(counts, only("backup", 10));

    p1.revive();
    let before = backup.seen();
    let counts = answers(&mut c, 10, "p1 back").await;
    assert_eq!(counts, only("p1", 10), "traffic goes back up");
    assert_eq!(backup.seen(), before, "the backup is left again");
}

/// The first node of the top group refuses connections: the request goes
/// to the other node of that group, never to the backup, whatever its
/// method (a refused connection never carried the request).
async fn retry_after_a_refused_node_stays_in_the_same_group(via: Via) {
    let refused = common::closed_port().await.to_string();
    let (good, backup) = (Node::start("good").await, Node::start("backup").await);
    let (gw, mut c) = start(
        via,
        vec![
            node(&refused, 5),
            node(&good.backend.node(), 5),
            node(&backup.backend.node(), 0),
        ],
    )
    .await;
    for i in 0..10 {
        let r = c.send(&Req::get(&format!("/get/{i}"))).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "good"),
            "GET {i}: {r:?}"
        );
        let r = c
            .send(&Req::new("POST", &format!("/post/{i}")).body("payload"))
            .await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "good"),
            "POST {i}: {r:?}"
        );
    }
    assert_eq!(backup.seen(), 0, "the backup was never tried");
    assert_eq!(good.seen(), 20);
    // The refused node was tried first by some of these requests.
    let metrics = common::get(gw.control_addr(), None, "/metrics").await.body;
    let series =
        format!("weir_upstream_node_attempts_total{{node=\"{refused}\",result=\"error\"}} ");
    let tried: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        tried >= 5,
        "the refused node was tried {tried} times:\n{metrics}"
    );
}

/// Within the group that gets the traffic, round robin follows the group's
/// own weights, as APISIX's priority balancer runs one picker per group: a
/// backup's weight gives no extra turns to any node of the group.
async fn top_group_is_balanced_by_its_own_weights(via: Via) {
    let (p1, p2, backup) = (
        Node::start("p1").await,
        Node::start("p2").await,
        Node::start("backup").await,
    );
    let (_gw, mut c) = start(
        via,
        vec![
            weighted(&p1.backend.node(), 1, 1),
            weighted(&p2.backend.node(), 1, 1),
            weighted(&backup.backend.node(), 2, -1),
        ],
    )
    .await;
    let counts = answers(&mut c, 20, "all alive").await;
    assert_eq!(
        counts,
        BTreeMap::from([("p1".to_owned(), 10), ("p2".to_owned(), 10)]),
        "equal weights in the top group share the traffic equally"
    );
}

every_client!(
    backup_gets_traffic_only_when_every_higher_node_failed,
    top_group_is_balanced_by_its_own_weights,
    retry_after_a_refused_node_stays_in_the_same_group,
);
