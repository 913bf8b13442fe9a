//! Listeners: accept, optional TLS (SNI + ALPN), HTTP/1.1 and HTTP/2 via
//! hyper-util's auto builder, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use weir_config::{HttpConfig, Listener};

use crate::forward::{self, ConnInfo};
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
            let builder = http_builder(http, b.config.http2);
            // Plain-TCP listeners serve HTTP/1.1 on the fast path.
            let fast = (!b.config.tls).then(|| {
                Arc::new(crate::h1::H1Context {
                    state: state.clone(),
                    builder: builder.clone(),
                    header_timeout: Duration::from_secs_f64(http.header_timeout),
                    stop: stop_rx.clone(),
                })
            });
            local_addrs.push(b.local);
            tracing::info!(address = %b.local, tls = b.config.tls, http2 = b.config.http2, workers = b.sockets.len(), "proxy listening");
            for (i, socket) in b.sockets.into_iter().enumerate() {
                let runtime = workers.get(i).unwrap_or(&ambient);
                let (local, tls, builder, fast) =
                    (b.local, tls.clone(), builder.clone(), fast.clone());
                let (state, graceful, stop) = (state.clone(), graceful.clone(), stop_rx.clone());
                accept_tasks.push(runtime.spawn(async move {
                    // Registered with the reactor of the runtime it runs on.
                    match TcpListener::from_std(socket) {
                        Ok(listener) => {
                            let serve = Serve { local, tls, builder, state, fast };
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

fn http_builder(http: &HttpConfig, http2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs_f64(http.header_timeout))
        .max_buf_size(crate::pool::MAX_BUF)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    if http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// How one listener serves its connections.
struct Serve {
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    state: Arc<ProxyState>,
    /// The HTTP/1.1 fast path (plain-TCP listeners).
    fast: Option<Arc<crate::h1::H1Context>>,
}

async fn accept_loop(
    listener: TcpListener,
    serve: Serve,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let Serve {
        local,
        tls,
        builder,
        state,
        fast,
    } = serve;
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
        if let Some(fast) = &fast {
            tokio::spawn(crate::h1::serve(
                stream,
                info,
                fast.clone(),
                graceful.watcher(),
            ));
            continue;
        }
        tokio::spawn(serve_connection(
            stream,
            info,
            tls.clone(),
            builder.clone(),
            state.clone(),
            graceful.watcher(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    state: Arc<ProxyState>,
    watcher: Watcher,
) {
    let conn = info.clone();
    let service =
        hyper::service::service_fn(move |req| forward::handle(state.clone(), conn.clone(), req));
    let result = match tls {
        None => {
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            watcher.watch(conn).await
        }
        Some(acceptor) => {
            let tls_stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(client = %info.remote, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                .into_owned();
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %info.remote, error = %e, "connection ended with error");
    }
}
