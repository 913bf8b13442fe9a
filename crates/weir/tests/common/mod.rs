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

/// An address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// The real `weir` binary running as a child process, with port-0 listeners
/// whose bound addresses are read back from its JSON logs.
pub struct WeirProcess {
    pub child: std::process::Child,
    pub proxy: SocketAddr,
    pub control: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
    logs: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl WeirProcess {
    /// Writes `yaml` to a temp file and runs `weir run -c` on it. The YAML
    /// must use port 0 for the listener and control API.
    pub fn start(yaml: &str) -> WeirProcess {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("weir.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--log-format", "json", "--log-level", "info", "run", "-c"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut proc_ = WeirProcess {
            child,
            proxy: "0.0.0.0:0".parse().unwrap(),
            control: "0.0.0.0:0".parse().unwrap(),
            dir,
            config_path,
            logs,
        };
        // Both lines come early, in either order.
        let mut proxy = None;
        let mut control = None;
        while proxy.is_none() || control.is_none() {
            let v = proc_.wait_log(|v| {
                v["message"] == "proxy listening" || v["message"] == "control API listening"
            });
            let addr: SocketAddr = v["address"].as_str().unwrap().parse().unwrap();
            if v["message"] == "proxy listening" {
                proxy = Some(addr);
            } else {
                control = Some(addr);
            }
        }
        proc_.proxy = proxy.unwrap();
        proc_.control = control.unwrap();
        proc_
    }

    /// Waits (up to 20 s) for a log line matching `pred` and returns it.
    pub fn wait_log(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => continue,
                Err(e) => panic!("expected log line not seen: {e}"),
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (up to 30 s) and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "weir did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- Rolling updates and fault tests: pods that stop gracefully, a mixed load -----

/// A backend "pod" that can stop the way a real server does on SIGTERM
/// ([`Pod::graceful_stop`]) or die at once ([`Pod::kill`]). It serves the same
/// paths as [`Backend`] (with `delay_ms` added to every response) and records
/// the `x-req-id` header of every POST it receives, when its headers arrive;
/// every POST is served as `/upload` (body consumed, length answered).
pub struct Pod {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    posts: Arc<std::sync::Mutex<Vec<String>>>,
    graceful: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    /// Open connections plus one while the accept loop runs.
    open: watch::Sender<usize>,
}

impl Pod {
    pub async fn start(name: &str, delay_ms: u64) -> Pod {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pod");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let posts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (graceful, graceful_rx) = watch::channel(false);
        let (kill, kill_rx) = watch::channel(false);
        let open = watch::channel(1usize).0;
        let (name_owned, h, p, o) = (name.to_owned(), hits.clone(), posts.clone(), open.clone());
        tokio::spawn(async move {
            let (mut g, mut k) = (graceful_rx.clone(), kill_rx.clone());
            loop {
                let (stream, _) = tokio::select! {
                    _ = signalled(&mut g) => break,
                    _ = signalled(&mut k) => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                o.send_modify(|n| *n += 1);
                let (name, h, p, o) = (name_owned.clone(), h.clone(), p.clone(), o.clone());
                let (mut g, mut k) = (graceful_rx.clone(), kill_rx.clone());
                tokio::spawn(async move {
                    let in_flight = Arc::new(AtomicUsize::new(0));
                    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        if req.method() == http::Method::POST {
                            // Every POST is an upload, whatever its path.
                            *req.uri_mut() = http::Uri::from_static("/upload");
                            let id = req
                                .headers()
                                .get("x-req-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            p.lock().unwrap().push(id);
                        }
                        serve(name.clone(), h.clone(), in_flight.clone(), delay_ms, req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = signalled(&mut k) => {}
                        _ = signalled(&mut g) => {
                            // SIGTERM: finish the request in progress (with
                            // `Connection: close`), close idle keep-alive
                            // connections at once.
                            conn.as_mut().graceful_shutdown();
                            tokio::select! {
                                _ = conn.as_mut() => {}
                                _ = signalled(&mut k) => {}
                            }
                        }
                    }
                    o.send_modify(|n| *n -= 1);
                });
            }
            drop(listener);
            o.send_modify(|n| *n -= 1);
        });
        Pod {
            name: name.to_owned(),
            addr,
            hits,
            posts,
            graceful,
            kill,
            open,
        }
    }

    /// What a pod's server does on SIGTERM: stops accepting (the listener is
    /// closed), finishes in-flight requests, closes idle keep-alive
    /// connections, and returns once every connection is closed (at most 10 s).
    pub async fn graceful_stop(&self) {
        let _ = self.graceful.send(true);
        let mut open = self.open.subscribe();
        tokio::time::timeout(Duration::from_secs(10), open.wait_for(|n| *n == 0))
            .await
            .expect("pod did not stop within 10 s")
            .unwrap();
    }

    /// The pod dies: listener and every connection closed at once, in-flight
    /// requests get no answer.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// `x-req-id` of every POST received so far.
    pub fn posts(&self) -> Vec<String> {
        self.posts.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Resolves once the flag is (or becomes) true, or its sender is gone.
async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.kill.send(true);
    }
}

/// One failed request of a [`Load`].
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub method: &'static str,
    pub id: String,
    /// HTTP status, or 0 when the gateway gave no response at all.
    pub status: u16,
    pub detail: String,
}

/// Counters of a [`Load`].
#[derive(Default)]
pub struct LoadCounters {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub posts_sent: AtomicU64,
    pub posts_ok: AtomicU64,
    pub failures: std::sync::Mutex<Vec<LoadFailure>>,
    /// `(x-req-id, x-backend)` of every POST answered 2xx.
    pub posts_answered: std::sync::Mutex<Vec<(String, String)>>,
}

/// Continuous traffic through the gateway: `workers` tasks, even ones on one
/// pooled keep-alive client, odd ones on a new connection per request. With
/// `post_every = n > 0`, every n-th request of a worker is a POST to `path`
/// with a small body and a unique `x-req-id` (see [`Pod`]); the others GET `path`.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    pub counters: Arc<LoadCounters>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    started: std::time::Instant,
}

/// What a finished [`Load`] did.
#[derive(Debug)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub posts_sent: u64,
    pub posts_ok: u64,
    pub failures: Vec<LoadFailure>,
    pub posts_answered: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    /// Failures grouped as `"METHOD status" -> count`.
    pub fn failure_summary(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for f in &self.failures {
            *m.entry(format!("{} {}", f.method, f.status)).or_insert(0) += 1;
        }
        m
    }
}

impl Load {
    pub fn start(addr: SocketAddr, workers: usize, path: &str, post_every: u64) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counters = Arc::new(LoadCounters::default());
        let handles = (0..workers)
            .map(|w| {
                let (stop, c, path) = (stop.clone(), counters.clone(), path.to_owned());
                tokio::spawn(async move {
                    let pooled = client();
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let is_post = post_every > 0 && i.is_multiple_of(post_every);
                        let id = format!("w{w}-{i}");
                        let fresh;
                        let cl = if w % 2 == 0 {
                            &pooled
                        } else {
                            fresh = client();
                            &fresh
                        };
                        let (method, b) = if is_post {
                            ("POST", body("0123456789abcdef"))
                        } else {
                            ("GET", empty())
                        };
                        let req = Request::builder()
                            .method(method)
                            .uri(format!("http://{addr}{path}"))
                            .header("x-req-id", &id)
                            .body(b)
                            .unwrap();
                        c.sent.fetch_add(1, Ordering::SeqCst);
                        if is_post {
                            c.posts_sent.fetch_add(1, Ordering::SeqCst);
                        }
                        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                            let resp = cl.request(req).await.map_err(|e| (0u16, e.to_string()))?;
                            let status = resp.status();
                            let backend = resp
                                .headers()
                                .get("x-backend")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let body = resp
                                .into_body()
                                .collect()
                                .await
                                .map_err(|e| (status.as_u16(), format!("body: {e}")))?
                                .to_bytes();
                            if status.is_success() {
                                Ok(backend)
                            } else {
                                Err((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
                            }
                        })
                        .await
                        .unwrap_or_else(|_| Err((0, "no answer within 10 s".into())));
                        match outcome {
                            Ok(backend) => {
                                c.ok.fetch_add(1, Ordering::SeqCst);
                                if is_post {
                                    c.posts_ok.fetch_add(1, Ordering::SeqCst);
                                    c.posts_answered.lock().unwrap().push((id, backend));
                                }
                            }
                            Err((status, detail)) => {
                                c.failed.fetch_add(1, Ordering::SeqCst);
                                c.failures.lock().unwrap().push(LoadFailure {
                                    method,
                                    id,
                                    status,
                                    detail,
                                });
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            counters,
            workers: handles,
            started: std::time::Instant::now(),
        }
    }

    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::SeqCst)
    }

    /// Waits (at most 15 s) until `n` more requests have succeeded.
    pub async fn wait_more(&self, n: u64) {
        let target = self.ok() + n;
        tokio::time::timeout(Duration::from_secs(15), async {
            while self.ok() < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("load stalled: {} ok, wanted {target}", self.ok()));
    }

    /// Keeps the load running for `d` (and at least 50 more successes).
    pub async fn hold(&self, d: Duration) {
        let target = self.ok() + 50;
        tokio::time::sleep(d).await;
        let left = target.saturating_sub(self.ok());
        self.wait_more(left).await;
    }

    /// Stops the workers (each finishes its request in progress) and reports.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.await.expect("load worker panicked");
        }
        let c = &self.counters;
        LoadReport {
            sent: c.sent.load(Ordering::SeqCst),
            ok: c.ok.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            posts_sent: c.posts_sent.load(Ordering::SeqCst),
            posts_ok: c.posts_ok.load(Ordering::SeqCst),
            failures: c.failures.lock().unwrap().clone(),
            posts_answered: c.posts_answered.lock().unwrap().clone(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Polls `f` every 5 ms until it holds; panics after `secs` seconds.
pub async fn wait_until_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(secs), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {secs} s waiting for {what}"));
}

/// Ports of the nodes the registry holds for `service_name`, sorted.
pub fn registry_ports(gw: &Gateway, service_name: &str) -> Vec<u16> {
    let mut p: Vec<u16> = gw
        .core
        .registry
        .nodes(service_name)
        .unwrap_or_default()
        .iter()
        .map(|n| n.port)
        .collect();
    p.sort_unstable();
    p
}
