//! Rolling updates and fault tests: pods that stop gracefully, a mixed load.

use super::*;

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
