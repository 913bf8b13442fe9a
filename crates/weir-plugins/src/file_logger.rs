//! `file-logger`: appends one JSON line per request to a file, as APISIX's
//! `file-logger` (priority 399, log phase).
//!
//! Without `log_format` a line is weir's default entry: `client_ip`,
//! `route_id`, `start_time` (ms since the epoch), `latency` (ms),
//! `request` (`method`, `uri`, `host`), `response` (`status`, `size`) and,
//! after an authentication, `consumer.username`. With `log_format`, each
//! key's value is either a literal or a `$variable` from the set below;
//! an unknown variable is a configuration error naming it.
//!
//! Lines are written by one thread per file, off the request path, through
//! a bounded queue: a file that cannot keep up loses lines (counted, and
//! logged at most once a minute) rather than slowing requests. The file is
//! opened (created, append) on the first line, not when the configuration
//! is loaded, so validating a configuration touches no file.
//!
//! Differences from APISIX: the default entry has no request or response
//! headers, no `upstream` and no `server` block; `include_req_body`,
//! `include_resp_body` and `match` are refused (not supported yet) rather
//! than ignored.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};
use weir_plugin::{parse_config, BuildCtx, ConfigError, LogCtx, Phase, Phases, Plugin, PluginSpec};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "file-logger",
    priority: 399,
    phases: Phases::of(&[Phase::Log]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// Lines waiting for a file's writer thread before new ones are dropped.
const QUEUE: usize = 8192;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    path: String,
    #[serde(default)]
    log_format: Option<Map<String, Value>>,
    #[serde(default)]
    include_req_body: bool,
    #[serde(default)]
    include_req_body_expr: Option<Value>,
    #[serde(default)]
    include_resp_body: bool,
    #[serde(default)]
    include_resp_body_expr: Option<Value>,
    #[serde(default, rename = "match")]
    match_: Option<Value>,
}

/// What a `log_format` value takes from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    RemoteAddr,
    Method,
    RequestUri,
    Uri,
    Args,
    Host,
    Status,
    BodyBytesSent,
    RequestTime,
    RouteId,
    ConsumerName,
    TimeIso8601,
    Msec,
}

/// The variables `log_format` may use (nginx's and APISIX's names).
const VARS: &[(&str, Var)] = &[
    ("remote_addr", Var::RemoteAddr),
    ("client_ip", Var::RemoteAddr),
    ("request_method", Var::Method),
    ("request_uri", Var::RequestUri),
    ("uri", Var::Uri),
    ("args", Var::Args),
    ("query_string", Var::Args),
    ("host", Var::Host),
    ("status", Var::Status),
    ("body_bytes_sent", Var::BodyBytesSent),
    ("request_time", Var::RequestTime),
    ("route_id", Var::RouteId),
    ("consumer_name", Var::ConsumerName),
    ("time_iso8601", Var::TimeIso8601),
    ("msec", Var::Msec),
];

/// One `log_format` entry's value.
enum Field {
    Literal(Value),
    Var(Var),
}

struct FileLogger {
    path: PathBuf,
    format: Option<Vec<(String, Field)>>,
    sink: OnceLock<Arc<FileSink>>,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if c.path.is_empty() {
        return Err(ConfigError::at("path", "must not be empty"));
    }
    for (field, set) in [
        ("include_req_body", c.include_req_body),
        ("include_resp_body", c.include_resp_body),
        ("include_req_body_expr", c.include_req_body_expr.is_some()),
        ("include_resp_body_expr", c.include_resp_body_expr.is_some()),
        ("match", c.match_.is_some()),
    ] {
        if set {
            return Err(ConfigError::at(
                field,
                "not supported by weir's file-logger yet; remove it",
            ));
        }
    }
    let format = match c.log_format {
        None => None,
        Some(map) => Some(
            map.into_iter()
                .map(|(key, value)| {
                    let field = match value.as_str().and_then(|s| s.strip_prefix('$')) {
                        Some(name) => Field::Var(
                            VARS.iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, v)| *v)
                                .ok_or_else(|| {
                                    ConfigError::at(
                                        format!("log_format.{key}"),
                                        format!(
                                            "unknown variable `${name}`; known: {}",
                                            VARS.iter()
                                                .map(|(n, _)| format!("${n}"))
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    )
                                })?,
                        ),
                        None => Field::Literal(value),
                    };
                    Ok((key, field))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
        ),
    };
    Ok(Arc::new(FileLogger {
        path: PathBuf::from(c.path),
        format,
        sink: OnceLock::new(),
    }))
}

impl Plugin for FileLogger {
    fn log(&self, log: &LogCtx<'_>) {
        let mut line = match &self.format {
            None => serde_json::to_vec(&default_entry(log)),
            Some(format) => serde_json::to_vec(&Value::Object(
                format
                    .iter()
                    .map(|(k, f)| {
                        let v = match f {
                            Field::Literal(v) => v.clone(),
                            Field::Var(var) => var_value(*var, log),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )),
        }
        .unwrap_or_default();
        line.push(b'\n');
        self.sink
            .get_or_init(|| FileSink::for_path(&self.path))
            .send(line);
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn latency_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn default_entry(log: &LogCtx<'_>) -> Value {
    let mut entry = serde_json::json!({
        "client_ip": log.client_ip.to_string(),
        "route_id": log.route_id,
        "start_time": millis(log.start),
        "latency": latency_ms(log.duration),
        "request": {"method": log.method, "uri": log.uri, "host": log.host},
        "response": {"status": log.status, "size": log.body_bytes},
    });
    if let (Some(c), Some(obj)) = (log.consumer, entry.as_object_mut()) {
        obj.insert(
            "consumer".into(),
            serde_json::json!({"username": &*c.username}),
        );
    }
    entry
}

fn var_value(var: Var, log: &LogCtx<'_>) -> Value {
    let (path, query) = log.uri.split_once('?').unwrap_or((log.uri, ""));
    match var {
        Var::RemoteAddr => log.client_ip.to_string().into(),
        Var::Method => log.method.into(),
        Var::RequestUri => log.uri.into(),
        Var::Uri => path.into(),
        Var::Args => query.into(),
        Var::Host => log.host.into(),
        Var::Status => log.status.into(),
        Var::BodyBytesSent => log.body_bytes.into(),
        // nginx's: seconds with millisecond resolution.
        Var::RequestTime => ((log.duration.as_secs_f64() * 1e3).round() / 1e3).into(),
        Var::RouteId => log.route_id.into(),
        Var::ConsumerName => log
            .consumer
            .map_or(Value::Null, |c| Value::from(&*c.username)),
        Var::TimeIso8601 => iso8601(log.start + log.duration).into(),
        Var::Msec => (millis(log.start + log.duration) as f64 / 1e3).into(),
    }
}

/// `2026-12-06T05:12:00Z` (UTC, seconds resolution, as nginx's).
fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    jiff::Timestamp::from_second(secs).map_or_else(|_| String::new(), |t| t.to_string())
}

/// One file's writer: a thread that appends the lines it is sent. Shared by
/// every route (and every configuration generation) logging to the same
/// path; the thread ends once no configuration uses the file any more.
struct FileSink {
    tx: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
    path: PathBuf,
    last_warning: Mutex<Option<Instant>>,
}

static SINKS: LazyLock<Mutex<HashMap<PathBuf, Weak<FileSink>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl FileSink {
    fn for_path(path: &PathBuf) -> Arc<FileSink> {
        let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sinks.get(path).and_then(Weak::upgrade) {
            return s;
        }
        sinks.retain(|_, s| s.strong_count() > 0);
        let (tx, rx) = sync_channel(QUEUE);
        let sink = Arc::new(FileSink {
            tx,
            dropped: AtomicU64::new(0),
            path: path.clone(),
            last_warning: Mutex::new(None),
        });
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-file-logger".into())
            .spawn(move || write_lines(&thread_path, rx));
        if let Err(e) = spawned {
            tracing::warn!(path = %path.display(), error = %e, "file-logger: cannot start its writer thread; lines for this file are dropped");
        }
        sinks.insert(path.clone(), Arc::downgrade(&sink));
        sink
    }

    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    *last = Some(Instant::now());
                    tracing::warn!(path = %self.path.display(), dropped = n, "file-logger: the file does not keep up; lines dropped");
                }
            }
        }
    }
}

/// The writer thread: opens the file on the first line and appends every
/// line; a file that cannot be opened or written is retried on the next
/// line (after a warning at most once a minute).
fn write_lines(path: &PathBuf, rx: Receiver<Vec<u8>>) {
    let mut file: Option<std::fs::File> = None;
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str, e: &std::io::Error| {
        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_warning = Some(Instant::now());
            tracing::warn!(path = %path.display(), error = %e, "file-logger: cannot {what} the file; its lines are lost meanwhile");
        }
    };
    while let Ok(line) = rx.recv() {
        if file.is_none() {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => file = Some(f),
                Err(e) => {
                    warn("open", &e);
                    continue;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            // One write per line: with O_APPEND, lines of concurrent
            // writers (other processes) never interleave.
            if let Err(e) = f.write_all(&line) {
                warn("write", &e);
                file = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;

    #[test]
    fn configuration_errors_name_the_field() {
        assert_eq!(
            config_error(&SPEC, serde_json::json!({})).message,
            "missing field `path`"
        );
        assert_eq!(
            config_error(&SPEC, serde_json::json!({"path": ""})).path,
            "path"
        );
        let e = config_error(
            &SPEC,
            serde_json::json!({"path": "/tmp/x", "log_format": {"a": "$nope"}}),
        );
        assert_eq!(e.path, "log_format.a");
        assert!(e.message.contains("unknown variable `$nope`"), "{e}");
        let e = config_error(
            &SPEC,
            serde_json::json!({"path": "/tmp/x", "include_resp_body": true}),
        );
        assert_eq!(e.path, "include_resp_body");
        let e = config_error(
            &SPEC,
            serde_json::json!({"path": "/tmp/x", "match": [["arg_a", "==", "1"]]}),
        );
        assert_eq!(e.path, "match");
    }

    #[test]
    fn iso8601_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_533_920);
        assert_eq!(iso8601(t), "2026-12-06T05:12:00Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
