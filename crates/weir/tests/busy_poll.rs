//! `gateway.busy_poll_us` on real data-plane worker threads, started as the
//! binary starts them (`Gateway::start_with_workers`): requests are served
//! while a worker spins, its poller goes to sleep when the traffic stops,
//! and idle wake-ups shrink its spin window to its floor. The poller's state
//! is read from `weir_proxy::busy_poll::pollers()`, not from the CPU clock.

mod common;

use std::time::Duration;

use common::Backend;
use http::StatusCode;
use weir_proxy::busy_poll::{pollers, PollerState, MIN_WINDOW};

/// The configured `busy_poll_us`: the longest idle gap a worker spins through.
const MAX_WINDOW: Duration = Duration::from_micros(2000);

/// The one poller of this test binary (one worker, one test).
fn poller() -> PollerState {
    let all = pollers();
    assert_eq!(all.len(), 1, "one worker, one poller: {all:?}");
    all[0]
}

/// Polls the poller's state every millisecond until `f` holds (at most 10 s).
async fn wait_for(what: &str, f: impl Fn(&PollerState) -> bool) -> PollerState {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let p = poller();
            if f(&p) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}: {:?}", poller()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_worker_spins_under_traffic_sleeps_when_it_stops_and_idle_wakeups_shrink_its_window_to_the_floor(
) {
    let backend = Backend::start("pod").await;
    let config = common::config(&format!(
        "gateway:\n  busy_poll_us: {}\nroutes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        MAX_WINDOW.as_micros(),
        backend.node()
    ));
    let gw = weir::Gateway::start_with_workers(config, 1)
        .await
        .expect("gateway start");
    let proxy = gw.proxy_addr();

    // A burst of requests on one keep-alive connection: the worker spins
    // between them.
    let client = common::client();
    for i in 0..300 {
        let reply = common::send_with(
            &client,
            proxy,
            "GET",
            None,
            &format!("/r{i}"),
            common::empty(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        assert_eq!(reply.backend(), "pod");
    }

    // Traffic stopped: the spin runs out and the poller goes to sleep with
    // its worker (a poller that kept spinning would never be asleep).
    let quiet = wait_for("the poller sleeps after the burst", |p| p.asleep).await;
    assert!(
        quiet.spin_turns > 0,
        "the worker spun during the burst: {quiet:?}"
    );

    // Wake-ups that bring (almost) no work after idle gaps well beyond the
    // window halve it each time, down to its floor: a new connection that
    // sends nothing wakes the worker for the accept (a long gap: halved),
    // then once more at once for the new socket's registration (a short
    // gap: doubled, from zero to the floor). From 2 ms about ten such
    // wake-ups reach the floor; allow far more than that.
    let at_floor = |p: &PollerState| p.asleep && p.window <= MIN_WINDOW;
    let mut idle_conns = Vec::new();
    while !at_floor(&poller()) {
        assert!(
            idle_conns.len() < 100,
            "100 idle wake-ups did not shrink the spin window to its floor: {:?}",
            poller()
        );
        // The idle gap (the stimulus, not a wait for readiness): 10x the window.
        tokio::time::sleep(MAX_WINDOW * 10).await;
        let sleeps = poller().sleeps;
        idle_conns.push(tokio::net::TcpStream::connect(proxy).await.unwrap());
        // The worker woke up for the accept and went back to sleep.
        wait_for("the poller sleeps after the accept", |p| {
            p.asleep && p.sleeps > sleeps
        })
        .await;
    }
    eprintln!(
        "window at its floor after {} idle wake-ups: {:?}",
        idle_conns.len(),
        poller()
    );

    // And it wakes up for the next request.
    let reply = common::get(proxy, None, "/after-idle").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "pod");
}
