//! Buffers of the HTTP/1.1 fast path, and the reads that fill them.
//!
//! A connection holds a read buffer only while it has bytes in flight: an
//! idle keep-alive connection waits for readiness with no buffer at all, and
//! buffers go back to a per-thread free list (each worker is one thread), so
//! a busy worker recycles a handful of them and allocates nothing.

use std::cell::RefCell;
use std::io::{self, Read};

use std::future::Future;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

/// Size of a client read buffer (request heads and bodies).
pub const BUF_SIZE: usize = 16 * 1024;
/// Size of a node read buffer: a response head plus a typical body in one
/// read, so it goes to the client in one write (one TCP segment on
/// loopback instead of two for a 16 KiB body).
pub const NODE_BUF_SIZE: usize = 64 * 1024;
/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Buffers kept per thread.
const FREE_MAX: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static FREE_NODE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static FREE_OUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

type FreeList = RefCell<Vec<Box<[u8]>>>;

/// A read buffer: bytes `start..end` of `data` are filled and not consumed.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    /// A client buffer from this thread's free list, or a new one.
    pub fn take() -> Buf {
        Buf::from_list(&FREE, BUF_SIZE)
    }

    /// A node buffer from this thread's free list, or a new one.
    pub fn take_node() -> Buf {
        Buf::from_list(&FREE_NODE, NODE_BUF_SIZE)
    }

    fn from_list(list: &'static std::thread::LocalKey<FreeList>, size: usize) -> Buf {
        let data = list
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; size].into_boxed_slice());
        Buf {
            data,
            start: 0,
            end: 0,
        }
    }

    /// The filled, unconsumed bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops the first `n` unconsumed bytes.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when a read would have no room even after compacting.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// Grows the buffer to hold up to `cap` bytes (for a large head).
    pub fn grow(&mut self, cap: usize) {
        if cap <= self.data.len() {
            return;
        }
        let mut bigger = vec![0u8; cap].into_boxed_slice();
        bigger[..self.len()].copy_from_slice(self.filled());
        self.end -= self.start;
        self.start = 0;
        self.data = bigger;
    }

    /// Capacity of the buffer.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Room to read into, compacting first when the tail is used up.
    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let list = match self.data.len() {
            BUF_SIZE => &FREE,
            NODE_BUF_SIZE => &FREE_NODE,
            _ => return,
        };
        let data = std::mem::take(&mut self.data);
        list.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_MAX {
                f.push(data);
            }
        });
    }
}

/// A reusable output buffer for message heads.
pub struct OutBuf(pub Vec<u8>);

impl OutBuf {
    /// An empty buffer from this thread's free list, or a new one.
    pub fn take() -> OutBuf {
        let v = FREE_OUT
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(4096));
        OutBuf(v)
    }
}

impl Drop for OutBuf {
    fn drop(&mut self) {
        if self.0.capacity() > MAX_HEAD * 2 {
            return;
        }
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        FREE_OUT.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_MAX {
                f.push(v);
            }
        });
    }
}

/// Reads what the socket has into `buf` without waiting. Returns 0 at end
/// of stream (or when `buf` is full), `WouldBlock` when there is nothing.
///
/// A read that does not fill the room proves the socket drained, so the
/// read readiness is cleared on the spot: the next wait goes straight to the
/// reactor instead of costing one more `read` that returns `EAGAIN` (nginx
/// does the same with edge-triggered epoll). Tokio only clears readiness if
/// no new event arrived since it was observed, so no wake-up is lost.
pub fn try_read(stream: &TcpStream, buf: &mut Buf) -> io::Result<usize> {
    let spare = buf.spare();
    let room = spare.len();
    if room == 0 {
        return Ok(0);
    }
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        let sock = socket2::SockRef::from(stream);
        let n = (&*sock).read(spare)?;
        got = n;
        if n > 0 && n < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    let n = match result {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
        Err(e) => return Err(e),
    };
    buf.end += n;
    Ok(n)
}

/// Waits for data and reads it into `buf`; 0 means end of stream.
///
/// The wait registers the task in the socket's single read-waker slot
/// (`poll_read_ready`) rather than a `readable()` waiter list: fewer
/// instructions per wait. Only the one task serving the connection reads
/// from it, so the slot is never contended.
pub async fn read(stream: &TcpStream, buf: &mut Buf) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read(stream, cx, buf)).await
}

/// [`read`], polled.
pub fn poll_read(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut Buf,
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(stream.poll_read_ready(cx))?;
        match try_read(stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return Poll::Ready(other),
        }
    }
}

/// A client connection the fast path serves: plain TCP, or TLS over it.
pub trait ClientStream:
    AsyncRead + AsyncWrite + super::guard::ResetOnClose + Unpin + Send + 'static
{
    /// Whether the stream can wait for data without a buffer (plain TCP):
    /// then an idle connection holds none.
    const READINESS: bool;

    /// Waits until a read would not block. Only meaningful when
    /// [`ClientStream::READINESS`]; other streams return at once.
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Reads what is available without waiting (`WouldBlock` when nothing
    /// is). Streams without readiness wait instead.
    fn read_now(&mut self, buf: &mut Buf) -> impl Future<Output = io::Result<usize>> + Send;

    /// Waits for data and reads it into `buf`; 0 means end of stream.
    fn read_into(&mut self, buf: &mut Buf) -> impl Future<Output = io::Result<usize>> + Send;

    /// Like [`ClientStream::read_into`], polled: for watching the client
    /// while the exchange waits on its node. Plain TCP registers the task in
    /// the socket's single read-waker slot (no waiter list, no allocation,
    /// no system call while the client is quiet), which is cheaper per
    /// request than a `readable()` future.
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut Buf) -> Poll<io::Result<usize>>;

    /// True once a write failed because the client took nothing for the
    /// send timeout (see [`super::guard::SendGuard`]).
    fn send_timed_out(&self) -> bool {
        false
    }
}

impl ClientStream for TcpStream {
    const READINESS: bool = true;

    async fn ready(&self) -> io::Result<()> {
        // The read-waker slot, as in `read`.
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    async fn read_now(&mut self, buf: &mut Buf) -> io::Result<usize> {
        try_read(self, buf)
    }

    async fn read_into(&mut self, buf: &mut Buf) -> io::Result<usize> {
        read(self, buf).await
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut Buf) -> Poll<io::Result<usize>> {
        poll_read(self, cx, buf)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    const READINESS: bool = false;

    async fn ready(&self) -> io::Result<()> {
        Ok(())
    }

    async fn read_now(&mut self, buf: &mut Buf) -> io::Result<usize> {
        self.read_into(buf).await
    }

    async fn read_into(&mut self, buf: &mut Buf) -> io::Result<usize> {
        let spare = buf.spare();
        if spare.is_empty() {
            return Ok(0);
        }
        let n = tokio::io::AsyncReadExt::read(self, spare).await?;
        buf.end += n;
        Ok(n)
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut Buf) -> Poll<io::Result<usize>> {
        let spare = buf.spare();
        if spare.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut read_buf = tokio::io::ReadBuf::new(spare);
        std::task::ready!(std::pin::Pin::new(self).poll_read(cx, &mut read_buf))?;
        let n = read_buf.filled().len();
        buf.end += n;
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_and_compacting_keep_the_bytes_in_order() {
        let mut b = Buf::take();
        let n = b.data.len();
        b.data[..n].fill(b'x');
        b.end = n;
        b.data[n - 2] = b'a';
        b.data[n - 1] = b'b';
        b.consume(n - 2);
        assert_eq!(b.filled(), b"ab");
        let spare = b.spare();
        assert_eq!(spare.len(), n - 2);
        assert_eq!(b.filled(), b"ab");
        b.consume(2);
        assert!(b.is_empty());
    }

    #[test]
    fn growing_keeps_the_content() {
        let mut b = Buf::take();
        b.data[..3].copy_from_slice(b"abc");
        b.end = 3;
        b.consume(1);
        b.grow(MAX_HEAD);
        assert_eq!(b.filled(), b"bc");
        assert_eq!(b.capacity(), MAX_HEAD);
    }

    #[tokio::test]
    async fn reads_report_data_and_end_of_stream() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut b = Buf::take();
        let mut total = 0;
        while total < 5 {
            total += read(&server, &mut b).await.unwrap();
        }
        assert_eq!(b.filled(), b"hello");
        // Readiness was cleared after the short read: the next read waits
        // for new data rather than spinning.
        client.write_all(b" world").await.unwrap();
        while b.len() < 11 {
            read(&server, &mut b).await.unwrap();
        }
        assert_eq!(b.filled(), b"hello world");
        drop(client);
        assert_eq!(read(&server, &mut b).await.unwrap(), 0);
    }
}
