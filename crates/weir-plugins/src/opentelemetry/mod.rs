//! `opentelemetry`: a server span per request, exported to an OpenTelemetry
//! collector, as APISIX's `opentelemetry` (priority 12009, rewrite and log
//! phases).
//!
//! The route's configuration holds the `sampler` (`always_off` by default,
//! `always_on`, `trace_id_ratio` with `options.fraction`, `parent_base` with
//! `options.root`) and `additional_attributes` /
//! `additional_header_prefix_attributes`; the `plugin_metadata` with id
//! `opentelemetry` holds what is shared: `trace_id_source`, `resource`,
//! `collector` and `batch_span_processor`.
//!
//! Rewrite phase: the W3C `traceparent` the client sent (if valid) is the
//! span's parent; the span gets the parent's trace id or a new one (the
//! client's `X-Request-Id` with `trace_id_source: x-request-id`, when it is
//! 32 hex digits) and a new span id; the sampler decides; the upstream gets
//! `traceparent` naming the new span (sampled flag 1 or 0) and the access
//! log the trace id. Log phase: a sampled span is finished (name
//! `METHOD <route path>`, APISIX's attributes, status ERROR from 500 on)
//! and queued for export.
//!
//! Export: OTLP over HTTP, binary protobuf, `POST /v1/traces` to the
//! collector, in batches, by one task per export configuration (see
//! [`Exporter`]). The request path never waits for it: a span that finds
//! the queue full is dropped and counted; a failed export (collector down,
//! slow beyond `request_timeout`, non-2xx) loses its batch, counted and
//! warned about at most once a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
mod export;
#[cfg(test)]
mod tests;
mod trace_context;

use export::Exporter;
use trace_context::*;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LogCtx, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "opentelemetry",
    priority: 12009,
    phases: Phases::of(&[Phase::Rewrite, Phase::Log]),
    needs_body: false,
    build,
    consumer_check: None,
};

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);
static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Counters since start, over every collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the export queue was full.
    pub dropped_queue_full: u64,
    /// Spans lost with an export that failed.
    pub dropped_export_failed: u64,
    /// Export requests that failed (refused, timed out, non-2xx).
    pub export_failures: u64,
}

/// The exporters' counters (for `/metrics`).
pub fn stats() -> Stats {
    Stats {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
        export_failures: EXPORT_FAILURES.load(Ordering::Relaxed),
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    sampler: SamplerConf,
    #[serde(default)]
    additional_attributes: Vec<String>,
    #[serde(default)]
    additional_header_prefix_attributes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SamplerConf {
    #[serde(default)]
    name: SamplerName,
    #[serde(default)]
    options: SamplerOptions,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum SamplerName {
    AlwaysOn,
    #[default]
    AlwaysOff,
    TraceIdRatio,
    ParentBase,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SamplerOptions {
    #[serde(default)]
    fraction: f64,
    root: Option<RootConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RootConf {
    #[serde(default)]
    name: SamplerName,
    #[serde(default)]
    options: RootOptions,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RootOptions {
    #[serde(default)]
    fraction: f64,
}

/// `plugin_metadata` with id `opentelemetry`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    trace_id_source: TraceIdSource,
    resource: Option<Map<String, Value>>,
    #[serde(default)]
    collector: CollectorConf,
    #[serde(default)]
    batch_span_processor: BatchConf,
    /// nginx variables: weir has none; accepted for compatibility (the
    /// trace id is in the access log instead).
    #[serde(default)]
    #[allow(dead_code)]
    set_ngx_var: bool,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
enum TraceIdSource {
    #[default]
    #[serde(rename = "random")]
    Random,
    #[serde(rename = "x-request-id")]
    XRequestId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorConf {
    #[serde(default = "default_address")]
    address: String,
    #[serde(default = "default_request_timeout")]
    request_timeout: u64,
    request_headers: Option<Map<String, Value>>,
}

impl Default for CollectorConf {
    fn default() -> CollectorConf {
        CollectorConf {
            address: default_address(),
            request_timeout: default_request_timeout(),
            request_headers: None,
        }
    }
}

fn default_address() -> String {
    "127.0.0.1:4318".into()
}

fn default_request_timeout() -> u64 {
    3
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BatchConf {
    drop_on_queue_full: Option<bool>,
    max_queue_size: Option<u64>,
    batch_timeout: Option<f64>,
    inactive_timeout: Option<f64>,
    max_export_batch_size: Option<u64>,
}

/// A sampler without a parent to follow.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    On,
    Off,
    /// Samples trace ids whose low 63 bits fall below this bound.
    Ratio(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sampler {
    Plain(Root),
    /// A parent's sampled flag decides; without a parent, the root.
    ParentBase(Root),
}

fn fraction(f: f64, at: &str) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(ConfigError::at(at, "must be between 0 and 1"))
    }
}

/// OpenTelemetry's trace-id-ratio rule: the low 8 bytes of the trace id,
/// less their top bit, compared with `fraction` of 2^63.
fn ratio(f: f64) -> Root {
    Root::Ratio((f * (1u64 << 63) as f64) as u64)
}

fn root(name: SamplerName, f: f64, at: &str) -> Result<Root, ConfigError> {
    Ok(match name {
        SamplerName::AlwaysOn => Root::On,
        SamplerName::AlwaysOff => Root::Off,
        SamplerName::TraceIdRatio => ratio(fraction(f, &format!("{at}options.fraction"))?),
        SamplerName::ParentBase => {
            return Err(ConfigError::at(
                format!("{at}name"),
                "a root sampler is always_on, always_off or trace_id_ratio",
            ))
        }
    })
}

fn sampler(c: &SamplerConf) -> Result<Sampler, ConfigError> {
    let opts = &c.options;
    match c.name {
        SamplerName::ParentBase => {
            let r = match &opts.root {
                Some(r) => root(r.name, r.options.fraction, "sampler.options.root.")?,
                None => Root::Off,
            };
            Ok(Sampler::ParentBase(r))
        }
        name => {
            fraction(opts.fraction, "sampler.options.fraction")?;
            Ok(Sampler::Plain(root(name, opts.fraction, "sampler.")?))
        }
    }
}

impl Root {
    fn samples(self, trace_id: &[u8; 16]) -> bool {
        match self {
            Root::On => true,
            Root::Off => false,
            Root::Ratio(bound) => {
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace_id[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

impl Sampler {
    fn samples(self, parent: Option<&Parent>, trace_id: &[u8; 16]) -> bool {
        match (self, parent) {
            (Sampler::ParentBase(_), Some(p)) => p.sampled,
            (Sampler::ParentBase(r) | Sampler::Plain(r), _) => r.samples(trace_id),
        }
    }
}

/// What the exporter is given by the metadata; one exporter per distinct
/// value.
#[derive(Debug, Clone, PartialEq)]
struct ExportSettings {
    host: String,
    port: u16,
    /// OTLP over gRPC (h2c) rather than over HTTP/1.1.
    grpc: bool,
    authority: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    queue: usize,
    batch: usize,
    batch_timeout: Duration,
    resource: Vec<KeyValue>,
}

fn meta_error(at: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::absolute(format!("plugin_metadata.opentelemetry.{at}"), message)
}

/// `host:port` (APISIX's), or `http://host:port`; gRPC and TLS refused.
/// `host:port` or `http://host:port` (OTLP over HTTP, as APISIX), or
/// `grpc://host:port` (OTLP over gRPC, weir's option); the bool is true for
/// gRPC.
fn parse_address(address: &str) -> Result<(String, u16, bool), ConfigError> {
    let at = "collector.address";
    let (rest, grpc) = match address.split_once("://") {
        None => (address, false),
        Some(("http", rest)) => (rest, false),
        Some(("grpc", rest)) => (rest, true),
        Some(("grpcs", _)) => {
            return Err(meta_error(
                at,
                "OTLP over gRPC with TLS is not supported yet; give a plain gRPC (grpc://host:port, usually port 4317) or OTLP/HTTP (host:port, usually 4318) address",
            ))
        }
        Some(("https", _)) => {
            return Err(meta_error(
                at,
                "https collectors are not supported yet; give the collector's plain OTLP/HTTP address (host:port)",
            ))
        }
        Some(_) => return Err(meta_error(at, "must be host:port")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p),
        _ => return Err(meta_error(at, "must be host:port")),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| meta_error(at, "the port must be a number from 1 to 65535"))?;
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
    {
        return Err(meta_error(at, "not a host name or address"));
    }
    Ok((host.to_owned(), port, grpc))
}

/// A scalar for a resource attribute or a header (APISIX: boolean, number
/// or string).
fn scalar(v: &Value, at: &str) -> Result<AnyValue, ConfigError> {
    let value = match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        _ => return Err(meta_error(at, "must be a boolean, a number or a string")),
    };
    Ok(AnyValue { value: Some(value) })
}

fn settings(meta: &Metadata) -> Result<ExportSettings, ConfigError> {
    let (host, port, grpc) = parse_address(&meta.collector.address)?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if meta.collector.request_timeout == 0 {
        return Err(meta_error(
            "collector.request_timeout",
            "must be at least 1 (seconds)",
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in meta.collector.request_headers.iter().flatten() {
        let at = format!("collector.request_headers.{name}");
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            _ => return Err(meta_error(&at, "must be a boolean, a number or a string")),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| meta_error(&at, "not a valid header field name"))?;
        let value = HeaderValue::from_str(&text)
            .map_err(|_| meta_error(&at, "not a valid header field value"))?;
        headers.push((name, value));
    }
    let b = &meta.batch_span_processor;
    let positive = |v: Option<u64>, default: u64, at: &str| match v {
        None => Ok(default),
        Some(0) => Err(meta_error(
            &format!("batch_span_processor.{at}"),
            "must be at least 1",
        )),
        Some(n) => Ok(n.min(1 << 20)),
    };
    let queue = positive(b.max_queue_size, 1024, "max_queue_size")?;
    let batch = positive(b.max_export_batch_size, 16, "max_export_batch_size")?;
    if batch > queue {
        return Err(meta_error(
            "batch_span_processor.max_export_batch_size",
            "must not exceed max_queue_size",
        ));
    }
    let seconds = |v: Option<f64>, default: f64, at: &str| match v {
        None => Ok(default),
        Some(s) if s > 0.0 && s <= 3600.0 => Ok(s),
        Some(_) => Err(meta_error(
            &format!("batch_span_processor.{at}"),
            "must be more than 0 and at most 3600 (seconds)",
        )),
    };
    let batch_timeout = seconds(b.batch_timeout, 2.0, "batch_timeout")?;
    seconds(b.inactive_timeout, 1.0, "inactive_timeout")?;
    let _ = b.drop_on_queue_full;
    let mut resource = vec![KeyValue {
        key: "hostname".into(),
        value: Some(string(hostname())),
        ..KeyValue::default()
    }];
    let given = meta.resource.as_ref();
    if !given.is_some_and(|r| r.contains_key("service.name")) {
        resource.push(KeyValue {
            key: "service.name".into(),
            value: Some(string("weir".into())),
            ..KeyValue::default()
        });
    }
    for (k, v) in given.into_iter().flatten() {
        resource.push(KeyValue {
            key: k.clone(),
            value: Some(scalar(v, &format!("resource.{k}"))?),
            ..KeyValue::default()
        });
    }
    Ok(ExportSettings {
        host,
        port,
        grpc,
        authority,
        headers,
        timeout: Duration::from_secs(meta.collector.request_timeout),
        queue: usize::try_from(queue).unwrap_or(1024),
        batch: usize::try_from(batch).unwrap_or(16),
        batch_timeout: Duration::from_secs_f64(batch_timeout),
        resource,
    })
}

/// The machine's name, as APISIX's `hostname` resource attribute.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    let sampler = sampler(&c.sampler)?;
    for (list, field) in [
        (&c.additional_attributes, "additional_attributes"),
        (
            &c.additional_header_prefix_attributes,
            "additional_header_prefix_attributes",
        ),
    ] {
        if let Some(i) = list.iter().position(String::is_empty) {
            return Err(ConfigError::at(
                format!("{field}[{i}]"),
                "must not be empty",
            ));
        }
    }
    let meta: Metadata = match ctx.metadata(SPEC.name) {
        Some(m) => parse_config(m).map_err(|e| {
            let at = if e.path.is_empty() {
                "plugin_metadata.opentelemetry".to_owned()
            } else {
                format!("plugin_metadata.opentelemetry.{}", e.path)
            };
            ConfigError::absolute(at, e.message)
        })?,
        None => Metadata::default(),
    };
    let settings = settings(&meta)?;
    Ok(Arc::new(OpenTelemetry {
        sampler,
        trace_id_source: meta.trace_id_source,
        attributes: c.additional_attributes,
        header_attributes: c
            .additional_header_prefix_attributes
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        exporter: Exporter::for_settings(settings),
    }))
}

// ---------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------

struct OpenTelemetry {
    sampler: Sampler,
    trace_id_source: TraceIdSource,
    attributes: Vec<String>,
    /// Lower-cased; a trailing `*` matches a prefix.
    header_attributes: Vec<String>,
    exporter: Arc<Exporter>,
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn attr(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(string(value.into())),
        ..KeyValue::default()
    }
}

fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// What the rewrite phase leaves for the log phase of a sampled request.
struct Started {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    trace_state: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl OpenTelemetry {
    /// APISIX's attributes known in the request phases, and the additional
    /// ones the configuration asks for.
    fn request_attributes(&self, req: &RequestCtx<'_>) -> Vec<KeyValue> {
        let view = req.view();
        let method = view.method().to_owned();
        let scheme = if req.conn().tls { "https" } else { "http" };
        let target = view.path_and_query();
        // nginx's $uri, as APISIX's `url.path`: decoded, normalised.
        let path = req.var("uri").map(|p| p.into_owned()).unwrap_or_default();
        let ua =
            String::from_utf8_lossy(view.header("user-agent").unwrap_or_default()).into_owned();
        let host = String::from_utf8_lossy(view.host().unwrap_or_default());
        // nginx's $host: no port, lower case.
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => &host,
        }
        .to_ascii_lowercase();
        let mut a = vec![
            attr("net.host.name", host),
            attr("http.method", method.clone()),
            attr("http.scheme", scheme),
            attr("http.target", target),
            attr("http.user_agent", ua.clone()),
            attr("http.request.method", method),
            attr("url.scheme", scheme),
            attr("url.path", path),
            attr("user_agent.original", ua),
        ];
        for name in &self.attributes {
            if let Some(v) = req.var(name) {
                a.push(attr(name, v.into_owned()));
            }
        }
        for wanted in &self.header_attributes {
            match wanted.strip_suffix('*').filter(|p| !p.is_empty()) {
                Some(prefix) => {
                    let mut found: Vec<(String, Vec<String>)> = Vec::new();
                    for (name, value) in view.fields() {
                        let name = name.to_ascii_lowercase();
                        if !name.starts_with(prefix) {
                            continue;
                        }
                        let value = String::from_utf8_lossy(value).into_owned();
                        match found.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, values)) => values.push(value),
                            None => found.push((name, vec![value])),
                        }
                    }
                    for (name, values) in found {
                        a.push(attr(&name, values.join(", ")));
                    }
                }
                None => {
                    let values: Vec<String> = view
                        .fields()
                        .filter(|(n, _)| n.eq_ignore_ascii_case(wanted))
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .collect();
                    if !values.is_empty() {
                        a.push(attr(wanted, values.join(", ")));
                    }
                }
            }
        }
        a
    }
}

impl Plugin for OpenTelemetry {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let parent = req.view().header("traceparent").and_then(parse_traceparent);
        let trace_id = match (&parent, self.trace_id_source) {
            (Some(p), _) => p.trace_id,
            (None, TraceIdSource::XRequestId) => req
                .header("x-request-id")
                .and_then(request_id_trace)
                .unwrap_or_else(new_trace_id),
            (None, TraceIdSource::Random) => new_trace_id(),
        };
        let span_id = new_span_id();
        let sampled = self.sampler.samples(parent.as_ref(), &trace_id);
        let traceparent = format!(
            "00-{}-{}-{}",
            hex(&trace_id),
            hex(&span_id),
            if sampled { "01" } else { "00" }
        );
        if let Ok(v) = HeaderValue::from_str(&traceparent) {
            req.set_header(HeaderName::from_static("traceparent"), v);
        }
        req.set_trace_id(trace_id);
        if sampled {
            let trace_state = match (&parent, req.view().header("tracestate")) {
                (Some(_), Some(s)) => String::from_utf8_lossy(s).into_owned(),
                _ => String::new(),
            };
            let attributes = self.request_attributes(req);
            req.note_for_log(Arc::new(Started {
                trace_id,
                span_id,
                parent: parent.map(|p| p.span_id),
                trace_state,
                start: SystemTime::now(),
                attributes,
            }));
        }
        Flow::Continue
    }

    fn log(&self, log: &LogCtx<'_>) {
        let Some(started) = log.note::<Started>() else {
            return;
        };
        let mut attributes = started.attributes.clone();
        let mut name = log.method.to_owned();
        if !log.route_id.is_empty() {
            attributes.push(attr("apisix.route_id", log.route_id));
        }
        if let Some(route) = log.route {
            if let Some(n) = &route.name {
                attributes.push(attr("apisix.route_name", &**n));
            }
            if let Some(uri) = &route.uri {
                attributes.push(attr("http.route", &**uri));
                name.push(' ');
                name.push_str(uri);
            }
            if let Some(id) = &route.service_id {
                attributes.push(attr("apisix.service_id", &**id));
                if let Some(n) = &route.service_name {
                    attributes.push(attr("apisix.service_name", &**n));
                }
            }
        }
        let source = if log.node.is_some() {
            "upstream"
        } else {
            "apisix"
        };
        attributes.push(attr("apisix.response_source", source));
        attributes.push(int_attr("http.status_code", i64::from(log.status)));
        attributes.push(int_attr("http.response.status_code", i64::from(log.status)));
        let status = (log.status >= 500).then(|| Status {
            message: format!("{source} error: {}", log.status),
            code: status::StatusCode::Error as i32,
        });
        let end = (log.start + log.duration).max(started.start);
        self.exporter.send(Span {
            trace_id: started.trace_id.to_vec(),
            span_id: started.span_id.to_vec(),
            trace_state: started.trace_state.clone(),
            parent_span_id: started.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 1,
            name,
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: nanos(started.start),
            end_time_unix_nano: nanos(end),
            attributes,
            status,
            ..Span::default()
        });
    }
}
