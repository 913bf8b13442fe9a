//! The access log: one line per request, written by a dedicated thread so the
//! request path never blocks on I/O.
//!
//! Text format (nginx "combined" plus what a gateway operator needs):
//! `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" host=$host rt=$request_time
//! upstream=$upstream_addr ustatus=$upstream_status urt=$upstream_response_time
//! route=$route_id`

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_config::{AccessLogConfig, AccessLogFormat};

/// Lines buffered before new ones are dropped (and counted).
const QUEUE: usize = 64 * 1024;

/// What one request produced, gathered along the request path.
#[derive(Debug, Default, Clone)]
pub struct AccessRecord {
    /// Client address.
    pub remote_addr: String,
    /// Method.
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'static str,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// Referer header.
    pub referer: String,
    /// User-Agent header.
    pub user_agent: String,
    /// Host the request was routed by.
    pub host: String,
    /// Matched route id (`-` for none).
    pub route_id: String,
    /// Every node tried, in order (`10.0.0.1:80, 10.0.0.2:80`).
    pub upstream_addr: String,
    /// Status of each attempt (`502, 200`).
    pub upstream_status: String,
    /// Seconds of each attempt.
    pub upstream_time: String,
    /// When the request arrived.
    pub start: Option<std::time::Instant>,
    /// Wall-clock arrival time.
    pub time: Option<SystemTime>,
}

impl AccessRecord {
    /// Records one upstream attempt.
    pub fn push_attempt(&mut self, node: &str, status: Option<u16>, elapsed: Duration) {
        if !self.upstream_addr.is_empty() {
            self.upstream_addr.push_str(", ");
            self.upstream_status.push_str(", ");
            self.upstream_time.push_str(", ");
        }
        self.upstream_addr.push_str(node);
        match status {
            Some(s) => {
                let _ = write!(self.upstream_status, "{s}");
            }
            None => self.upstream_status.push('-'),
        }
        let _ = write!(self.upstream_time, "{:.3}", elapsed.as_secs_f64());
    }
}

/// Handle to the access log writer.
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    format: AccessLogFormat,
    dropped: AtomicU64,
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
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog {
            tx: Some(tx),
            format: config.format,
            dropped: AtomicU64::new(0),
        })
    }

    /// A log that writes nothing.
    pub fn disabled() -> AccessLog {
        AccessLog {
            tx: None,
            format: AccessLogFormat::Text,
            dropped: AtomicU64::new(0),
        }
    }

    /// True when lines are written.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Formats and queues one line; never blocks.
    pub fn write(&self, rec: &AccessRecord) {
        let Some(tx) = &self.tx else { return };
        let line = match self.format {
            AccessLogFormat::Text => format_text(rec),
            AccessLogFormat::Json => format_json(rec),
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "access log writer is behind; lines dropped"
                );
            }
        }
    }
}

fn write_loop(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
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

fn format_text(rec: &AccessRecord) -> String {
    let mut s = String::with_capacity(256);
    let _ = writeln!(
        s,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" host={} rt={:.3} upstream={} ustatus={} urt={} route={}",
        rec.remote_addr,
        rec.time.map(format_time).unwrap_or_default(),
        rec.method,
        rec.uri,
        rec.version,
        rec.status,
        rec.body_bytes,
        dash(&rec.referer),
        dash(&rec.user_agent),
        dash(&rec.host),
        elapsed(rec),
        dash(&rec.upstream_addr),
        dash(&rec.upstream_status),
        dash(&rec.upstream_time),
        dash(&rec.route_id),
    );
    s
}

fn format_json(rec: &AccessRecord) -> String {
    let v = serde_json::json!({
        "time": rec.time.map(format_time),
        "remote_addr": rec.remote_addr,
        "method": rec.method,
        "uri": rec.uri,
        "protocol": rec.version,
        "status": rec.status,
        "body_bytes_sent": rec.body_bytes,
        "referer": rec.referer,
        "user_agent": rec.user_agent,
        "host": rec.host,
        "request_time": (elapsed(rec) * 1000.0).round() / 1000.0,
        "upstream_addr": rec.upstream_addr,
        "upstream_status": rec.upstream_status,
        "upstream_response_time": rec.upstream_time,
        "route_id": rec.route_id,
    });
    let mut s = v.to_string();
    s.push('\n');
    s
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
