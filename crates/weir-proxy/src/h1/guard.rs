//! `http.send_timeout`: a client connection whose writes make no progress
//! for the limit (the client stopped reading) fails them, so whatever is
//! sending to it (the fast path's relay, hyper's connection) ends and
//! closes it, and with it the node connection the response comes from.
//!
//! The guard wraps the client stream on both paths. A write that goes
//! through costs one flag store; the timer is armed only when a write (or a
//! flush) returns `Pending` after progress (see [`crate::stall`]). Reads pass
//! straight through.
//!
//! When the guard fires, the socket is set to close with a reset
//! (`SO_LINGER` 0, nginx's `reset_timedout_connection`): what the client
//! never took is dropped at once instead of keeping the socket (and its
//! send buffer) in `FIN-WAIT` for as long as the client stays.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::buf::{Buf, ClientStream};
use crate::stall::Stall;

/// A client stream whose writes fail once they have made no progress for
/// the send timeout.
pub struct SendGuard<S> {
    inner: S,
    stall: Stall,
    /// The last flush returned `Pending`: its completion is progress (a
    /// flush that had nothing to do is not).
    flush_waiting: bool,
    timed_out: bool,
    /// Set when the guard fires, for whoever logs the connection's requests
    /// (the general path's response bodies).
    fired: Option<Arc<AtomicBool>>,
}

impl<S> SendGuard<S> {
    /// Guards `inner` with `limit`; `fired` is set when the guard fires.
    pub fn new(inner: S, limit: Duration, fired: Option<Arc<AtomicBool>>) -> SendGuard<S> {
        SendGuard {
            inner,
            stall: Stall::new(limit),
            flush_waiting: false,
            timed_out: false,
            fired,
        }
    }

    /// The stream, unguarded.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Called with a write's outcome: progress, a wait, or (the wait has
    /// lasted the limit) the timeout error.
    fn guard<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>>
    where
        S: ResetOnClose,
    {
        match polled {
            Poll::Ready(r) => {
                self.stall.progress();
                Poll::Ready(r)
            }
            Poll::Pending => self.wait(cx),
        }
    }

    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>>
    where
        S: ResetOnClose,
    {
        if !self.stall.stalled(cx) {
            return Poll::Pending;
        }
        self.timed_out = true;
        self.inner.reset_on_close();
        if let Some(f) = &self.fired {
            f.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Err(timed_out()))
    }
}

/// A client connection that can be told to close with a reset (RST)
/// rather than a FIN, discarding unsent data.
pub trait ResetOnClose {
    /// Sets `SO_LINGER` 0 on the socket; failures are ignored (the close
    /// is then an ordinary one).
    fn reset_on_close(&self);
}

impl ResetOnClose for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        if let Err(e) = self.set_zero_linger() {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0");
        }
    }
}

impl ResetOnClose for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
    }
}

impl<S: ResetOnClose> ResetOnClose for SendGuard<S> {
    fn reset_on_close(&self) {
        self.inner.reset_on_close();
    }
}

impl<S: ResetOnClose> ResetOnClose for super::fallback::Prefixed<S> {
    fn reset_on_close(&self) {
        self.get_ref().reset_on_close();
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "send_timeout: the client took nothing for the whole send timeout",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for SendGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + ResetOnClose + Unpin> AsyncWrite for SendGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(timed_out()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                if std::mem::take(&mut this.flush_waiting) {
                    this.stall.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.flush_waiting = true;
                this.wait(cx)
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            // Nothing more goes out: the connection is dropped as it is.
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.wait(cx),
        }
    }
}

impl<S: ClientStream> ClientStream for SendGuard<S> {
    const READINESS: bool = S::READINESS;

    fn ready(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.inner.ready()
    }

    fn read_now(
        &mut self,
        buf: &mut Buf,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send {
        self.inner.read_now(buf)
    }

    fn read_into(
        &mut self,
        buf: &mut Buf,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send {
        self.inner.read_into(buf)
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut Buf) -> Poll<io::Result<usize>> {
        self.inner.poll_read_into(cx, buf)
    }

    fn send_timed_out(&self) -> bool {
        self.timed_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    /// A connected pair with small socket buffers, so a writer soon waits
    /// on the reader.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let client = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(64 * 1024)
            .unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_peer_that_reads_nothing_fails_the_write_after_the_limit() {
        let (_client, server) = pair().await;
        let fired = Arc::new(AtomicBool::new(false));
        let limit = Duration::from_millis(300);
        let mut g = SendGuard::new(server, limit, Some(fired.clone()));
        let chunk = vec![0u8; 1 << 20];
        let started = tokio::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = g.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .expect("the guard never fired");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
        assert!(g.send_timed_out() && fired.load(Ordering::Relaxed));
        // Every later write fails at once.
        assert!(g.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn a_peer_that_reads_slowly_but_steadily_is_not_cut_off() {
        let (client, server) = pair().await;
        let limit = Duration::from_millis(400);
        let mut g = SendGuard::new(server, limit, None);
        const TOTAL: usize = 2 << 20;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut b = vec![0u8; 1 << 20];
            while got < TOTAL {
                // Drains what arrived every 100 ms: each drain unblocks
                // the writer, well within the limit.
                tokio::time::sleep(Duration::from_millis(100)).await;
                loop {
                    match client.try_read(&mut b) {
                        Ok(0) => return got,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            got
        });
        let chunk = vec![0u8; 1 << 20];
        let started = tokio::time::Instant::now();
        let writes = tokio::time::timeout(Duration::from_secs(60), async {
            for _ in 0..TOTAL / chunk.len() {
                g.write_all(&chunk).await?;
            }
            Ok::<_, io::Error>(())
        });
        writes.await.expect("writes hung").expect("a write failed");
        assert_eq!(reader.await.unwrap(), TOTAL);
        assert!(!g.send_timed_out());
        // The writer waited on the reader for longer than the limit in
        // all: only the progress in between kept the guard from firing.
        assert!(started.elapsed() > limit * 2, "{:?}", started.elapsed());
    }
}
