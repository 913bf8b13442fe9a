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

use std::fmt::Write as _;
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
fn parse_address(address: &str) -> Result<(String, u16), ConfigError> {
    let at = "collector.address";
    let rest = match address.split_once("://") {
        None => address,
        Some(("http", rest)) => rest,
        Some(("grpc" | "grpcs", _)) => {
            return Err(meta_error(
                at,
                "OTLP over gRPC is not supported: weir exports OTLP over HTTP (binary protobuf), as APISIX; give the collector's OTLP/HTTP address (host:port, usually port 4318)",
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
    Ok((host.to_owned(), port))
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
    let (host, port) = parse_address(&meta.collector.address)?;
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

/// A valid W3C `traceparent` from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// W3C Trace Context §3.2: `version-traceid-parentid-flags`, lower-case
/// hex; version ff, all-zero ids and (for version 00) trailing data are
/// invalid; later versions may append fields.
fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    let value = value.trim_ascii();
    if value.len() < 55 {
        return None;
    }
    let (version, rest) = value.split_at(2);
    let version: [u8; 1] = unhex(version)?;
    if version[0] == 0xff || (version[0] == 0 && value.len() != 55) {
        return None;
    }
    if version[0] != 0 && value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let fields = &rest[..53];
    if fields[0] != b'-' || fields[33] != b'-' || fields[50] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = unhex(&fields[1..33])?;
    let span_id: [u8; 8] = unhex(&fields[34..50])?;
    let flags: [u8; 1] = unhex(&fields[51..53])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

/// `X-Request-Id` as a trace id: 32 hex digits (any case), not all zero.
fn request_id_trace(value: &[u8]) -> Option<[u8; 16]> {
    unhex(&value.to_ascii_lowercase()).filter(|id| *id != [0; 16])
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id = rand::random::<u128>().to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = rand::random::<u64>().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
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

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// One export configuration's queue and the task that drains it: shared by
/// every route (and configuration generation) with the same settings; the
/// task ends, after sending what it holds, once no configuration uses it.
/// The task is started by the first span (validating a configuration
/// starts nothing).
struct Exporter {
    settings: Arc<ExportSettings>,
    queue: OnceLock<Option<mpsc::Sender<Span>>>,
    last_warning: Mutex<Option<Instant>>,
}

type Registry = Mutex<Vec<(Arc<ExportSettings>, Weak<Exporter>)>>;

static EXPORTERS: LazyLock<Registry> = LazyLock::new(|| Mutex::new(Vec::new()));

impl Exporter {
    fn for_settings(settings: ExportSettings) -> Arc<Exporter> {
        let mut all = EXPORTERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = all
            .iter()
            .find(|(s, _)| **s == settings)
            .and_then(|(_, e)| e.upgrade())
        {
            return e;
        }
        all.retain(|(_, e)| e.strong_count() > 0);
        let settings = Arc::new(settings);
        let exporter = Arc::new(Exporter {
            settings: settings.clone(),
            queue: OnceLock::new(),
            last_warning: Mutex::new(None),
        });
        all.push((settings, Arc::downgrade(&exporter)));
        exporter
    }

    /// Queues `span` without waiting: dropped (and counted) when the queue
    /// is full.
    fn send(&self, span: Span) {
        let queue = self.queue.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = mpsc::channel(self.settings.queue);
            runtime.spawn(drain(self.settings.clone(), rx));
            Some(tx)
        });
        let sent = queue.as_ref().is_some_and(|q| q.try_send(span).is_ok());
        if !sent {
            let n = DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                tracing::warn!(collector = %self.settings.authority, dropped = n, "opentelemetry: the export queue is full; spans dropped");
            }
        }
    }
}

/// Warnings about a failing collector: at most one this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The export task: batches of up to `max_export_batch_size` spans, sent
/// when full or `batch_timeout` after their first span.
async fn drain(settings: Arc<ExportSettings>, mut rx: mpsc::Receiver<Span>) {
    let mut client = Client::default();
    let mut last_warning: Option<Instant> = None;
    let mut batch = Vec::with_capacity(settings.batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + settings.batch_timeout;
        while batch.len() < settings.batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = request(&settings, std::mem::take(&mut batch)).encode_to_vec();
        let result = tokio::time::timeout(settings.timeout, client.post(&settings, body)).await;
        let error = match result {
            Ok(Ok(status)) if status.is_success() => {
                EXPORTED.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(status)) => format!("the collector answered {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                client.sender = None;
                format!("no answer within {:?}", settings.timeout)
            }
        };
        EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
        DROPPED_EXPORT_FAILED.fetch_add(n, Ordering::Relaxed);
        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            tracing::warn!(collector = %settings.authority, spans = n, error = %error, "opentelemetry: export failed; spans lost");
        }
    }
}

fn request(settings: &ExportSettings, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: settings.resource.clone(),
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weir".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One HTTP/1.1 connection to the collector, kept between exports.
#[derive(Default)]
struct Client {
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn post(
        &mut self,
        settings: &ExportSettings,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, BoxError> {
        let result = self.exchange(settings, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        settings: &ExportSettings,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, BoxError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let tcp =
                    tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)).await?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await?;
        let mut builder = http::Request::post("/v1/traces")
            .header(http::header::HOST, &settings.authority)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &settings.headers {
            builder = builder.header(name, value);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        self.sender = Some(sender);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_error, build_with_metadata, config_error, TestReq};
    use serde_json::json;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    #[test]
    fn traceparent_parses_as_w3c_writes_it() {
        let p = parse_traceparent(format!("00-{TRACE}-{PARENT}-01").as_bytes()).unwrap();
        assert_eq!(hex(&p.trace_id), TRACE);
        assert_eq!(hex(&p.span_id), PARENT);
        assert!(p.sampled);
        let p = parse_traceparent(format!("00-{TRACE}-{PARENT}-00").as_bytes()).unwrap();
        assert!(!p.sampled);
        // A later version may add fields.
        assert!(parse_traceparent(format!("01-{TRACE}-{PARENT}-01-xyz").as_bytes()).is_some());
        for bad in [
            format!("00-{TRACE}-{PARENT}-01-x"),
            format!("ff-{TRACE}-{PARENT}-01"),
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
            format!("00_{TRACE}-{PARENT}-01"),
            "00-abc".into(),
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn samplers_decide_as_apisix() {
        let id = [0xffu8; 16];
        let low = {
            let mut i = [0u8; 16];
            i[15] = 1;
            i
        };
        let parent = |sampled| Parent {
            trace_id: id,
            span_id: [1; 8],
            sampled,
        };
        let s = |c: Value| sampler(&serde_json::from_value(c).unwrap()).unwrap();
        assert!(!s(json!({})).samples(None, &id));
        assert!(s(json!({"name": "always_on"})).samples(Some(&parent(false)), &id));
        let half = s(json!({"name": "trace_id_ratio", "options": {"fraction": 0.5}}));
        assert!(half.samples(None, &low));
        assert!(!half.samples(None, &id));
        let pb = s(json!({"name": "parent_base", "options": {"root": {"name": "always_on"}}}));
        assert!(pb.samples(None, &id));
        assert!(!pb.samples(Some(&parent(false)), &id));
        assert!(s(json!({"name": "parent_base"})).samples(Some(&parent(true)), &id));
        assert!(!s(json!({"name": "parent_base"})).samples(None, &id));
    }

    #[test]
    fn the_upstream_gets_a_traceparent_naming_the_new_span() {
        let p = build_with_metadata(&SPEC, json!({"sampler": {"name": "always_off"}}), json!({}))
            .unwrap();
        let out = TestReq::get("/a")
            .header("traceparent", &format!("00-{TRACE}-{PARENT}-01"))
            .run_parts(|ctx| p.rewrite(ctx)); // the span id is random
        let sent = out.upstream("traceparent").flatten().unwrap();
        assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
        assert!(sent.ends_with("-00"), "unsampled: {sent}");
        assert!(!sent.contains(PARENT), "{sent}");
    }

    #[test]
    fn a_request_id_of_32_hex_digits_becomes_the_trace_id() {
        assert_eq!(
            request_id_trace(TRACE.to_uppercase().as_bytes()).map(|i| hex(&i)),
            Some(TRACE.to_owned())
        );
        assert_eq!(request_id_trace(b"not-an-id"), None);
        assert_eq!(request_id_trace("0".repeat(32).as_bytes()), None);
        let p = build_with_metadata(&SPEC, json!({}), json!({"trace_id_source": "x-request-id"}))
            .unwrap();
        let out = TestReq::get("/a")
            .header("x-request-id", TRACE)
            .run_parts(|ctx| p.rewrite(ctx));
        let sent = out.upstream("traceparent").flatten().unwrap();
        assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
    }

    #[test]
    fn bad_configurations_name_the_field() {
        for (conf, path) in [
            (json!({"sampler": {"name": "sometimes"}}), "sampler.name"),
            (
                json!({"sampler": {"name": "trace_id_ratio", "options": {"fraction": 1.5}}}),
                "sampler.options.fraction",
            ),
            (
                json!({"sampler": {"name": "parent_base", "options": {"root": {"name": "trace_id_ratio", "options": {"fraction": -1}}}}}),
                "sampler.options.root.options.fraction",
            ),
            (
                json!({"sampler": {"name": "parent_base", "options": {"root": {"name": "parent_base"}}}}),
                "sampler.options.root.name",
            ),
            (json!({"sampler": {"nme": "always_on"}}), "sampler"),
            (
                json!({"additional_attributes": [""]}),
                "additional_attributes[0]",
            ),
            (json!({"endpoint": "x"}), ""),
        ] {
            let e = config_error(&SPEC, conf.clone());
            assert!(e.path.starts_with(path), "{conf}: {e}");
        }
        for (meta, path) in [
            (
                json!({"collector": {"address": "grpc://c:4317"}}),
                "collector.address",
            ),
            (json!({"collector": {"address": "c"}}), "collector.address"),
            (json!({"collector": {"adress": "c:1"}}), "collector"),
            (json!({"trace_id_source": "header"}), "trace_id_source"),
            (json!({"resource": {"a": [1]}}), "resource.a"),
            (
                json!({"batch_span_processor": {"max_queue_size": 0}}),
                "batch_span_processor.max_queue_size",
            ),
            (
                json!({"collector": {"request_headers": {"bad name": "x"}}}),
                "collector.request_headers.bad name",
            ),
        ] {
            let e = build_error(build_with_metadata(&SPEC, json!({}), meta.clone()));
            assert!(
                e.contains(&format!("plugin_metadata.opentelemetry.{path}")),
                "{meta}: {e}"
            );
        }
        let e = build_error(build_with_metadata(
            &SPEC,
            json!({}),
            json!({"collector": {"address": "grpc://c:4317"}}),
        ));
        assert!(e.contains("OTLP over HTTP"), "{e}");
    }
}
