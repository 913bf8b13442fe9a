//! `GET /metrics` on the control API: the Prometheus text format (0.0.4).
//!
//! Request counters and latency come from the data plane
//! ([`weir_proxy::metrics`]); this module adds what is read at scrape time:
//! upstream nodes (health, in-flight requests, attempts), Kubernetes
//! discovery sync state per cluster, configuration reloads, and the process
//! itself; and the `prometheus` plugin's APISIX series
//! ([`weir_plugins::prometheus`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;
use weir_proxy::metrics::{escape_label, ATTEMPT_RESULTS};

use crate::gateway::GatewayCore;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric weir exposes, as one text document.
pub fn render(core: &GatewayCore) -> String {
    let mut out = String::with_capacity(4096);
    weir_proxy::metrics::render(&mut out);
    prometheus_plugin(core, &mut out);
    upstreams(core, &mut out);
    discovery(core, &mut out);
    reloads(core, &mut out);
    config_source(core, &mut out);
    process(&mut out);
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The `prometheus` plugin's series, once those of routes no longer
/// configured are forgotten.
fn prometheus_plugin(core: &GatewayCore, out: &mut String) {
    let snapshot = core.proxy.snapshot.load();
    // Route ids as the engine gives them: `id`, else the index.
    let ids: HashSet<String> = snapshot
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.id.as_ref()
                .map_or_else(|| i.to_string(), |id| id.0.clone())
        })
        .collect();
    weir_plugins::prometheus::forget_routes(&|id| ids.contains(id));
    weir_plugins::prometheus::render(out);
}

/// Nodes per upstream by health state, requests in flight per node, and
/// attempts per node address.
fn upstreams(core: &GatewayCore, out: &mut String) {
    let snapshot = core.proxy.snapshot.load();
    let mut ids: Vec<&String> = snapshot.upstreams.keys().collect();
    ids.sort();
    let mut states = String::new();
    let mut in_flight = String::new();
    for id in ids {
        let Some(upstream) = snapshot.upstreams.get(id) else {
            continue;
        };
        let set = upstream.node_set();
        let healthy = set.nodes.iter().filter(|n| n.health.is_healthy()).count();
        let id = escape_label(id);
        let _ = writeln!(
            states,
            "weir_upstream_nodes{{upstream=\"{id}\",state=\"healthy\"}} {healthy}"
        );
        let _ = writeln!(
            states,
            "weir_upstream_nodes{{upstream=\"{id}\",state=\"unhealthy\"}} {}",
            set.nodes.len() - healthy
        );
        for node in &set.nodes {
            let _ = writeln!(
                in_flight,
                "weir_upstream_node_requests_in_flight{{upstream=\"{id}\",node=\"{}\"}} {}",
                escape_label(&node.key),
                node.load.in_flight()
            );
        }
    }
    header(
        out,
        "weir_upstream_nodes",
        "gauge",
        "Nodes an upstream routes to, by health state (nodes without health checks count as healthy).",
    );
    out.push_str(&states);
    header(
        out,
        "weir_upstream_node_requests_in_flight",
        "gauge",
        "Requests a node is serving now.",
    );
    out.push_str(&in_flight);

    // Node state is shared by every upstream routing to the node: one
    // series per node address, summed over its states (plain and TLS).
    let mut attempts: BTreeMap<&str, [u64; 7]> = BTreeMap::new();
    let mut seen = HashSet::new();
    let sets: Vec<_> = snapshot.upstreams.values().map(|u| u.node_set()).collect();
    for set in &sets {
        for node in &set.nodes {
            if !seen.insert(Arc::as_ptr(node)) {
                continue;
            }
            let total = attempts.entry(&node.key).or_default();
            for (t, n) in total.iter_mut().zip(node.attempts.totals()) {
                *t += n;
            }
        }
    }
    header(
        out,
        "weir_upstream_node_attempts_total",
        "counter",
        "Attempts on a node (retries included), by result: the answer's status class, or error / timeout when no answer came.",
    );
    for (node, totals) in attempts {
        let node = escape_label(node);
        for (result, n) in ATTEMPT_RESULTS.iter().zip(totals) {
            let _ = writeln!(
                out,
                "weir_upstream_node_attempts_total{{node=\"{node}\",result=\"{result}\"}} {n}"
            );
        }
    }
}

/// A per-cluster series read from the dump's `sync` entry.
struct ClusterSeries {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Value) -> String,
}

fn flag(v: &Value, key: &str) -> String {
    u8::from(v[key].as_bool().unwrap_or(false)).to_string()
}

fn number(v: &Value, key: &str) -> String {
    v[key].as_f64().unwrap_or(0.0).to_string()
}

const CLUSTER_SERIES: [ClusterSeries; 8] = [
    ClusterSeries {
        name: "weir_discovery_ready",
        kind: "gauge",
        help: "1 once the cluster's initial list has synced (readiness waits for it).",
        value: |v| flag(v, "ready"),
    },
    ClusterSeries {
        name: "weir_discovery_stale",
        kind: "gauge",
        help: "1 while the cluster's nodes come from the warm-start state (gateway.state_dir) because its API server has not answered a list yet.",
        value: |v| flag(v, "stale"),
    },
    ClusterSeries {
        name: "weir_discovery_connected",
        kind: "gauge",
        help: "1 unless the cluster's watch last produced an error.",
        value: |v| flag(v, "connected"),
    },
    ClusterSeries {
        name: "weir_discovery_lists_total",
        kind: "counter",
        help: "Full lists of the cluster since start (1 = the initial one; more after 410 Gone or reconnects).",
        value: |v| number(v, "lists"),
    },
    ClusterSeries {
        name: "weir_discovery_errors_total",
        kind: "counter",
        help: "Watch or list errors from the cluster since start.",
        value: |v| number(v, "errors"),
    },
    ClusterSeries {
        name: "weir_discovery_last_event_timestamp_seconds",
        kind: "gauge",
        help: "When the cluster last sent an event, Unix seconds (0: none yet).",
        value: |v| number(v, "last_event_unix"),
    },
    ClusterSeries {
        name: "weir_discovery_last_error_timestamp_seconds",
        kind: "gauge",
        help: "When the cluster's last error happened, Unix seconds (0: none).",
        value: |v| number(v, "last_error_unix"),
    },
    ClusterSeries {
        name: "weir_discovery_recovered_timestamp_seconds",
        kind: "gauge",
        help: "When the cluster's API server last answered again after errors, Unix seconds (0: never).",
        value: |v| number(v, "recovered_at_unix"),
    },
];

/// Kubernetes discovery, per cluster: synced, connected, lists, errors,
/// last event, services held.
fn discovery(core: &GatewayCore, out: &mut String) {
    let Some(dump) = core.discovery_dump() else {
        return;
    };
    let empty = Vec::new();
    let sync = dump["sync"].as_array().unwrap_or(&empty);
    let endpoints = dump["endpoints"].as_array().unwrap_or(&empty);
    let cluster = |v: &Value| escape_label(v["id"].as_str().unwrap_or(""));
    for gauge in CLUSTER_SERIES {
        header(out, gauge.name, gauge.kind, gauge.help);
        for v in sync {
            let _ = writeln!(
                out,
                "{}{{cluster=\"{}\"}} {}",
                gauge.name,
                cluster(v),
                (gauge.value)(v)
            );
        }
    }
    header(
        out,
        "weir_discovery_services",
        "gauge",
        "Services (with their ports) weir holds endpoints for, per cluster.",
    );
    for v in endpoints {
        let count = v["endpoints"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "weir_discovery_services{{cluster=\"{}\"}} {count}",
            cluster(v)
        );
    }
}

/// Configuration reloads: applied and rejected, and whether the last one
/// was applied.
/// The etcd source's connection and the revision applied last.
fn config_source(core: &GatewayCore, out: &mut String) {
    let Some(src) = core.hub.etcd() else {
        return;
    };
    let s = src.status();
    header(
        out,
        "weir_config_source_up",
        "gauge",
        "1 while a watch on the configuration source is established, else 0 (the last configuration keeps serving).",
    );
    let _ = writeln!(
        out,
        "weir_config_source_up{{source=\"etcd\"}} {}",
        u8::from(s.connected)
    );
    header(
        out,
        "weir_config_source_revision",
        "gauge",
        "The configuration source's revision applied last.",
    );
    let _ = writeln!(
        out,
        "weir_config_source_revision{{source=\"etcd\"}} {}",
        s.revision
    );
    header(
        out,
        "weir_config_source_stale",
        "gauge",
        "1 while what is served is kept over what the source holds (an etcd that came back empty), else 0.",
    );
    let _ = writeln!(
        out,
        "weir_config_source_stale{{source=\"etcd\"}} {}",
        u8::from(s.stale.is_some())
    );
}

fn reloads(core: &GatewayCore, out: &mut String) {
    let status = core.reload_status().borrow().clone();
    header(
        out,
        "weir_config_reloads_total",
        "counter",
        "Configuration reloads attempted, by result.",
    );
    let _ = writeln!(
        out,
        "weir_config_reloads_total{{result=\"applied\"}} {}",
        status.applied
    );
    let _ = writeln!(
        out,
        "weir_config_reloads_total{{result=\"rejected\"}} {}",
        status.attempts.saturating_sub(status.applied)
    );
    header(
        out,
        "weir_config_last_reload_successful",
        "gauge",
        "0 when the last reload was rejected (the previous configuration keeps serving), else 1.",
    );
    let _ = writeln!(
        out,
        "weir_config_last_reload_successful {}",
        u8::from(status.last_error.is_none())
    );
}

/// Clock ticks per second of `/proc` times: `USER_HZ`, fixed at 100 by the
/// Linux ABI on every architecture weir builds for.
const USER_HZ: f64 = 100.0;

/// The standard `process_*` metrics, from `/proc/self` (Linux; absent
/// elsewhere).
fn process(out: &mut String) {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime is field 14, stime 15, starttime 22 (man 5 proc).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            header(
                out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds.",
            );
            let _ = writeln!(
                out,
                "process_cpu_seconds_total {}",
                (utime + stime) / USER_HZ
            );
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            header(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
            );
            let _ = writeln!(out, "process_start_time_seconds {}", boot + start / USER_HZ);
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let value = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        if let Some(kib) = value("VmRSS:") {
            header(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {}", kib * 1024);
        }
        if let Some(threads) = value("Threads:") {
            header(out, "process_threads", "gauge", "Threads of the process.");
            let _ = writeln!(out, "process_threads {threads}");
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        header(out, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "process_open_fds {}", dir.count());
    }
}

/// The system's boot time, Unix seconds (`btime` in `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
