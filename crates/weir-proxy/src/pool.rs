//! Upstream connections: connect (TCP, optionally TLS), HTTP/1.1 handshake,
//! and a keep-alive pool per node.
//!
//! The pool is our own rather than hyper-util's so the proxy can connect
//! *before* it hands the request body over: a connect failure leaves the
//! request intact and it can be retried on another node, whatever its method.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::body::ProxyBody;

/// Read/write buffer bound of an HTTP/1.1 connection, both sides.
pub const MAX_BUF: usize = 64 * 1024;

/// Why a connection could not be established.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// DNS resolution failed or returned nothing.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// TCP connect (or TLS handshake) took longer than the connect timeout.
    #[error("connect to {0} timed out")]
    Timeout(String),
    /// TCP connect refused / unreachable.
    #[error("connect to {addr} failed: {source}")]
    Io {
        /// Target.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// TLS handshake failed (certificate not trusted, name mismatch...).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// Target.
        addr: String,
        /// TLS error.
        source: std::io::Error,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        /// Target.
        addr: String,
        /// hyper error.
        source: hyper::Error,
    },
}

/// Where and how to connect to one node.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host (IP or DNS name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS settings when the upstream scheme is https.
    pub tls: Option<TlsTarget>,
}

/// TLS client settings for one endpoint.
#[derive(Clone)]
pub struct TlsTarget {
    /// Name verified against the certificate and sent as SNI.
    pub server_name: ServerName<'static>,
    /// Shared client configuration (roots, ALPN http/1.1).
    pub config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A connection kind the pool can hold: it must be able to tell, without
/// waiting, whether an idle connection is still worth reusing.
pub trait Reusable {
    /// False when the peer closed the connection (or it is otherwise
    /// unusable) while it sat in the pool.
    fn still_usable(&mut self) -> bool;
}

/// A general-path HTTP/1.1 connection to a node: hyper's request sender
/// and the task driving the connection.
pub struct H1Client {
    /// hyper's request sender.
    pub sender: SendRequest<ProxyBody>,
    task: AbortHandle,
}

impl H1Client {
    /// Closes the connection now, whatever it is doing: e.g. still sending
    /// a request body that the node answered without reading (and may never
    /// read). Dropping the sender alone would let the task go on writing.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Reusable for H1Client {
    fn still_usable(&mut self) -> bool {
        self.sender.is_ready()
    }
}

impl Reusable for TcpStream {
    /// An idle HTTP/1.1 connection has nothing to say: readable means the
    /// node closed it (or sent garbage). Checking readiness costs no system
    /// call unless the reactor saw an event.
    fn still_usable(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.poll_read_ready(&mut cx) {
            std::task::Poll::Pending => true,
            std::task::Poll::Ready(Err(_)) => false,
            std::task::Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// An idle keep-alive connection.
struct IdleConn<C> {
    conn: C,
    idle_since: Instant,
    uses: u32,
}

/// A connection checked out for one request.
pub struct PooledConn {
    /// hyper's request sender.
    pub sender: SendRequest<ProxyBody>,
    /// The task driving the connection.
    task: AbortHandle,
    /// Requests already sent on this connection (before this one).
    pub uses: u32,
    /// True when the connection was taken from the pool (it may have been
    /// closed by the peer in the meantime).
    pub reused: bool,
}

/// Pool limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Idle connections kept.
    pub size: usize,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// Connections are closed after this many requests.
    pub max_requests: u32,
}

/// Keep-alive connections to one node: one idle stack per data-plane
/// worker, so a connection is only ever used by the worker whose runtime
/// drives its socket. Stacks allocate nothing until a connection is pooled,
/// so thousands of discovered nodes cost little memory.
///
/// The stack is last-in first-out, as nginx's keepalive cache: the most
/// recently used connection (warm in cache, surely still open) is reused
/// first, and connections beyond what the load needs sink to the bottom,
/// where [`take`](ConnPool::take) closes them once they pass the idle
/// timeout. Its lock is only ever taken by one thread (the worker), so it
/// costs one uncontended atomic each way.
///
/// `C` is hyper's request sender for the general path, or a bare
/// `TcpStream` for the HTTP/1.1 fast path.
pub struct ConnPool<C = H1Client> {
    idle: Box<[Mutex<VecDeque<IdleConn<C>>>]>,
    limits: PoolLimits,
}

impl<C: Reusable> ConnPool<C> {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> ConnPool<C> {
        let workers = crate::workers::count();
        ConnPool {
            idle: (0..workers).map(|_| Mutex::new(VecDeque::new())).collect(),
            limits,
        }
    }

    fn stack(&self) -> std::sync::MutexGuard<'_, VecDeque<IdleConn<C>>> {
        let i = crate::workers::current() % self.idle.len().max(1);
        // A poisoned stack still holds valid connections.
        self.idle[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the most recently pooled live connection and the number of
    /// requests it already carried, dropping dead or expired ones (and the
    /// oldest idle connection once it has expired).
    pub fn take(&self) -> Option<(C, u32)> {
        let mut stack = self.stack();
        if stack.is_empty() {
            return None;
        }
        let now = Instant::now();
        let fresh =
            |idle: &IdleConn<C>| now.duration_since(idle.idle_since) < self.limits.idle_timeout;
        if stack.front().is_some_and(|oldest| !fresh(oldest)) {
            stack.pop_front();
        }
        while let Some(mut idle) = stack.pop_back() {
            if fresh(&idle) && idle.conn.still_usable() {
                return Some((idle.conn, idle.uses));
            }
        }
        None
    }

    /// Returns a connection once its previous exchange is complete. A
    /// connection at its request limit is closed; a full pool closes its
    /// oldest idle connection to make room, as nginx does.
    pub fn put(&self, conn: C, uses: u32) {
        if uses >= self.limits.max_requests || self.limits.size == 0 {
            return;
        }
        let mut stack = self.stack();
        while stack.len() >= self.limits.size {
            stack.pop_front();
        }
        stack.push_back(IdleConn {
            conn,
            idle_since: Instant::now(),
            uses,
        });
    }

    /// Idle connections currently held (all workers).
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|q| q.lock().map_or_else(|p| p.into_inner().len(), |q| q.len()))
            .sum()
    }
}

impl PooledConn {
    /// The connection, to hand back to the pool after its exchange (with
    /// the count of requests it has carried).
    pub fn into_client(self) -> H1Client {
        H1Client {
            sender: self.sender,
            task: self.task,
        }
    }
}

impl ConnPool<H1Client> {
    /// Takes a live idle hyper connection.
    pub fn checkout(&self) -> Option<PooledConn> {
        self.take().map(|(client, uses)| PooledConn {
            sender: client.sender,
            task: client.task,
            uses,
            reused: true,
        })
    }

    /// Returns a hyper connection once its previous exchange is complete.
    pub fn give_back(&self, client: H1Client, uses: u32) {
        if !client.sender.is_closed() {
            self.put(client, uses);
        }
    }
}

/// Opens a plain TCP connection to a node, for the HTTP/1.1 fast path
/// (which speaks HTTP on it itself).
pub async fn connect_tcp(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let display = || format!("{}:{}", ep.host, ep.port);
    let fut = async {
        let addr = resolve(&ep.host, ep.port).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io {
                addr: display(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(display())),
    }
}

/// Opens a new HTTP/1.1 connection (TCP, then TLS if configured).
pub async fn connect(ep: &Endpoint, timeout: Duration) -> Result<PooledConn, ConnectError> {
    let display = format!("{}:{}", ep.host, ep.port);
    let fut = async {
        let addr = resolve(&ep.host, ep.port).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io {
                addr: display.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        match &ep.tls {
            None => handshake(TokioIo::new(tcp), &display).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|source| ConnectError::Tls {
                        addr: display.clone(),
                        source,
                    })?;
                handshake(TokioIo::new(stream), &display).await
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(display)),
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| ConnectError::Resolve {
        host: host.to_owned(),
        reason: "no address".into(),
    })
}

async fn handshake<T>(io: TokioIo<T>, display: &str) -> Result<PooledConn, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new()
        // Bounded buffering per upstream connection: a large body streams
        // through in 64 KiB steps instead of hyper's default 400 KiB.
        .max_buf_size(MAX_BUF)
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Handshake {
            addr: display.to_owned(),
            source,
        })?;
    let peer = display.to_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %peer, error = %e, "upstream connection ended with error");
        }
    })
    .abort_handle();
    Ok(PooledConn {
        sender,
        task,
        uses: 0,
        reused: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled "connection" that is just a name and a liveness flag.
    #[derive(Debug, PartialEq)]
    struct Fake(&'static str, bool);

    impl Reusable for Fake {
        fn still_usable(&mut self) -> bool {
            self.1
        }
    }

    fn limits(size: usize, idle_timeout: Duration) -> PoolLimits {
        PoolLimits {
            size,
            idle_timeout,
            max_requests: 100,
        }
    }

    #[test]
    fn the_most_recently_pooled_connection_is_reused_first() {
        let pool = ConnPool::new(limits(8, Duration::from_secs(60)));
        pool.put(Fake("a", true), 1);
        pool.put(Fake("b", true), 2);
        assert_eq!(pool.take(), Some((Fake("b", true), 2)));
        assert_eq!(pool.take(), Some((Fake("a", true), 1)));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn dead_connections_are_dropped_on_the_way_down() {
        let pool = ConnPool::new(limits(8, Duration::from_secs(60)));
        pool.put(Fake("live", true), 0);
        pool.put(Fake("closed by the node", false), 0);
        assert_eq!(pool.take(), Some((Fake("live", true), 0)));
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn a_full_pool_closes_its_oldest_connection() {
        let pool = ConnPool::new(limits(2, Duration::from_secs(60)));
        pool.put(Fake("oldest", true), 0);
        pool.put(Fake("middle", true), 0);
        pool.put(Fake("newest", true), 0);
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(pool.take().map(|c| c.0 .0), Some("newest"));
        assert_eq!(pool.take().map(|c| c.0 .0), Some("middle"));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn size_zero_pools_nothing_and_spent_connections_are_not_pooled() {
        let none = ConnPool::new(limits(0, Duration::from_secs(60)));
        none.put(Fake("a", true), 0);
        assert_eq!(none.idle_count(), 0);

        let pool = ConnPool::new(limits(8, Duration::from_secs(60)));
        pool.put(Fake("spent", true), 100);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn expired_connections_are_never_reused_and_the_oldest_is_swept() {
        let pool = ConnPool::new(limits(8, Duration::ZERO));
        pool.put(Fake("a", true), 0);
        pool.put(Fake("b", true), 0);
        assert_eq!(pool.take(), None);
        assert_eq!(pool.idle_count(), 0);

        // Under steady reuse the bottom of the stack is still swept once it
        // expires: each take closes the oldest idle connection if expired.
        // The surplus connection is made older than the idle timeout by
        // moving its idle time back, not by waiting for it.
        let idle_timeout = Duration::from_secs(60);
        let pool = ConnPool::new(limits(8, idle_timeout));
        pool.put(Fake("surplus", true), 0);
        for idle in pool.stack().iter_mut() {
            idle.idle_since = Instant::now()
                .checked_sub(idle_timeout + Duration::from_secs(1))
                .expect("a monotonic clock older than a minute");
        }
        pool.put(Fake("hot", true), 0);
        assert_eq!(pool.take().map(|c| c.0 .0), Some("hot"));
        assert_eq!(
            pool.idle_count(),
            0,
            "the expired surplus connection was closed"
        );
    }
}
