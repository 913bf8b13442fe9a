//! `gateway.busy_poll_us` through the real binary (busy polling runs on the
//! data-plane workers only): requests are served while a worker spins, and a
//! gateway whose traffic stopped stops spinning.

mod common;

use std::time::Duration;

use common::{Backend, WeirProcess};
use http::StatusCode;

/// utime + stime of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after_name = stat.rsplit_once(')').expect("stat has a command name").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_gateway_serves_and_goes_quiet_when_traffic_stops() {
    let backend = Backend::start("pod").await;
    let weir = WeirProcess::start(&format!(
        "gateway:\n  workers: 1\n  busy_poll_us: 2000\n  listeners: [{{address: \"127.0.0.1:0\"}}]\n  control: {{address: \"127.0.0.1:0\"}}\n  access_log: {{enabled: false}}\nroutes:\n  - {{id: r, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        backend.node()
    ));

    // A burst of requests on one keep-alive connection: the worker spins
    // between them.
    let client = common::client();
    for i in 0..300 {
        let reply = common::send_with(
            &client,
            weir.proxy,
            "GET",
            None,
            &format!("/r{i}"),
            common::empty(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        assert_eq!(reply.backend(), "pod");
    }

    // Traffic stopped: within a couple of milliseconds the worker must go
    // back to sleeping in the kernel. Spinning through this second would cost
    // about 100 ticks; an idle process costs about none.
    let pid = weir.child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent <= 20,
        "an idle gateway kept spinning: {spent} ticks of CPU in 1 s"
    );

    // And it wakes up for the next request.
    let reply = common::get(weir.proxy, None, "/after-idle").await;
    assert_eq!(reply.status, StatusCode::OK);
}
