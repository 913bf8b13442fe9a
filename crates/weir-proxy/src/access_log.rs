//! The access log: one line per request, written by a dedicated thread so the
//! request path never blocks on I/O.
//!
//! Text format (nginx "combined" plus what a gateway operator needs):
//! `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" host=$host rt=$request_time
//! upstream=$upstream_addr ustatus=$upstream_status urt=$upstream_response_time
//! route=$route_id`

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_config::{AccessLogConfig, AccessLogFormat};

/// What one request produced, gathered along the request path. Holds cheap
/// clones (reference-counted header values, the request URI); the line is
/// formatted when the response completes.
#[derive(Debug, Default, Clone)]
pub struct AccessRecord {
    /// Client address.
    pub remote: Option<std::net::SocketAddr>,
    /// Method.
    pub method: http::Method,
    /// Path and query as received.
    pub uri: http::Uri,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'static str,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// Referer header.
    pub referer: Option<http::HeaderValue>,
    /// User-Agent header.
    pub user_agent: Option<http::HeaderValue>,
    /// Host the request was routed by (port stripped when formatted).
    pub host: Option<http::HeaderValue>,
    /// Matched route id (`-` for none).
    pub route_id: Option<std::sync::Arc<str>>,
    /// Every node tried, in order.
    pub attempts: Vec<Attempt>,
    /// When the request arrived.
    pub start: Option<std::time::Instant>,
    /// Wall-clock arrival time.
    pub time: Option<SystemTime>,
}

/// One upstream attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `host:port`.
    pub node: std::sync::Arc<str>,
    /// Status answered, None when there was no response.
    pub status: Option<u16>,
    /// Time to response headers (or failure).
    pub elapsed: Duration,
}

impl AccessRecord {
    /// Records one upstream attempt.
    pub fn push_attempt(
        &mut self,
        node: &std::sync::Arc<str>,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        self.attempts.push(Attempt {
            node: node.clone(),
            status,
            elapsed,
        });
    }

    fn upstream_addr(&self) -> String {
        self.attempts
            .iter()
            .map(|a| &*a.node)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn upstream_status(&self) -> String {
        self.attempts
            .iter()
            .map(|a| a.status.map_or_else(|| "-".to_owned(), |s| s.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn upstream_time(&self) -> String {
        self.attempts
            .iter()
            .map(|a| format!("{:.3}", a.elapsed.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn host_str(&self) -> &str {
        let raw = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        crate::router::strip_port(raw)
    }
}

fn header(v: &Option<http::HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Handle to the access log writer.
///
/// Lines are formatted straight into a per-worker buffer (a short,
/// uncontended lock: each data-plane worker has its own) and a writer thread
/// drains the buffers every [`FLUSH_EVERY`]. The request path never wakes
/// another thread and never makes a system call for its log line.
pub struct AccessLog {
    shared: Option<Arc<Buffers>>,
    format: AccessLogFormat,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A worker's buffer is not allowed past this; further lines are dropped and
/// counted (the writer cannot keep up with the disk).
const MAX_BUFFERED: usize = 8 << 20;

struct Buffers {
    per_worker: Box<[Mutex<Vec<u8>>]>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl AccessLog {
    /// Starts the writer thread for `config` (or a no-op log when disabled).
    pub fn start(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        if !config.enabled || config.path == "off" {
            return Ok(AccessLog::disabled());
        }
        let out: Box<dyn Write + Send> = match config.path.as_str() {
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let shared = Arc::new(Buffers {
            per_worker: (0..crate::workers::count())
                .map(|_| Mutex::new(Vec::with_capacity(64 * 1024)))
                .collect(),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let buffers = shared.clone();
        let writer = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_loop(&buffers, out))?;
        Ok(AccessLog {
            shared: Some(shared),
            format: config.format,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// A log that writes nothing.
    pub fn disabled() -> AccessLog {
        AccessLog {
            shared: None,
            format: AccessLogFormat::Text,
            writer: Mutex::new(None),
        }
    }

    /// True when lines are written.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Formats one line into this worker's buffer; never blocks on I/O.
    pub fn write(&self, rec: &AccessRecord) {
        let Some(shared) = &self.shared else { return };
        let i = crate::workers::current() % shared.per_worker.len().max(1);
        let mut buf = match shared.per_worker[i].lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buf.len() >= MAX_BUFFERED {
            drop(buf);
            let n = shared.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "access log writer is behind; lines dropped"
                );
            }
            return;
        }
        match self.format {
            AccessLogFormat::Text => format_text(rec, &mut buf),
            AccessLogFormat::Json => format_json(rec, &mut buf),
        }
    }
}

impl AccessLog {
    /// Writes out every buffered line and stops the writer (at shutdown,
    /// after the last request). Blocks for at most one flush interval.
    pub fn close(&self) {
        if let Some(shared) = &self.shared {
            shared.stop.store(true, Ordering::Release);
        }
        let handle = match self.writer.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            // The writer flushes what is left, then exits.
            shared.stop.store(true, Ordering::Release);
        }
    }
}

fn write_loop(shared: &Buffers, out: Box<dyn Write + Send>) {
    let mut out = out;
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        for slot in shared.per_worker.iter() {
            {
                let mut buf = match slot.lock() {
                    Ok(b) => b,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if buf.is_empty() {
                    continue;
                }
                // Swap rather than copy: the worker gets an empty buffer
                // with the capacity the writer had.
                std::mem::swap(&mut *buf, &mut batch);
            }
            let _ = out.write_all(&batch);
            batch.clear();
        }
        let _ = out.flush();
        if stopping {
            break;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn elapsed(rec: &AccessRecord) -> f64 {
    rec.start.map_or(0.0, |s| s.elapsed().as_secs_f64())
}

/// A duration as seconds with millisecond precision (`0.012`), formatted
/// with integer arithmetic: float formatting showed in profiles.
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = (self.0.as_micros() + 500) / 1000;
        write!(f, "{}.{:03}", ms / 1000, ms % 1000)
    }
}

fn format_text(rec: &AccessRecord, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let path = rec.uri.path_and_query().map_or("/", |p| p.as_str());
    match rec.remote {
        Some(r) => {
            let _ = write!(out, "{}", r.ip());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    if let Some(t) = rec.time {
        write_time(t, out);
    }
    let _ = write!(
        out,
        "] \"{} {} {}\" {} {} \"{}\" \"{}\" host={} rt={} upstream=",
        rec.method,
        path,
        rec.version,
        rec.status,
        rec.body_bytes,
        dash(header(&rec.referer)),
        dash(header(&rec.user_agent)),
        dash(rec.host_str()),
        Seconds(rec.start.map(|s| s.elapsed()).unwrap_or_default()),
    );
    if rec.attempts.is_empty() {
        out.extend_from_slice(b"- ustatus=- urt=-");
    } else {
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(a.node.as_bytes());
        }
        out.extend_from_slice(b" ustatus=");
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            match a.status {
                Some(s) => {
                    let _ = write!(out, "{s}");
                }
                None => out.push(b'-'),
            }
        }
        out.extend_from_slice(b" urt=");
        for (i, a) in rec.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            let _ = write!(out, "{}", Seconds(a.elapsed));
        }
    }
    let _ = writeln!(
        out,
        " route={}",
        dash(rec.route_id.as_deref().unwrap_or(""))
    );
}

fn format_json(rec: &AccessRecord, out: &mut Vec<u8>) {
    let v = serde_json::json!({
        "time": rec.time.map(format_time),
        "remote_addr": rec.remote.map(|r| r.ip().to_string()),
        "method": rec.method.as_str(),
        "uri": rec.uri.path_and_query().map_or("/", |p| p.as_str()),
        "protocol": rec.version,
        "status": rec.status,
        "body_bytes_sent": rec.body_bytes,
        "referer": header(&rec.referer),
        "user_agent": header(&rec.user_agent),
        "host": rec.host_str(),
        "request_time": (elapsed(rec) * 1000.0).round() / 1000.0,
        "upstream_addr": rec.upstream_addr(),
        "upstream_status": rec.upstream_status(),
        "upstream_response_time": rec.upstream_time(),
        "route_id": rec.route_id.as_deref().unwrap_or(""),
    });
    let _ = serde_json::to_writer(&mut *out, &v);
    out.push(b'\n');
}

/// Writes `$time_local`, reusing the formatted second (thread-local cache):
/// at thousands of requests a second the date is formatted once a second.
fn write_time(t: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, format_time(t));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

/// `22/Nov/2026:03:00:00 +0000` (UTC), as nginx's `$time_local` in UTC.
pub fn format_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_formatted_like_nginx() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_316_400); // 2026-11-22T03:00:00Z
        assert_eq!(format_time(t), "22/Nov/2026:03:00:00 +0000");
    }
}

#[cfg(test)]
mod seconds_tests {
    use super::*;

    #[test]
    fn durations_print_as_rounded_seconds() {
        assert_eq!(Seconds(Duration::from_micros(12_345)).to_string(), "0.012");
        assert_eq!(Seconds(Duration::from_micros(12_500)).to_string(), "0.013");
        assert_eq!(Seconds(Duration::from_millis(61_005)).to_string(), "61.005");
        assert_eq!(Seconds(Duration::ZERO).to_string(), "0.000");
    }
}
