//! `opentelemetry` over real sockets, on the three HTTP/1.1 transports and
//! HTTP/2: the span a real OTLP/HTTP receiver (a hyper server in the test,
//! decoding the protobuf with the OTLP types) gets, its ids, name, kind,
//! attributes and status; the `traceparent` the node gets; the samplers
//! (`always_off` still propagates, `trace_id_ratio` exports its share); the
//! access log's trace id (text and JSON); a collector that is down costs
//! the requests nothing and its failed exports are counted on `/metrics`.
//!
//! Spans are exported in the background (`batch_timeout: 1`): the tests
//! poll the receiver against a deadline, never sleep for a fixed time.

mod common;
mod plugin_kit;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::get;
use common::wait_until_for;
use common::wire::{echo_target, Answer, RawBackend};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use plugin_kit::*;
use prost::Message;
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// What the receiver got: each span with its resource's attributes, and
/// the head of each export request.
#[derive(Default)]
struct Received {
    spans: Vec<(Span, Vec<KeyValue>)>,
    heads: Vec<http::request::Parts>,
}

/// An OTLP/HTTP receiver on 127.0.0.1:0: decodes each `POST /v1/traces`
/// as an `ExportTraceServiceRequest` (answering 400 when it does not
/// decode) and records its spans.
struct Receiver {
    addr: String,
    got: Arc<Mutex<Received>>,
    _task: tokio::task::JoinHandle<()>,
}

/// The OTLP trace service's gRPC method.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_with(false).await
    }

    /// An OTLP/gRPC receiver (h2c): one length-prefixed message per call,
    /// answered with `grpc-status: 0` in the trailers.
    async fn start_grpc() -> Receiver {
        Receiver::start_with(true).await
    }

    async fn start_with(grpc: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address").to_string();
        let got = Arc::new(Mutex::new(Received::default()));
        let shared = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let got = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let got = got.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let bytes = body.collect().await.map(|b| b.to_bytes());
                                let decoded = bytes.ok().and_then(|b| {
                                    // gRPC: a 5-byte prefix (not compressed,
                                    // then the length) before the message.
                                    let message = if grpc { b.get(5..)? } else { &b[..] };
                                    ExportTraceServiceRequest::decode(message).ok()
                                });
                                let path = if grpc { GRPC_EXPORT } else { "/v1/traces" };
                                let status = match decoded {
                                    Some(export) if parts.uri.path() == path => {
                                        let mut g = got.lock().expect("receiver lock");
                                        for rs in export.resource_spans {
                                            let resource = rs
                                                .resource
                                                .map(|r| r.attributes)
                                                .unwrap_or_default();
                                            for ss in rs.scope_spans {
                                                for s in ss.spans {
                                                    g.spans.push((s, resource.clone()));
                                                }
                                            }
                                        }
                                        g.heads.push(parts);
                                        200
                                    }
                                    _ => 400,
                                };
                                let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
                                let mut answer = http::Response::builder().status(status);
                                if grpc {
                                    // An empty ExportTraceServiceResponse, then
                                    // the status in the trailers.
                                    answer = answer.header("content-type", "application/grpc");
                                    frames.push(Ok(Frame::data(Bytes::from_static(&[0; 5]))));
                                    let mut trailers = http::HeaderMap::new();
                                    let code = if status == 200 { "0" } else { "3" };
                                    trailers.insert(
                                        "grpc-status",
                                        http::HeaderValue::from_static(code),
                                    );
                                    frames.push(Ok(Frame::trailers(trailers)));
                                }
                                Ok::<_, Infallible>(
                                    answer
                                        .body(StreamBody::new(futures::stream::iter(frames)))
                                        .expect("a response"),
                                )
                            }
                        },
                    );
                    if grpc {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                });
            }
        });
        Receiver {
            addr,
            got,
            _task: task,
        }
    }

    fn spans(&self) -> Vec<Span> {
        let g = self.got.lock().expect("receiver lock");
        g.spans.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Waits (within 10 s) until `n` spans arrived; returns them.
    async fn wait_spans(&self, n: usize, what: &str) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the receiver got {} of {n} spans",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The `plugin_metadata` entry pointing at `collector`.
fn metadata(collector: &str) -> Value {
    json!([{
        "id": "opentelemetry",
        "collector": {"address": collector, "request_headers": {"x-otlp-token": "t0ken"}},
        "batch_span_processor": {"batch_timeout": 1},
    }])
}

fn config(collector: &str, routes: Value) -> Value {
    json!({"routes": routes, "plugin_metadata": metadata(collector)})
}

fn route(id: &str, uri: &str, node: &str, sampler: Value) -> Value {
    json!({"id": id, "name": format!("{id}-name"), "uri": uri, "upstream": upstream(node),
           "plugins": {"opentelemetry": {"sampler": sampler}}})
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// `00-<trace>-<span>-<flags>` split in three.
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    assert_eq!(parts[0], "00", "traceparent {value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// With `always_on`, a request carrying a sampled `traceparent` yields one
/// server span in the client's trace, child of the client's span, named
/// after the route's path, with APISIX's attributes; the node gets a
/// `traceparent` naming that span.
async fn always_on_exports_the_server_span_and_propagates_it(t: T) {
    let receiver = Receiver::start().await;
    let node = echo_target().await;
    let gw = start(
        t,
        config(
            &receiver.addr,
            json!([route(
                "otel",
                "/api/*",
                &node.node(),
                json!({"name": "always_on"})
            )]),
        ),
    )
    .await;
    let r = gw
        .send(
            &Req::get("/api/orders?id=7")
                .header("traceparent", &format!("00-{TRACE}-{PARENT}-01"))
                .header("user-agent", "otel-test/1"),
        )
        .await;
    assert_eq!(r.status, 200, "{t:?}");
    let spans = receiver.wait_spans(1, &format!("{t:?}")).await;
    assert_eq!(spans.len(), 1, "{t:?}: {spans:#?}");
    let span = &spans[0];
    assert_eq!(hex(&span.trace_id), TRACE, "{t:?}");
    assert_eq!(hex(&span.parent_span_id), PARENT, "{t:?}");
    assert_eq!(span.name, "GET /api/*", "{t:?}");
    assert_eq!(span.kind, 2, "{t:?}: SPAN_KIND_SERVER");
    assert!(
        span.start_time_unix_nano > 0 && span.end_time_unix_nano >= span.start_time_unix_nano,
        "{t:?}: {span:?}"
    );
    assert!(
        span.status.as_ref().is_none_or(|s| s.code != 2),
        "{t:?}: a 200 is no error: {:?}",
        span.status
    );
    let a = &span.attributes;
    for (key, value) in [
        ("apisix.route_id", "otel"),
        ("apisix.route_name", "otel-name"),
        ("http.route", "/api/*"),
        ("http.method", "GET"),
        ("http.request.method", "GET"),
        ("http.scheme", t.scheme()),
        ("url.scheme", t.scheme()),
        ("http.target", "/api/orders?id=7"),
        ("url.path", "/api/orders"),
        ("http.user_agent", "otel-test/1"),
        ("user_agent.original", "otel-test/1"),
        ("http.status_code", "200"),
        ("http.response.status_code", "200"),
        ("apisix.response_source", "upstream"),
    ] {
        assert_eq!(
            attr(a, key).as_deref(),
            Some(value),
            "{t:?}: {key} in {a:?}"
        );
    }
    assert!(attr(a, "net.host.name").is_some(), "{t:?}: {a:?}");
    // The node's traceparent: the same trace, the exported span as parent,
    // sampled.
    let seen = node.only_request();
    let sent = seen
        .head
        .get("traceparent")
        .expect("a traceparent upstream");
    let (trace, parent, flags) = traceparent(sent);
    assert_eq!(trace, TRACE, "{t:?}");
    assert_eq!(parent, hex(&span.span_id), "{t:?}");
    assert_eq!(flags, "01", "{t:?}");
    // The export itself: OTLP/HTTP protobuf with the configured headers,
    // the resource naming the service.
    let g = receiver.got.lock().expect("receiver lock");
    let head = &g.heads[0];
    assert_eq!(head.method, http::Method::POST);
    assert_eq!(
        head.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/x-protobuf"[..])
    );
    assert_eq!(
        head.headers.get("x-otlp-token").map(|v| v.as_bytes()),
        Some(&b"t0ken"[..])
    );
    assert_eq!(attr(&g.spans[0].1, "service.name").as_deref(), Some("weir"));
    assert!(attr(&g.spans[0].1, "hostname").is_some());
}

/// A 5xx answer, the node's (500) or weir's (502: the node refused), gives
/// the span status ERROR.
async fn a_5xx_answer_gives_the_span_an_error_status(t: T) {
    let receiver = Receiver::start().await;
    let failing = RawBackend::start(|_| {
        Answer::Send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec())
    })
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let on = json!({"name": "always_on"});
    let gw = start(
        t,
        config(
            &receiver.addr,
            json!([
                route("five-hundred", "/500", &failing.node(), on.clone()),
                route("refused", "/502", &closed, on),
            ]),
        ),
    )
    .await;
    assert_eq!(gw.send(&Req::get("/500")).await.status, 500, "{t:?}");
    assert_eq!(gw.send(&Req::get("/502")).await.status, 502, "{t:?}");
    let spans = receiver.wait_spans(2, &format!("{t:?}")).await;
    for (route, code) in [("five-hundred", "500"), ("refused", "502")] {
        let span = spans
            .iter()
            .find(|s| attr(&s.attributes, "apisix.route_id").as_deref() == Some(route))
            .unwrap_or_else(|| panic!("{t:?}: no span for {route}: {spans:#?}"));
        assert_eq!(
            attr(&span.attributes, "http.status_code").as_deref(),
            Some(code),
            "{t:?}"
        );
        let status = span.status.as_ref().expect("a status");
        assert_eq!(status.code, 2, "{t:?}: STATUS_CODE_ERROR for {route}");
    }
}

/// `always_off` (the default) exports nothing, yet the node still gets a
/// `traceparent` in the client's trace, flagged unsampled. (Proven against
/// a sampled route on the same gateway, whose span arrives alone.)
async fn always_off_exports_nothing_but_still_propagates(t: T) {
    let receiver = Receiver::start().await;
    let off_node = echo_target().await;
    let on_node = echo_target().await;
    let gw = start(
        t,
        config(
            &receiver.addr,
            json!([
                route("off", "/off", &off_node.node(), json!({})),
                route("on", "/on", &on_node.node(), json!({"name": "always_on"})),
            ]),
        ),
    )
    .await;
    let mut c = gw.client();
    let with_parent = Req::get("/off").header("traceparent", &format!("00-{TRACE}-{PARENT}-01"));
    assert_eq!(c.send(&with_parent).await.status, 200, "{t:?}");
    assert_eq!(c.send(&Req::get("/off")).await.status, 200, "{t:?}");
    assert_eq!(c.send(&Req::get("/on")).await.status, 200, "{t:?}");
    let spans = receiver.wait_spans(1, &format!("{t:?}")).await;
    // The sampled request came last: had the unsampled ones been queued,
    // they would have been exported with it or before it.
    assert_eq!(spans.len(), 1, "{t:?}: {spans:#?}");
    assert_eq!(
        attr(&spans[0].attributes, "apisix.route_id").as_deref(),
        Some("on")
    );
    let seen = off_node.seen();
    let (trace, parent, flags) = traceparent(seen[0].head.get("traceparent").expect("propagated"));
    assert_eq!(
        (trace.as_str(), flags.as_str()),
        (TRACE, "00"),
        "{t:?}: the client's trace, unsampled"
    );
    assert_ne!(parent, PARENT, "{t:?}: a span of weir's own");
    let (_, _, flags) = traceparent(seen[1].head.get("traceparent").expect("a new trace"));
    assert_eq!(flags, "00", "{t:?}");
}

/// `trace_id_ratio` with fraction 0.5 over 200 requests: about half are
/// sampled (the node sees the flag) and exactly those are exported.
async fn trace_id_ratio_exports_its_share(t: T) {
    let receiver = Receiver::start().await;
    let node = echo_target().await;
    let gw = start(
        t,
        config(
            &receiver.addr,
            json!([
                route(
                    "ratio",
                    "/r",
                    &node.node(),
                    json!({"name": "trace_id_ratio", "options": {"fraction": 0.5}})
                ),
                route("marker", "/m", &node.node(), json!({"name": "always_on"})),
            ]),
        ),
    )
    .await;
    let mut c = gw.client();
    for _ in 0..200 {
        assert_eq!(c.send(&Req::get("/r")).await.status, 200, "{t:?}");
    }
    assert_eq!(c.send(&Req::get("/m")).await.status, 200, "{t:?}");
    let sampled: Vec<String> = node
        .seen()
        .iter()
        .filter(|s| s.target == "/r")
        .filter_map(|s| {
            let (trace, _, flags) = traceparent(s.head.get("traceparent")?);
            (flags == "01").then_some(trace)
        })
        .collect();
    // 200 x 0.5 = 100 expected, standard deviation about 7: 60..=140 is
    // beyond five deviations.
    assert!(
        (60..=140).contains(&sampled.len()),
        "{t:?}: {} of 200 sampled",
        sampled.len()
    );
    let spans = receiver
        .wait_spans(sampled.len() + 1, &format!("{t:?}"))
        .await;
    let mut exported: Vec<String> = spans
        .iter()
        .filter(|s| attr(&s.attributes, "apisix.route_id").as_deref() == Some("ratio"))
        .map(|s| hex(&s.trace_id))
        .collect();
    let mut sampled = sampled;
    exported.sort();
    sampled.sort();
    assert_eq!(
        exported, sampled,
        "{t:?}: exactly the sampled requests are exported"
    );
}

/// The access log carries the trace id (text: ` trace_id=<id>`; JSON:
/// `"trace_id"`): the client's trace, or the one weir started.
async fn the_access_log_carries_the_trace_id(t: T) {
    let receiver = Receiver::start().await;
    for format in ["text", "json"] {
        let node = echo_target().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("access.log");
        let mut conf = config(
            &receiver.addr,
            json!([route("logged", "/*", &node.node(), json!({}))]),
        );
        merge(
            &mut conf,
            json!({"gateway": {"access_log": {"path": path.to_str().expect("UTF-8 path"), "format": format}}}),
        );
        let gw = start(t, conf).await;
        let mut c = gw.client();
        let first = Req::get("/a").header("traceparent", &format!("00-{TRACE}-{PARENT}-01"));
        assert_eq!(c.send(&first).await.status, 200, "{t:?}");
        assert_eq!(c.send(&Req::get("/b")).await.status, 200, "{t:?}");
        wait_until_for(10, "two access log lines", || {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
                >= 2
        })
        .await;
        let text = std::fs::read_to_string(&path).expect("read the access log");
        let lines: Vec<&str> = text.lines().collect();
        let seen = node.seen();
        let (made, _, _) = traceparent(seen[1].head.get("traceparent").expect("propagated"));
        if format == "text" {
            assert!(
                lines[0].ends_with(&format!(" trace_id={TRACE}")),
                "{t:?}: {}",
                lines[0]
            );
            assert!(
                lines[1].ends_with(&format!(" trace_id={made}")),
                "{t:?}: {}",
                lines[1]
            );
        } else {
            let v: Vec<Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            assert_eq!(v[0]["trace_id"], TRACE, "{t:?}: {}", v[0]);
            assert_eq!(v[1]["trace_id"], made.as_str(), "{t:?}: {}", v[1]);
        }
    }
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Sends `n` requests one after another, all must be 200; returns the
/// slowest.
async fn sequential(gw: &Gw, n: usize, what: &str) -> Duration {
    let mut c = gw.client();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let r = c.send(&Req::get("/s")).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "{what}: request {i}");
    }
    slowest
}

/// A collector that is down (a closed port): every request still answers
/// 200 without added latency; the spans are lost with failed exports,
/// which `/metrics` counts.
async fn a_collector_that_is_down_costs_the_requests_nothing(t: T) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let node = echo_target().await;
    let plain = start(
        t,
        json!({"routes": [{"id": "s", "uri": "/s", "upstream": upstream(&node.node())}]}),
    )
    .await;
    let baseline = sequential(&plain, 30, &format!("{t:?} without tracing")).await;
    let gw = start(
        t,
        config(
            &closed,
            json!([route("s", "/s", &node.node(), json!({"name": "always_on"}))]),
        ),
    )
    .await;
    let control = gw.control_addr();
    let before = get(control, None, "/metrics").await.body;
    let failures = counter(&before, "weir_opentelemetry_export_failures_total");
    let lost = counter(
        &before,
        "weir_opentelemetry_spans_dropped_total{reason=\"export_failed\"}",
    );
    let slowest = sequential(&gw, 30, &format!("{t:?} collector down")).await;
    assert!(
        slowest < baseline + Duration::from_millis(500),
        "{t:?}: with the collector down the slowest request took {slowest:?} (without tracing: {baseline:?})"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = get(control, None, "/metrics").await.body;
        let (f, l) = (
            counter(&now, "weir_opentelemetry_export_failures_total"),
            counter(
                &now,
                "weir_opentelemetry_spans_dropped_total{reason=\"export_failed\"}",
            ),
        );
        if f > failures && l >= lost + 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{t:?}: failures {failures} -> {f}, spans lost {lost} -> {l} (30 expected)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_every_transport!(
    always_on_exports_the_server_span_and_propagates_it,
    a_5xx_answer_gives_the_span_an_error_status,
    always_off_exports_nothing_but_still_propagates,
    trace_id_ratio_exports_its_share,
    the_access_log_carries_the_trace_id,
    a_collector_that_is_down_costs_the_requests_nothing,
);

/// With a `grpc://` collector (weir's option; APISIX only speaks OTLP/HTTP),
/// spans are exported over OTLP/gRPC on HTTP/2: the receiver decodes the
/// length-prefixed message and answers `grpc-status: 0` in the trailers.
#[tokio::test]
async fn spans_are_exported_over_grpc_to_a_grpc_collector() {
    let rx = Receiver::start_grpc().await;
    let b = echo_target().await;
    let gw = start(
        T::Plain,
        config(
            &format!("grpc://{}", rx.addr),
            json!([route(
                "r",
                "/api/*",
                &b.node(),
                json!({"name": "always_on"})
            )]),
        ),
    )
    .await;
    let r = gw
        .send(&Req::get("/api/x").header("traceparent", &format!("00-{TRACE}-{PARENT}-01")))
        .await;
    assert_eq!(r.status, 200);
    let spans = rx.wait_spans(1, "grpc").await;
    assert_eq!(spans.len(), 1);
    assert_eq!(hex(&spans[0].trace_id), TRACE);
    assert_eq!(hex(&spans[0].parent_span_id), PARENT);
    assert_eq!(spans[0].name, "GET /api/*");
    let g = rx.got.lock().expect("receiver lock");
    let head = &g.heads[0];
    assert_eq!(head.version, http::Version::HTTP_2);
    assert_eq!(
        head.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc"[..])
    );
    assert_eq!(
        head.headers.get("x-otlp-token").map(|v| v.as_bytes()),
        Some(&b"t0ken"[..])
    );
}

/// Configuration mistakes are refused at load, naming the field: a gRPC
/// collector over TLS, an unknown sampler, a fraction beyond 1.
#[tokio::test]
async fn bad_configurations_are_refused_naming_the_field() {
    for (conf, expected) in [
        (
            json!({"routes": [route("r", "/", "127.0.0.1:1", json!({"name": "sometimes"}))]}),
            "sampler.name",
        ),
        (
            json!({"routes": [route("r", "/", "127.0.0.1:1", json!({"name": "trace_id_ratio", "options": {"fraction": 2}}))]}),
            "sampler.options.fraction",
        ),
        (
            json!({"routes": [route("r", "/", "127.0.0.1:1", json!({}))],
                   "plugin_metadata": [{"id": "opentelemetry", "collector": {"address": "grpcs://127.0.0.1:4317"}}]}),
            "plugin_metadata.opentelemetry.collector.address",
        ),
    ] {
        let mut doc = json!({"gateway": {"listeners": [{"address": "127.0.0.1:0"}]}});
        merge(&mut doc, conf.clone());
        let e = match weir::Gateway::start(common::config(&doc.to_string())).await {
            Ok(_) => panic!("accepted {conf}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains(expected), "{conf}: {e}");
    }
}
