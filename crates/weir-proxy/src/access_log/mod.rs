//! The access log: one line per request, written by a dedicated thread so the
//! request path never blocks on I/O.
//!
//! Text format (nginx "combined" plus what a gateway operator needs):
//! `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent" host=$host rt=$request_time
//! upstream=$upstream_addr ustatus=$upstream_status urt=$upstream_response_time
//! route=$route_id`, then ` consumer=<username>` when an authentication
//! plugin recognised one and ` request_id=<id>` when `request-id` gave or
//! kept one

mod format;
mod record;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use weir_config::{AccessLogConfig, AccessLogFormat};

pub(crate) use record::mask_query;
pub use record::{AccessRecord, Attempt, RequestFields};

/// Handle to the access log writer.
///
/// Lines are formatted straight into a per-worker buffer (a short,
/// uncontended lock: each data-plane worker has its own) and a writer thread
/// drains the buffers every [`FLUSH_EVERY`]. The request path never wakes
/// another thread and never makes a system call for its log line.
///
/// Each line takes a number from one counter shared by the workers as it is
/// buffered, and the writer writes the lines of all buffers in that order:
/// of two requests that finished one after the other (the second one's line
/// buffered after the first one's), on any workers, the first one's line
/// comes first.
pub struct AccessLog {
    shared: Option<Arc<Buffers>>,
    format: AccessLogFormat,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How often buffered lines are written out. A line is written within two
/// of these (one when no line numbered before it is still being buffered).
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A worker's buffer is not allowed past this; further lines are dropped and
/// counted (the writer cannot keep up with the disk).
const MAX_BUFFERED: usize = 8 << 20;

struct Buffers {
    per_worker: Box<[Mutex<Lines>]>,
    /// The number the next line buffered takes: the order lines are written
    /// in. Taken under the lock of the buffer the line goes to, which is
    /// what lets the writer know when it has every line numbered below a
    /// number it read (see [`Writer::round`]).
    next_seq: AtomicU64,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// Formatted lines, back to back, each with its number.
#[derive(Debug, Default)]
struct Lines {
    bytes: Vec<u8>,
    /// (number, length in `bytes`) of each line, in order; numbers increase.
    index: Vec<(u64, usize)>,
}

impl Lines {
    fn with_capacity(bytes: usize) -> Lines {
        Lines {
            bytes: Vec::with_capacity(bytes),
            index: Vec::with_capacity(bytes / 128),
        }
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Moves `other`'s lines after these ones; `other` is left empty with
    /// its capacity.
    fn append(&mut self, other: &mut Lines) {
        self.bytes.extend_from_slice(&other.bytes);
        self.index.extend_from_slice(&other.index);
        other.bytes.clear();
        other.index.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Buffers {
    fn new(workers: usize) -> Buffers {
        Buffers {
            per_worker: (0..workers.max(1))
                .map(|_| Mutex::new(Lines::with_capacity(64 * 1024)))
                .collect(),
            next_seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Buffers the line `format` writes, in worker `worker`'s buffer.
    fn push(&self, worker: usize, format: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = lock(&self.per_worker[worker % self.per_worker.len()]);
        if buf.bytes.len() >= MAX_BUFFERED {
            drop(buf);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "access log writer is behind; lines dropped"
                );
            }
            return;
        }
        // Under the buffer's lock (see `next_seq`).
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let before = buf.bytes.len();
        format(&mut buf.bytes);
        let len = buf.bytes.len() - before;
        if len > 0 && buf.bytes.last() == Some(&b'\n') {
            buf.index.push((seq, len));
        } else {
            // Nothing, or not a whole line (a JSON line that failed):
            // the number is skipped, which the writer does not mind.
            buf.bytes.truncate(before);
        }
    }
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
        let shared = Arc::new(Buffers::new(crate::workers::count()));
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
        shared.push(crate::workers::current(), |buf| match self.format {
            AccessLogFormat::Text => format::text(rec, buf),
            AccessLogFormat::Json => format::json(rec, buf),
        });
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
        let handle = lock(&self.writer).take();
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

/// The writer thread's state: the lines drained from each worker's buffer
/// and not written yet.
struct Writer {
    /// Per worker, in the order of the workers' buffers.
    pending: Vec<Lines>,
    /// Swapped with a worker's buffer when its pending lines are not all
    /// written: the worker gets an empty buffer with capacity.
    spare: Lines,
    /// Lines on their way out, in order.
    batch: Vec<u8>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Per worker: lines and bytes of `pending` written this round.
    cursors: Vec<(usize, usize)>,
}

/// Written out when it grows past this, so a round's copy stays bounded.
const BATCH: usize = 1 << 20;

impl Writer {
    fn new(workers: usize) -> Writer {
        Writer {
            pending: (0..workers)
                .map(|_| Lines::with_capacity(64 * 1024))
                .collect(),
            spare: Lines::with_capacity(64 * 1024),
            batch: Vec::with_capacity(64 * 1024),
            heap: BinaryHeap::with_capacity(workers),
            cursors: vec![(0, 0); workers],
        }
    }

    /// Drains every buffer and writes, in number order, each line numbered
    /// below `upto`; the others wait for the next round.
    ///
    /// With `upto` read from `next_seq` before the buffers are locked here,
    /// every line numbered below it is drained in this round: its number
    /// was taken under its buffer's lock, in a critical section that came
    /// before this round's (a later one would have started after `upto`
    /// was read, and taken `upto` or more). A line drained now with a
    /// number of `upto` or more may have a line with a smaller number still
    /// on its way into another buffer, so it waits.
    fn round(&mut self, shared: &Buffers, upto: u64, out: &mut dyn Write) {
        for (slot, pending) in shared.per_worker.iter().zip(&mut self.pending) {
            let mut buf = lock(slot);
            if buf.is_empty() {
                continue;
            }
            if pending.is_empty() {
                // Swap rather than copy: the worker gets an empty buffer
                // with the capacity the writer had.
                std::mem::swap(&mut *buf, pending);
            } else {
                std::mem::swap(&mut *buf, &mut self.spare);
                drop(buf);
                pending.append(&mut self.spare);
            }
        }
        let next_below = |lines: &Lines, line: usize| {
            lines
                .index
                .get(line)
                .map(|&(seq, _)| seq)
                .filter(|&seq| seq < upto)
        };
        self.heap.clear();
        for (i, pending) in self.pending.iter().enumerate() {
            self.cursors[i] = (0, 0);
            if let Some(seq) = next_below(pending, 0) {
                self.heap.push(Reverse((seq, i)));
            }
        }
        while let Some(Reverse((_, i))) = self.heap.pop() {
            let lines = &self.pending[i];
            let (line, at) = self.cursors[i];
            let len = lines.index[line].1;
            self.batch.extend_from_slice(&lines.bytes[at..at + len]);
            self.cursors[i] = (line + 1, at + len);
            if let Some(seq) = next_below(lines, line + 1) {
                self.heap.push(Reverse((seq, i)));
            }
            if self.batch.len() >= BATCH {
                let _ = out.write_all(&self.batch);
                self.batch.clear();
            }
        }
        if !self.batch.is_empty() {
            let _ = out.write_all(&self.batch);
            self.batch.clear();
        }
        for (lines, &(line, at)) in self.pending.iter_mut().zip(&self.cursors) {
            lines.index.drain(..line);
            lines.bytes.drain(..at);
        }
        let _ = out.flush();
    }
}

fn write_loop(shared: &Buffers, out: Box<dyn Write + Send>) {
    let mut out = out;
    let mut writer = Writer::new(shared.per_worker.len());
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        // Stopping: after the last request, so every line is in a buffer.
        let upto = if stopping {
            u64::MAX
        } else {
            shared.next_seq.load(Ordering::Relaxed)
        };
        writer.round(shared, upto, &mut out);
        if stopping {
            break;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(shared: &Buffers, worker: usize, line: &str) {
        shared.push(worker, |b| b.extend_from_slice(line.as_bytes()));
    }

    fn round(writer: &mut Writer, shared: &Buffers, upto: u64) -> String {
        let mut out = Vec::new();
        writer.round(shared, upto, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_of_several_workers_come_out_in_the_order_they_were_buffered() {
        let shared = Buffers::new(3);
        let mut writer = Writer::new(3);
        for (i, worker) in [1, 0, 1, 2, 2, 0, 1].into_iter().enumerate() {
            push(&shared, worker, &format!("{i}\n"));
        }
        assert_eq!(
            round(&mut writer, &shared, u64::MAX),
            "0\n1\n2\n3\n4\n5\n6\n"
        );
        assert_eq!(round(&mut writer, &shared, u64::MAX), "");
    }

    #[test]
    fn a_line_numbered_after_what_the_writer_waits_for_waits_for_the_next_round() {
        let shared = Buffers::new(2);
        let mut writer = Writer::new(2);
        push(&shared, 1, "0\n");
        push(&shared, 0, "1\n");
        push(&shared, 1, "2\n");
        // As if line 1 was still being buffered when the round began.
        assert_eq!(round(&mut writer, &shared, 1), "0\n");
        push(&shared, 0, "3\n");
        push(&shared, 1, "4\n");
        let upto = shared.next_seq.load(Ordering::Relaxed);
        assert_eq!(round(&mut writer, &shared, upto), "1\n2\n3\n4\n");
        // Nothing is held back any more.
        assert!(writer.pending.iter().all(|p| p.bytes.is_empty()));
    }

    #[test]
    fn a_partial_line_is_not_buffered_and_its_number_is_skipped() {
        let shared = Buffers::new(1);
        let mut writer = Writer::new(1);
        push(&shared, 0, "a\n");
        push(&shared, 0, "{\"broken");
        push(&shared, 0, "");
        push(&shared, 0, "b\n");
        assert_eq!(round(&mut writer, &shared, u64::MAX), "a\nb\n");
    }

    #[test]
    fn lines_past_the_buffer_limit_are_dropped_and_counted() {
        let shared = Buffers::new(1);
        let big = "x".repeat(MAX_BUFFERED) + "\n";
        push(&shared, 0, &big);
        push(&shared, 0, "late\n");
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        let mut writer = Writer::new(1);
        assert_eq!(round(&mut writer, &shared, u64::MAX), big);
    }
}
