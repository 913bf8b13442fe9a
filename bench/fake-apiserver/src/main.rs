//! `fake-apiserver`: runs weir-testkit's fake Kubernetes API server as a
//! process for bench/run.sh.
//!
//! It loads `--services` Endpoints objects `NS/svc-<i>` with `--endpoints`
//! ready addresses each (all `127.0.0.1`, one subset per endpoint, port name
//! `http`, ports taken from `--backend-ports`, distinct within a service),
//! prints `URL http://127.0.0.1:<port>` and `LOADED ...`, then serves until
//! killed.
//!
//! Churn (optional): once the file `--churn-trigger` exists, it applies
//! `--churn-rate` Endpoints updates per second for `--churn-secs` seconds,
//! round-robin over the services; each update moves ONE endpoint of the
//! service to a port it does not use yet. With `--marker-ports A,B` it also
//! keeps a service `NS/marker` with a single endpoint and, during churn, moves
//! it between A and B every `--marker-every-ms`, writing
//! `<unix_time_ns> <new_port>` to `--events` at the moment of each change, so
//! a prober can measure the propagation delay through the gateway.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Endpoints;
use weir_testkit::kube_api::{endpoints, FakeApiOptions, FakeApiServer};

struct Args {
    port: u16,
    namespace: String,
    services: usize,
    endpoints: usize,
    backend_ports: Vec<u16>,
    marker_ports: Vec<u16>,
    churn_rate: u64,
    churn_secs: u64,
    churn_trigger: Option<PathBuf>,
    marker_every_ms: u64,
    events: Option<PathBuf>,
    history: usize,
}

fn parse_ports(s: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u16, u16) = (a.parse()?, b.parse()?);
            out.extend(a..=b);
        } else {
            out.push(part.parse()?);
        }
    }
    Ok(out)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 0,
        namespace: "bench".into(),
        services: 1,
        endpoints: 100,
        backend_ports: Vec::new(),
        marker_ports: Vec::new(),
        churn_rate: 0,
        churn_secs: 30,
        churn_trigger: None,
        marker_every_ms: 500,
        events: None,
        history: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => a.port = val()?.parse()?,
            "--namespace" => a.namespace = val()?,
            "--services" => a.services = val()?.parse()?,
            "--endpoints" => a.endpoints = val()?.parse()?,
            "--backend-ports" => a.backend_ports = parse_ports(&val()?)?,
            "--marker-ports" => a.marker_ports = parse_ports(&val()?)?,
            "--churn-rate" => a.churn_rate = val()?.parse()?,
            "--churn-secs" => a.churn_secs = val()?.parse()?,
            "--churn-trigger" => a.churn_trigger = Some(val()?.into()),
            "--marker-every-ms" => a.marker_every_ms = val()?.parse()?,
            "--events" => a.events = Some(val()?.into()),
            "--history" => a.history = val()?.parse()?,
            "-h" | "--help" => {
                println!("see the comment at the top of bench/fake-apiserver/src/main.rs");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if a.backend_ports.is_empty() {
        bail!("--backend-ports is required (e.g. 18100-18199)");
    }
    if a.endpoints > a.backend_ports.len() {
        bail!(
            "--endpoints {} > number of backend ports {}: endpoints of a service must differ",
            a.endpoints,
            a.backend_ports.len()
        );
    }
    Ok(a)
}

fn service_object(ns: &str, name: &str, ports: &[u16]) -> Endpoints {
    let mut b = endpoints(ns, name);
    for (i, p) in ports.iter().enumerate() {
        if i > 0 {
            b = b.subset();
        }
        b = b.ready(["127.0.0.1"]).port("http", i32::from(*p));
    }
    b.build()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let opts = FakeApiOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        history_size: args.history,
        // A real server sends bookmarks about once a minute.
        bookmark_interval: Duration::from_secs(60),
        ..FakeApiOptions::default()
    };
    let api = FakeApiServer::start_with(opts).await?;
    println!("URL {}", api.url());
    let started = Instant::now();
    let nports = args.backend_ports.len();
    let mut sets: Vec<Vec<u16>> = Vec::with_capacity(args.services);
    for i in 0..args.services {
        let ports: Vec<u16> = (0..args.endpoints)
            .map(|j| args.backend_ports[(i + j) % nports])
            .collect();
        api.apply_endpoints(service_object(&args.namespace, &format!("svc-{i}"), &ports));
        sets.push(ports);
    }
    if let Some(&p) = args.marker_ports.first() {
        api.apply_endpoints(service_object(&args.namespace, "marker", &[p]));
    }
    println!(
        "LOADED {} services x {} endpoints in {} ms (resourceVersion {})",
        args.services,
        args.endpoints,
        started.elapsed().as_millis(),
        api.resource_version()
    );
    std::io::stdout().flush()?;

    if args.churn_rate > 0 {
        if let Some(trigger) = &args.churn_trigger {
            while !trigger.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut events = match &args.events {
            Some(p) => Some(std::fs::File::create(p)?),
            None => None,
        };
        println!("CHURN start rate={}/s secs={}", args.churn_rate, args.churn_secs);
        std::io::stdout().flush()?;
        let tick = Duration::from_millis(10);
        let per_tick = args.churn_rate as f64 / 100.0;
        let mut owed = 0.0f64;
        let mut applied: u64 = 0;
        let mut next_service = 0usize;
        let mut next_port = 0usize;
        let mut marker_idx = 0usize;
        let start = Instant::now();
        let mut last_marker = Instant::now();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while start.elapsed() < Duration::from_secs(args.churn_secs) {
            interval.tick().await;
            // Pace by elapsed time so a slow tick does not lower the rate.
            let due = start.elapsed().as_secs_f64() * args.churn_rate as f64;
            owed = owed.max(due - applied as f64).min(per_tick * 50.0);
            while owed >= 1.0 && args.services > 0 {
                let i = next_service % args.services;
                next_service += 1;
                let set = &mut sets[i];
                let used: HashSet<u16> = set.iter().copied().collect();
                let slot = (applied as usize / args.services) % set.len().max(1);
                if set.len() < nports {
                    loop {
                        let cand = args.backend_ports[next_port % nports];
                        next_port += 1;
                        if !used.contains(&cand) {
                            set[slot] = cand;
                            break;
                        }
                    }
                }
                api.apply_endpoints(service_object(&args.namespace, &format!("svc-{i}"), set));
                applied += 1;
                owed -= 1.0;
            }
            if args.marker_ports.len() >= 2
                && last_marker.elapsed() >= Duration::from_millis(args.marker_every_ms)
            {
                last_marker = Instant::now();
                marker_idx = (marker_idx + 1) % args.marker_ports.len();
                let p = args.marker_ports[marker_idx];
                api.apply_endpoints(service_object(&args.namespace, "marker", &[p]));
                if let Some(f) = events.as_mut() {
                    writeln!(f, "{} {}", now_ns(), p)?;
                    f.flush()?;
                }
            }
        }
        println!(
            "CHURN done applied={} in {:.2}s",
            applied,
            start.elapsed().as_secs_f64()
        );
        std::io::stdout().flush()?;
    }
    // Serve until killed.
    std::future::pending::<()>().await;
    Ok(())
}
