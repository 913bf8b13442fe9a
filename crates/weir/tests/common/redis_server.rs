//! A real Redis server (Debian's `redis-server`) for the tests that share
//! counts across replicas: started on a free port of 127.0.0.1 with no
//! persistence and a temporary directory, stopped when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Extra `redis-server` arguments (cluster mode, TLS).
    extra: Vec<String>,
    /// The TLS port, when the server has one ([`RedisServer::start_tls`]).
    tls_port: Option<u16>,
}

/// How long a server may take to answer PING after it starts.
const READY_WITHIN: Duration = Duration::from_secs(10);

impl RedisServer {
    /// Starts a server on a free port. Ports are tried at random in
    /// 20000-29999 until one binds (redis-server exits at once when its port
    /// is taken); it is ready when it answers PING.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(20_000, &[]).await
    }

    /// Starts a server on a free port in `base`..`base + 10000` with extra
    /// arguments.
    async fn start_with(base: u16, extra: &[&str]) -> RedisServer {
        for _ in 0..50 {
            let mut server = RedisServer {
                child: None,
                port: base + rand::random::<u16>() % 10_000,
                dir: tempfile::tempdir().expect("temporary directory"),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                tls_port: None,
            };
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!("no free port for redis-server after 50 tries");
    }

    /// Starts a server that also listens with TLS (its certificate and key
    /// in PEM files; clients are not asked for certificates) on
    /// [`RedisServer::tls_port`], ten thousand above its plain port (which
    /// the readiness check and [`RedisServer::command`] use).
    pub async fn start_tls(cert_file: &std::path::Path, key_file: &std::path::Path) -> RedisServer {
        let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
        for _ in 0..50 {
            let port = 20_000 + rand::random::<u16>() % 10_000;
            let tls_port = port + 10_000;
            let extra = [
                "--tls-port".to_owned(),
                tls_port.to_string(),
                "--tls-cert-file".to_owned(),
                path(cert_file),
                "--tls-key-file".to_owned(),
                path(key_file),
                "--tls-ca-cert-file".to_owned(),
                path(cert_file),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ];
            let mut server = RedisServer {
                child: None,
                port,
                dir: tempfile::tempdir().expect("temporary directory"),
                extra: extra.to_vec(),
                tls_port: Some(tls_port),
            };
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!("no free ports for redis-server with TLS after 50 tries");
    }

    /// Its TLS port ([`RedisServer::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("started without TLS")
    }

    /// Starts `redis-server` on `self.port`; true once it answers PING,
    /// false if it exited (its port is taken).
    async fn spawn_and_wait(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (apt-get install redis-server)")
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
            if ping(self.addr()).await {
                // Ours, not another test's server on the same port.
                let info = self.command("INFO server").await;
                let pid = self.child.as_ref().map(Child::id);
                if pid.is_some_and(|p| info.contains(&format!("process_id:{p}\r\n"))) {
                    return true;
                }
                self.kill();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "redis-server on port {} not ready within {READY_WITHIN:?}",
            self.port
        );
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL: the store is gone at once, connections reset).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)); its
    /// data is gone, as after a crash without persistence.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the server is still running");
        assert!(
            self.spawn_and_wait().await,
            "redis-server could not take its port {} again",
            self.port
        );
    }

    /// Sends one command (inline form) and returns the raw reply.
    pub async fn command(&self, line: &str) -> String {
        let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(self.addr()))
            .await
            .expect("connect to redis timed out")
            .expect("connect to redis");
        s.write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write to redis");
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("redis reply timed out")
            .expect("read from redis");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A Redis cluster of three masters (no replicas), each a
/// [`RedisServer`] in cluster mode; its slots are assigned with
/// `redis-cli --cluster create`. Ports are drawn from 10000-19999, so the
/// cluster bus ports (port + 10000) stay below the kernel's ephemeral range.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes and forms the cluster; ready once every node
    /// reports `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                RedisServer::start_with(
                    10_000,
                    &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
                )
                .await,
            );
        }
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): install redis-tools"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + READY_WITHIN;
        for n in &nodes {
            loop {
                if n.command("CLUSTER INFO").await.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never became ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        RedisCluster { nodes }
    }

    /// `host:port` of each node, for `redis_cluster_nodes`.
    pub fn node_list(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr().to_string()).collect()
    }

    /// Every key of the cluster matching `pattern` (KEYS on each node).
    pub async fn keys(&self, pattern: &str) -> String {
        let mut all = String::new();
        for n in &self.nodes {
            all.push_str(&n.command(&format!("KEYS {pattern}")).await);
        }
        all
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(addr: SocketAddr) -> bool {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}
