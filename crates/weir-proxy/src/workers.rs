//! The data plane's threads: one single-threaded tokio runtime per worker,
//! each accepting on its own `SO_REUSEPORT` socket, so a connection and
//! everything it does (upstream connections included) stay on one core with
//! no cross-thread wake-ups.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Number of data-plane workers (1 when weir runs on an ambient runtime).
pub fn count() -> usize {
    WORKERS.load(Ordering::Relaxed).max(1)
}

/// Index of the worker running on this thread (0 elsewhere).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// Running worker threads.
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads, each with its own current-thread runtime,
    /// busy polling through idle gaps up to `busy_poll` when set (see
    /// [`crate::busy_poll`]).
    pub fn start(n: usize, busy_poll: Option<Duration>) -> std::io::Result<Workers> {
        let n = n.max(1);
        WORKERS.store(n, Ordering::Relaxed);
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            if busy_poll.is_some() {
                crate::busy_poll::install(&mut builder);
            }
            let runtime = builder.build()?;
            handles.push(runtime.handle().clone());
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            stops.push(stop_tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("weir-worker-{i}"))
                    .spawn(move || {
                        CURRENT.with(|c| c.set(i));
                        runtime.block_on(async {
                            if let Some(max) = busy_poll {
                                tokio::spawn(crate::busy_poll::run(max));
                            }
                            let _ = stop_rx.await;
                        });
                    })?,
            );
        }
        Ok(Workers {
            handles,
            stops,
            threads,
        })
    }

    /// One runtime handle per worker.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops the worker threads (after the server has drained).
    pub fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
