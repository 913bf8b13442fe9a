//! Upstream connections: connect (TCP, optionally TLS), HTTP/1.1 handshake,
//! and a lock-free keep-alive pool per node.
//!
//! The pool is our own rather than hyper-util's so the proxy can connect
//! *before* it hands the request body over: a connect failure leaves the
//! request intact and it can be retried on another node, whatever its method.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

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

impl Reusable for SendRequest<ProxyBody> {
    fn still_usable(&mut self) -> bool {
        self.is_ready()
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

/// Keep-alive connections to one node: one lock-free queue per data-plane
/// worker, so a connection is only ever used by the worker whose runtime
/// drives its socket. Queues allocate nothing until a connection is pooled,
/// so thousands of discovered nodes cost little memory.
///
/// `C` is hyper's request sender for the general path, or a bare
/// `TcpStream` for the HTTP/1.1 fast path.
pub struct ConnPool<C = SendRequest<ProxyBody>> {
    idle: Box<[WorkerQueue<C>]>,
    limits: PoolLimits,
}

struct WorkerQueue<C> {
    conns: SegQueue<IdleConn<C>>,
    len: AtomicUsize,
}

impl<C> Default for WorkerQueue<C> {
    fn default() -> Self {
        WorkerQueue {
            conns: SegQueue::new(),
            len: AtomicUsize::new(0),
        }
    }
}

impl<C: Reusable> ConnPool<C> {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> ConnPool<C> {
        let workers = crate::workers::count();
        ConnPool {
            idle: (0..workers).map(|_| WorkerQueue::default()).collect(),
            limits,
        }
    }

    fn queue(&self) -> &WorkerQueue<C> {
        let i = crate::workers::current() % self.idle.len().max(1);
        &self.idle[i]
    }

    /// Takes a live idle connection and the number of requests it already
    /// carried, dropping dead or expired ones.
    pub fn take(&self) -> Option<(C, u32)> {
        let q = self.queue();
        while let Some(mut idle) = q.conns.pop() {
            q.len.fetch_sub(1, Ordering::Relaxed);
            if idle.idle_since.elapsed() < self.limits.idle_timeout && idle.conn.still_usable() {
                return Some((idle.conn, idle.uses));
            }
        }
        None
    }

    /// Returns a connection once its previous exchange is complete. A full
    /// pool or a connection at its request limit just closes it.
    pub fn put(&self, conn: C, uses: u32) {
        if uses >= self.limits.max_requests {
            return;
        }
        let q = self.queue();
        if q.len.fetch_add(1, Ordering::Relaxed) >= self.limits.size {
            q.len.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        q.conns.push(IdleConn {
            conn,
            idle_since: Instant::now(),
            uses,
        });
    }

    /// Idle connections currently held (all workers).
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|q| q.len.load(Ordering::Relaxed))
            .sum()
    }
}

impl ConnPool<SendRequest<ProxyBody>> {
    /// Takes a live idle hyper connection.
    pub fn checkout(&self) -> Option<PooledConn> {
        self.take().map(|(sender, uses)| PooledConn {
            sender,
            uses,
            reused: true,
        })
    }

    /// Returns a hyper connection once its previous exchange is complete.
    pub fn give_back(&self, sender: SendRequest<ProxyBody>, uses: u32) {
        if !sender.is_closed() {
            self.put(sender, uses);
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
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %peer, error = %e, "upstream connection ended with error");
        }
    });
    Ok(PooledConn {
        sender,
        uses: 0,
        reused: false,
    })
}
