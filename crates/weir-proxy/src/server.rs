//! Listeners: accept, optional TLS (SNI + ALPN), HTTP/1.1 on the fast path
//! (`h1/`), HTTP/2 and whatever the fast path hands over via hyper-util's
//! auto builder, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::Either;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use weir_config::{HttpConfig, Listener};

use crate::forward::ConnInfo;
use crate::snapshot::ProxyState;

/// A bound, not yet serving, listener: one socket per worker, sharing the
/// address through `SO_REUSEPORT` so the kernel spreads connections.
pub struct BoundListener {
    /// Its configuration.
    pub config: Listener,
    /// The sockets (one per worker), not yet registered with a runtime.
    pub sockets: Vec<std::net::TcpListener>,
    /// The address the OS gave (port 0 resolved).
    pub local: SocketAddr,
}

/// Binds every configured listener `copies` times, failing with the address
/// at fault.
pub fn bind(listeners: &[Listener], copies: usize) -> anyhow::Result<Vec<BoundListener>> {
    let mut out = Vec::with_capacity(listeners.len());
    for l in listeners {
        let mut addr: SocketAddr = l
            .address
            .parse()
            .with_context(|| format!("listener address {:?}", l.address))?;
        let mut sockets = Vec::with_capacity(copies);
        for _ in 0..copies.max(1) {
            let socket =
                reuseport_listener(addr).with_context(|| format!("cannot listen on {addr}"))?;
            // Port 0: the first socket picks the port, the others join it.
            addr = socket.local_addr()?;
            sockets.push(socket);
        }
        out.push(BoundListener {
            config: l.clone(),
            sockets,
            local: addr,
        });
    }
    Ok(out)
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The running data plane.
pub struct ProxyServer {
    stop_accepting: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    graceful: Arc<GracefulShutdown>,
    /// Addresses actually listened on, in configuration order.
    pub local_addrs: Vec<SocketAddr>,
}

impl ProxyServer {
    /// Starts serving on every bound listener: one accept loop per socket,
    /// each on its worker's runtime (or on the current runtime when
    /// `workers` is empty).
    pub fn start(
        state: Arc<ProxyState>,
        bound: Vec<BoundListener>,
        http: &HttpConfig,
        workers: &[tokio::runtime::Handle],
    ) -> anyhow::Result<ProxyServer> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut accept_tasks = Vec::new();
        let mut local_addrs = Vec::new();
        let ambient = tokio::runtime::Handle::try_current().context("no tokio runtime")?;
        for b in bound {
            let tls = if b.config.tls {
                let cfg = crate::tls::server_config(state.clone(), b.config.http2)
                    .context("building the TLS configuration")?;
                Some(TlsAcceptor::from(cfg))
            } else {
                None
            };
            // HTTP/1.1 is served on the fast path; the general path's
            // builder serves what it hands over.
            let fast = Arc::new(crate::h1::H1Context {
                state: state.clone(),
                builder: http_builder(http),
                http1: http1_builder(http),
                http2: http2_builder(),
                h2c: b.config.http2 && !b.config.tls,
                header_timeout: Duration::from_secs_f64(http.header_timeout),
                body_timeout: Duration::from_secs_f64(http.body_timeout),
                send_timeout: Duration::from_secs_f64(http.send_timeout),
                tunnel_idle_timeout: Duration::from_secs_f64(http.tunnel_idle_timeout),
                enabled: http.fast_path,
                stop: stop_rx.clone(),
            });
            local_addrs.push(b.local);
            tracing::info!(address = %b.local, tls = b.config.tls, http2 = b.config.http2, workers = b.sockets.len(), "proxy listening");
            for (i, socket) in b.sockets.into_iter().enumerate() {
                let runtime = workers.get(i).unwrap_or(&ambient);
                let (local, tls, fast) = (b.local, tls.clone(), fast.clone());
                let (graceful, stop) = (graceful.clone(), stop_rx.clone());
                accept_tasks.push(runtime.spawn(async move {
                    // Registered with the reactor of the runtime it runs on.
                    match TcpListener::from_std(socket) {
                        Ok(listener) => {
                            let serve = Serve { local, tls, fast };
                            accept_loop(listener, serve, graceful, stop).await
                        }
                        Err(e) => tracing::error!(address = %local, error = %e, "cannot register listener"),
                    }
                }));
            }
        }
        Ok(ProxyServer {
            stop_accepting: stop_tx,
            accept_tasks,
            graceful,
            local_addrs,
        })
    }

    /// Stops accepting, asks every connection to finish (HTTP/1.1: close after
    /// the in-flight response; HTTP/2: GOAWAY) and waits up to `timeout`.
    /// Returns the number of connections still open when time ran out.
    pub async fn shutdown(self, timeout: Duration) -> usize {
        let _ = self.stop_accepting.send(true);
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let open = self.graceful.count();
        tracing::info!(connections = open, "listeners closed; draining connections");
        // The accept loops are gone, so this is the last reference.
        let Ok(graceful) = Arc::try_unwrap(self.graceful) else {
            return open;
        };
        match tokio::time::timeout(timeout, graceful.shutdown()).await {
            Ok(()) => 0,
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "shutdown timeout reached with connections still open"
                );
                open.max(1)
            }
        }
    }
}

/// The general path's HTTP/1.1-only builder: TLS connections without
/// ALPN `h2`, listeners with `http2: false`.
fn http1_builder(http: &HttpConfig) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs_f64(http.header_timeout))
        .max_buf_size(crate::pool::MAX_BUF)
        .keep_alive(true);
    builder
}

/// The general path's HTTP/2-only builder: TLS connections with ALPN `h2`.
fn http2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    builder
}

/// The general path's auto-detecting builder (HTTP/1.1, or h2c prior
/// knowledge): plain listeners with `http2: true`.
fn http_builder(http: &HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs_f64(http.header_timeout))
        .max_buf_size(crate::pool::MAX_BUF)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// How one listener serves its connections.
struct Serve {
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    /// The HTTP/1.1 fast path (and the general path it hands over to).
    fast: Arc<crate::h1::H1Context>,
}

async fn accept_loop(
    listener: TcpListener,
    serve: Serve,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let Serve { local, tls, fast } = serve;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(address = %local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let info = Arc::new(ConnInfo::new(remote, local, tls.is_some()));
        if !fast.enabled {
            let watcher = graceful.watcher();
            let fast = fast.clone();
            let tls = tls.clone();
            // As in `serve_tls`, the stream is moved into the future that
            // serves it inside the match, and the task holds it once.
            tokio::spawn(async move {
                let serving = match tls {
                    None => {
                        let protocol = fast.protocol_for(false);
                        Either::Left(crate::h1::hand_over(
                            stream,
                            Vec::new(),
                            info,
                            &fast,
                            watcher,
                            protocol,
                        ))
                    }
                    Some(acceptor) => match tls_handshake(stream, &info, &acceptor, &fast).await {
                        None => return,
                        Some(s) => {
                            let protocol = negotiated(&s, &fast);
                            Either::Right(crate::h1::hand_over(
                                s,
                                Vec::new(),
                                info,
                                &fast,
                                watcher,
                                protocol,
                            ))
                        }
                    },
                };
                serving.await;
            });
            continue;
        }
        match &tls {
            None => {
                tokio::spawn(crate::h1::serve(
                    stream,
                    info,
                    fast.clone(),
                    graceful.watcher(),
                ));
            }
            Some(acceptor) => {
                tokio::spawn(serve_tls(
                    stream,
                    info,
                    acceptor.clone(),
                    fast.clone(),
                    graceful.watcher(),
                ));
            }
        }
    }
}

/// The protocol a TLS connection negotiated: HTTP/2 for ALPN `h2`,
/// HTTP/1.1 for anything else (`http/1.1`, or no ALPN at all).
fn negotiated(
    s: &tokio_rustls::server::TlsStream<TcpStream>,
    fast: &crate::h1::H1Context,
) -> crate::h1::Protocol {
    if s.get_ref().1.alpn_protocol() == Some(b"h2") {
        crate::h1::Protocol::Http2
    } else {
        fast.protocol_for(true)
    }
}

/// Completes the TLS handshake (within the header timeout), then serves
/// HTTP/2 (ALPN `h2`) on the general path, HTTP/2 only, and everything
/// else on the HTTP/1.1 fast path, HTTP/1.1 only.
async fn serve_tls(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    acceptor: TlsAcceptor,
    fast: Arc<crate::h1::H1Context>,
    watcher: Watcher,
) {
    // The stream is moved into the future that serves it inside the match,
    // so this task does not also keep a slot for it (1.2 KiB) beside that
    // future for the connection's whole life.
    let serving = match tls_handshake(stream, &info, &acceptor, &fast).await {
        None => return,
        Some(tls_stream) => {
            let protocol = negotiated(&tls_stream, &fast);
            if protocol == crate::h1::Protocol::Http2 {
                // Boxed: the general path's future holds hyper's
                // connection, and inline it would make every TLS
                // connection's task, fast-path ones included, as large.
                Either::Left(Box::pin(crate::h1::hand_over(
                    tls_stream,
                    Vec::new(),
                    info,
                    &fast,
                    watcher,
                    protocol,
                )))
            } else {
                Either::Right(crate::h1::serve(tls_stream, info, fast, watcher))
            }
        }
    };
    serving.await;
}

/// The server side of a TLS handshake, bounded by the header timeout.
async fn tls_handshake(
    stream: TcpStream,
    info: &ConnInfo,
    acceptor: &TlsAcceptor,
    fast: &crate::h1::H1Context,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(fast.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(client = %info.remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(client = %info.remote, "TLS handshake timed out");
            None
        }
    }
}
