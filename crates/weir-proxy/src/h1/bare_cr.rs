//! Bare CR in a request head on the general path's HTTP/1.1 connections.
//!
//! hyper parses a head that arrived over several reads only once it holds
//! its end (`\r\n\r\n` or `\n\n`, its `is_complete_fast`); a head whose
//! lines end in bare CRs has none, so hyper waited for the header timeout
//! and closed the connection without an answer. The fast path answers 400
//! at once. This reader does the same for hyper: while a request head is
//! expected, a CR not followed by LF is handed to hyper followed by
//! `\0\r\n\r\n`, which ends the head where hyper's parser refuses it (a CR
//! must be followed by LF), so hyper answers 400 and closes, as for any
//! malformed head; nothing is read from the client after it.
//!
//! A head is expected from the start of the connection until the end of
//! the first head, and again once the requests hyper started since are all
//! done. Never on an HTTP/2 connection or after an upgrade (the bytes are
//! not HTTP/1.1 then). Request bodies are not looked at, except the tail
//! of a body the route did not read that hyper drains after the response:
//! there an injected head only ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper reads after a bare CR: a byte its parser refuses after a CR,
/// then the end of a head, so it parses (and refuses) the head at once.
const POISON: &[u8] = b"\0\r\n\r\n";

/// The connection's requests, as the general path counts them.
#[derive(Default)]
pub struct Requests {
    /// Requests begun.
    pub begun: AtomicU64,
    /// Requests in flight.
    pub in_flight: AtomicUsize,
    /// The connection is HTTP/2, or was upgraded: its bytes are not
    /// HTTP/1.1 heads.
    pub not_http1: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a head: `last` holds its last bytes (for its end), and
    /// whether the last byte read was a CR.
    Head { last: u32 },
    /// The head ended when `begun` requests had begun: the next head is
    /// expected once a request began since and none is in flight.
    Between { begun: u64 },
    /// A bare CR was handed over with [`POISON`] still to hand (`at` bytes
    /// of it given so far).
    Poisoning { at: usize },
    /// Nothing more is read from the client.
    Ended,
    /// Not HTTP/1.1 (any more): bytes pass untouched.
    Off,
}

/// A client stream whose reads are watched for a bare CR in a request head.
pub struct BareCrCheck<S> {
    inner: S,
    requests: Arc<Requests>,
    state: State,
}

impl<S> BareCrCheck<S> {
    /// Watches the reads of `inner`, a connection hyper serves HTTP/1.1 on
    /// (or may, for h2c prior knowledge: see [`Requests::not_http1`]).
    pub fn new(inner: S, requests: Arc<Requests>) -> BareCrCheck<S> {
        BareCrCheck {
            inner,
            requests,
            state: State::Head { last: 0 },
        }
    }

    /// Updates the state for the bytes of `filled` that were just read;
    /// returns where a bare CR ends the bytes hyper may see (after the CR),
    /// if one does.
    fn scan(&mut self, filled: &[u8]) -> Option<usize> {
        for (i, &b) in filled.iter().enumerate() {
            let State::Head { last } = self.state else {
                if self.head_expected() {
                    self.state = State::Head { last: 0 };
                    return self.scan_from(filled, i);
                }
                return None;
            };
            if last & 0xff == u32::from(b'\r') && b != b'\n' {
                // The CR was handed over already when it ended a read.
                self.state = State::Poisoning { at: 0 };
                return Some(i);
            }
            let last = (last << 8) | u32::from(b);
            self.state = if last == u32::from_be_bytes(*b"\r\n\r\n") || last & 0xffff == 0x0a0a {
                State::Between {
                    begun: self.requests.begun.load(Ordering::Relaxed),
                }
            } else {
                State::Head { last }
            };
        }
        None
    }

    fn scan_from(&mut self, filled: &[u8], from: usize) -> Option<usize> {
        self.scan(&filled[from..]).map(|at| at + from)
    }

    /// True when hyper waits for a new head: a request began since the
    /// last head ended and none is in flight.
    fn head_expected(&mut self) -> bool {
        match self.state {
            State::Between { begun } => {
                if self.requests.not_http1.load(Ordering::Relaxed) {
                    self.state = State::Off;
                    return false;
                }
                self.requests.begun.load(Ordering::Relaxed) > begun
                    && self.requests.in_flight.load(Ordering::Relaxed) == 0
            }
            _ => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BareCrCheck<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Off => return Pin::new(&mut this.inner).poll_read(cx, buf),
            State::Ended => return Poll::Ready(Ok(())),
            State::Poisoning { at } => {
                let n = (POISON.len() - at).min(buf.remaining());
                buf.put_slice(&POISON[at..at + n]);
                this.state = if at + n == POISON.len() {
                    State::Ended
                } else {
                    State::Poisoning { at: at + n }
                };
                return Poll::Ready(Ok(()));
            }
            State::Between { .. } if this.requests.not_http1.load(Ordering::Relaxed) => {
                this.state = State::Off;
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            State::Head { .. } | State::Between { .. } => {}
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if let Some(at) = this.scan(new) {
            // Hyper gets the bytes up to the bare CR, then the poison.
            let keep = before + at;
            buf.set_filled(keep);
            let n = POISON.len().min(buf.remaining());
            buf.put_slice(&POISON[..n]);
            this.state = if n == POISON.len() {
                State::Ended
            } else {
                State::Poisoning { at: n }
            };
            tracing::debug!("bare CR in a request head: refused");
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BareCrCheck<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What hyper would read through the check when the client sends
    /// `pieces` one after the other, with `requests` as the connection
    /// counts them.
    async fn read_through(pieces: &[&[u8]], requests: Arc<Requests>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut check = BareCrCheck::new(server, requests);
        let mut got = Vec::new();
        for p in pieces {
            client.write_all(p).await.unwrap();
            let mut b = [0u8; 1024];
            let n = check.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
            // The poison may come in a read of its own.
            while matches!(check.state, State::Poisoning { .. }) {
                let n = check.read(&mut b).await.unwrap();
                got.extend_from_slice(&b[..n]);
            }
        }
        got
    }

    #[tokio::test]
    async fn a_bare_cr_in_a_head_over_several_reads_ends_it_for_hyper() {
        let got = read_through(&[b"GET / HTTP/1.1\r", b"Host: a\r\r"], Arc::default()).await;
        assert_eq!(got, b"GET / HTTP/1.1\r\0\r\n\r\n");
        let got = read_through(&[b"GET / HTTP/1.1\r\nHost: a\rX: b\r\r"], Arc::default()).await;
        assert_eq!(got, b"GET / HTTP/1.1\r\nHost: a\r\0\r\n\r\n");
    }

    #[tokio::test]
    async fn bodies_and_heads_with_crlf_pass_untouched() {
        let requests = Arc::new(Requests::default());
        let pieces: [&[u8]; 3] = [
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n",
            b"\r\na\rb\r",
            b"\rxyz",
        ];
        let got = read_through(&pieces, requests).await;
        assert_eq!(got, pieces.concat());
    }

    #[tokio::test]
    async fn the_next_head_is_checked_once_the_request_is_done() {
        let requests = Arc::new(Requests::default());
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut check = BareCrCheck::new(server, requests.clone());
        let mut b = [0u8; 1024];
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _ = check.read(&mut b).await.unwrap();
        // hyper starts the request; its body bytes pass.
        requests.begun.fetch_add(1, Ordering::Relaxed);
        requests.in_flight.fetch_add(1, Ordering::Relaxed);
        client.write_all(b"x\ry").await.unwrap();
        let n = check.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"x\ry");
        // Done: the next head is watched.
        requests.in_flight.fetch_sub(1, Ordering::Relaxed);
        client.write_all(b"GET /\rx").await.unwrap();
        let n = check.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"GET /\r\0\r\n\r\n");
        assert_eq!(check.read(&mut b).await.unwrap(), 0, "nothing after");
    }

    #[tokio::test]
    async fn nothing_is_checked_on_http2_or_after_an_upgrade() {
        let requests = Arc::new(Requests::default());
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut check = BareCrCheck::new(server, requests.clone());
        let mut b = [0u8; 1024];
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let _ = check.read(&mut b).await.unwrap();
        requests.begun.fetch_add(1, Ordering::Relaxed);
        requests.not_http1.store(true, Ordering::Relaxed);
        client.write_all(b"\x00\x00\x04\r\x01").await.unwrap();
        let n = check.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"\x00\x00\x04\r\x01");
    }
}
