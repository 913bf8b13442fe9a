//! A real etcd (Debian's `etcd-server`, v3.4) for the `config_provider:
//! etcd` tests: started on free ports of 127.0.0.1 with its data in a
//! temporary directory, ready once `/health` says so, killed when dropped.
//! Raw reads and writes go through etcd's JSON gateway, as APISIX's tools
//! would write; and a TCP relay ([`Relay`]) between weir and etcd can cut
//! the connection (a partition) and restore it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::{body, client};

/// How long etcd may take to answer `/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    /// With TLS: the https port and etcd's TLS arguments.
    tls: Option<(u16, Vec<String>)>,
}

/// A port that was free a moment ago (bound on port 0, then released).
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local address").port();
        // Benchmarks own these ranges.
        if !(18000..=18200).contains(&port) && !(19000..=19300).contains(&port) {
            return port;
        }
    }
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn int(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

impl EtcdServer {
    /// Starts etcd on free ports (tried again when a port was taken in the
    /// meantime: etcd then exits at once).
    pub async fn start() -> EtcdServer {
        EtcdServer::start_with(None).await
    }

    /// Starts etcd with a second client URL, https, serving `cert` / `key`
    /// and requiring a client certificate issued by `client_ca` (files).
    /// The http URL stays for the harness's own calls.
    pub async fn start_tls(cert: &str, key: &str, client_ca: &str) -> EtcdServer {
        let args = [
            "--cert-file",
            cert,
            "--key-file",
            key,
            "--client-cert-auth",
            "--trusted-ca-file",
            client_ca,
        ];
        EtcdServer::start_with(Some(args.iter().map(|s| s.to_string()).collect())).await
    }

    async fn start_with(tls: Option<Vec<String>>) -> EtcdServer {
        for _ in 0..10 {
            let mut server = EtcdServer {
                child: None,
                client_port: free_port(),
                peer_port: free_port(),
                dir: tempfile::tempdir().expect("temporary directory"),
                tls: tls.clone().map(|args| (free_port(), args)),
            };
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!("etcd did not start after 10 tries");
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The https client URL (with [`EtcdServer::start_tls`]).
    pub fn https_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with TLS");
        format!("https://127.0.0.1:{port}")
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    async fn spawn_and_wait(&mut self) -> bool {
        let http = self.url();
        let (client, tls_args) = match &self.tls {
            Some((port, args)) => (format!("{http},https://127.0.0.1:{port}"), args.clone()),
            None => (http, Vec::new()),
        };
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "weir-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("weir-test={peer}"),
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ])
            .args(&tls_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run etcd ({e}): install it (apt-get install etcd-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if self.healthy().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    async fn healthy(&self) -> bool {
        let req = Request::get(format!("{}/health", self.url()))
            .body(body(""))
            .expect("request");
        let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(1), client().request(req)).await
        else {
            return false;
        };
        let Ok(collected) = resp.into_body().collect().await else {
            return false;
        };
        let bytes = collected.to_bytes();
        serde_json::from_slice::<Value>(&bytes)
            .is_ok_and(|v| v.get("health").and_then(Value::as_str) == Some("true"))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a stopped etcd keeps its
    /// connections open and answers nothing, a silent partition.
    pub fn pause(&self, stopped: bool) {
        let Some(c) = self.child.as_ref() else {
            return;
        };
        let sig = if stopped { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} etcd");
    }

    /// Starts etcd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn_and_wait().await,
            "etcd did not restart on port {}",
            self.client_port
        );
    }

    /// Starts etcd again on the same ports with an empty data directory (a
    /// new cluster).
    pub async fn restart_empty(&mut self) {
        self.kill();
        self.dir = tempfile::tempdir().expect("temporary directory");
        assert!(
            self.spawn_and_wait().await,
            "etcd did not restart on port {}",
            self.client_port
        );
    }

    /// A call to the JSON gateway.
    pub async fn call(&self, path: &str, req: Value) -> Value {
        let r = Request::post(format!("{}{path}", self.url()))
            .body(body(&req.to_string()))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(10), client().request(r))
            .await
            .expect("etcd answers within 10 s")
            .expect("etcd request");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.is_success(), "etcd {path}: {status} {v}");
        v
    }

    /// Puts `value` at `key`; the new revision.
    pub async fn put(&self, key: &str, value: &str) -> i64 {
        let v = self
            .call("/v3/kv/put", json!({"key": b64(key), "value": b64(value)}))
            .await;
        int(&v["header"]["revision"])
    }

    /// Deletes `key`; the new revision.
    pub async fn delete(&self, key: &str) -> i64 {
        let v = self
            .call("/v3/kv/deleterange", json!({"key": b64(key)}))
            .await;
        int(&v["header"]["revision"])
    }

    /// The value at `key` with its create and mod revisions.
    pub async fn get(&self, key: &str) -> Option<(Value, i64, i64)> {
        let v = self.call("/v3/kv/range", json!({"key": b64(key)})).await;
        let kv = v.get("kvs")?.get(0)?;
        let raw = B64
            .decode(kv["value"].as_str().unwrap_or(""))
            .expect("base64 value");
        Some((
            serde_json::from_slice(&raw).unwrap_or(Value::Null),
            int(&kv["create_revision"]),
            int(&kv["mod_revision"]),
        ))
    }

    /// The current revision.
    pub async fn revision(&self) -> i64 {
        let v = self
            .call("/v3/kv/range", json!({"key": b64("/"), "count_only": true}))
            .await;
        int(&v["header"]["revision"])
    }

    /// Turns etcd's authentication on with user `root` and `password`
    /// (the harness's own calls then fail: use it last).
    pub async fn enable_auth(&self, password: &str) {
        self.call("/v3/auth/role/add", json!({"name": "root"}))
            .await;
        self.call(
            "/v3/auth/user/add",
            json!({"name": "root", "password": password}),
        )
        .await;
        self.call(
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        )
        .await;
        self.call("/v3/auth/enable", json!({})).await;
    }

    /// Compacts the history up to `revision` (physically).
    pub async fn compact(&self, revision: i64) {
        self.call(
            "/v3/kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
        )
        .await;
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to `target` whose connections can be cut (and new ones
/// refused) and later allowed again: a network partition between weir and
/// etcd, with etcd itself still up.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays 127.0.0.1:port-0 to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let open = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (o, c, n) = (open.clone(), cut.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                n.fetch_add(1, Ordering::SeqCst);
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            accepted,
            cut,
            task,
        }
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
