//! The access log: one line per request, written by a dedicated thread so the
//! request path never blocks on I/O.
//!
//! Text format (nginx "combined" plus what a gateway operator needs):
//! `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" host=$host rt=$request_time
//! upstream=$upstream_addr ustatus=$upstream_status urt=$upstream_response_time
//! route=$route_id`

mod format;
mod record;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_config::{AccessLogConfig, AccessLogFormat};

pub use record::{AccessRecord, Attempt, RequestFields};

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
    fn write(&self, rec: &AccessRecord) {
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
            AccessLogFormat::Text => format::text(rec, &mut buf),
            AccessLogFormat::Json => format::json(rec, &mut buf),
        }
    }

    /// Writes `rec` (when enabled) and keeps it for reuse by this thread.
    pub fn finish(&self, rec: AccessRecord) {
        self.write(&rec);
        rec.recycle();
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
