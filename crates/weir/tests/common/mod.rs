//! Shared test harness: real backend "pods", a real HTTP client, and the
//! gateway started in-process on port-0 listeners.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir::Gateway;

/// A backend "pod": a real HTTP/1.1 server on 127.0.0.1:0.
///
/// Paths: `/delay/{ms}` answers after a delay; `/status/{code}`; `/headers`
/// returns the request headers as JSON; `/bytes/{n}` streams n bytes;
/// `/upload` consumes the body and answers its length; `/ws` is a WebSocket
/// echo; anything else answers the backend's name. Every response carries
/// `x-backend: <name>`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub in_flight: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    fail_status: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    pub async fn start_on(addr: SocketAddr, name: &str) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let fail_status = Arc::new(AtomicU64::new(0));
        let (stop, mut stop_rx) = watch::channel(false);
        let name_owned = name.to_owned();
        let (h, f, d, fs) = (
            hits.clone(),
            in_flight.clone(),
            delay_ms.clone(),
            fail_status.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let name = name_owned.clone();
                let (h, f, d, fs) = (h.clone(), f.clone(), d.clone(), fs.clone());
                let mut conn_stop = stop_rx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let fail = fs.load(Ordering::SeqCst);
                        let reply = serve(
                            name.clone(),
                            h.clone(),
                            f.clone(),
                            d.load(Ordering::SeqCst),
                            req,
                        );
                        async move {
                            let mut r = reply.await?;
                            if fail != 0 {
                                *r.status_mut() = StatusCode::from_u16(fail as u16).unwrap();
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = conn_stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            in_flight,
            delay_ms,
            fail_status,
            stop,
        }
    }

    /// Stops accepting and closes every connection (the pod is gone).
    pub fn kill(&self) {
        let _ = self.stop.send(true);
    }

    /// Every response is delayed by `ms` from now on.
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every response gets this status from now on (0 = normal behaviour).
    pub fn set_fail_status(&self, status: u16) {
        self.fail_status.store(u64::from(status), Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn node(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

async fn serve(
    name: String,
    hits: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    delay_ms: u64,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    in_flight.fetch_add(1, Ordering::SeqCst);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let path = req.uri().path().to_owned();
    let mut resp = if let Some(ms) = path.strip_prefix("/delay/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(full(name.clone()))
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(name.clone()));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else if path == "/headers" {
        let mut map = serde_json::Map::new();
        for (k, v) in req.headers() {
            map.insert(k.to_string(), v.to_str().unwrap_or("").into());
        }
        Response::new(full(serde_json::Value::Object(map).to_string()))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        Response::new(stream_bytes(n))
    } else if path == "/upload" {
        let mut total = 0u64;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut r = Response::new(full(total.to_string()));
        r.headers_mut().insert("x-backend", name.parse().unwrap());
        return Ok(r);
    } else if path == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or_else(|| http::HeaderValue::from_static(""));
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let (tx, rx) = ws.split();
                let _ = rx.forward(tx).await;
            }
        });
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r.headers_mut()
            .insert("sec-websocket-accept", accept.parse().unwrap());
        r
    } else {
        Response::new(full(name.clone()))
    };
    in_flight.fetch_sub(1, Ordering::SeqCst);
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// A body of `n` zero bytes in 64 KiB chunks, generated on the fly.
pub fn stream_bytes(n: u64) -> BoxBody {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![0u8; CHUNK as usize]);
    let stream = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= n {
                return None;
            }
            let len = CHUNK.min(n - sent);
            Some((Ok(Frame::data(chunk.slice(..len as usize))), sent + len))
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// A pooled HTTP/1.1 client.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A simple response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn backend(&self) -> &str {
        self.headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// GET `http://{addr}{path}` with an optional Host header.
pub async fn get(addr: SocketAddr, host: Option<&str>, path: &str) -> Reply {
    send(addr, "GET", host, path, full("")).await
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: Option<&str>,
    path: &str,
    body: BoxBody,
) -> Reply {
    let c = client();
    send_with(&c, addr, method, host, path, body).await
}

pub async fn send_with(
    c: &Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody>,
    addr: SocketAddr,
    method: &str,
    host: Option<&str>,
    path: &str,
    body: BoxBody,
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(h) = host {
        b = b.header("host", h);
    }
    let resp = c
        .request(b.body(body).unwrap())
        .await
        .expect("request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn empty() -> BoxBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn body(s: &str) -> BoxBody {
    full(s.to_owned())
}

/// Loads a YAML config, moving every listener and the control API to port 0
/// on 127.0.0.1 and turning the access log off unless the YAML sets it.
pub fn config(yaml: &str) -> weir_config::Config {
    let mut c = weir_config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    for l in &mut c.gateway.listeners {
        let port_zero = l.address.rsplit_once(':').map(|(h, _)| format!("{h}:0"));
        l.address = port_zero.unwrap_or_else(|| "127.0.0.1:0".into());
    }
    c.gateway.control.address = "127.0.0.1:0".into();
    if !yaml.contains("access_log") {
        c.gateway.access_log.enabled = false;
    }
    c
}

/// Starts the gateway in-process.
pub async fn gateway(yaml: &str) -> Gateway {
    Gateway::start(config(yaml)).await.expect("gateway start")
}

/// Counts per backend name over `n` sequential GETs.
pub async fn distribution(
    addr: SocketAddr,
    host: Option<&str>,
    path: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let c = client();
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = send_with(&c, addr, "GET", host, path, empty()).await;
        assert_eq!(r.status, StatusCode::OK, "body: {}", r.body);
        *counts.entry(r.backend().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Counter helpers for load loops.
#[derive(Default)]
pub struct LoadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// A TCP server that accepts, reads the request, and closes without answering
/// (a pod that dies mid-request).
pub async fn black_hole() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

/// An address that refuses every connection for the rest of the test
/// process: a socket bound to it (without `SO_REUSEADDR`) that never listens
/// and is never closed. A SYN to it gets a reset, and no other socket (a
/// parallel test's listener, a client's ephemeral port) can take the port.
pub async fn closed_port() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(socket);
    addr
}

/// Endpoints `shop/cart` with one subset per pod (each pod listens on its own
/// port on 127.0.0.1; the fake API server, unlike a real one, accepts
/// loopback addresses), port name `http`.
pub fn cart_endpoints(ports: &[u16]) -> k8s_openapi::api::core::v1::Endpoints {
    let mut b = weir_testkit::kube_api::endpoints("shop", "cart");
    for (i, port) in ports.iter().enumerate() {
        if i > 0 {
            b = b.subset();
        }
        b = b.ready(["127.0.0.1"]).port("http", i32::from(*port));
    }
    b.build()
}

/// The raw-socket harness of the `http1_wire*` tests (used by those only).
pub mod any_client;
pub mod etcd_server;
pub mod hostile;
mod pods;
mod process;
pub mod redis_server;
pub mod wire;

// Each test binary uses a different part of the kit.
#[allow(unused_imports)]
pub use pods::*;
#[allow(unused_imports)]
pub use process::*;
