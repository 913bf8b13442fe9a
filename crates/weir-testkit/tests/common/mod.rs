//! Shared test helpers: a small real HTTP(S) client speaking to the fake over its
//! socket, a watch-stream reader, and the recordings loader.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use weir_testkit::kube_api::FakeApiServer;

/// Generous upper bound for anything that should happen "now".
pub const T: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The recordings directory: the shared one next to the repo if present, else the
/// copy committed in `tests/recordings`.
pub fn recordings_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../../shared/k8s-recordings");
    if shared.join("README.md").exists() {
        shared
    } else {
        manifest.join("tests/recordings")
    }
}

pub fn committed_recordings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/recordings")
}

pub fn recording(name: &str) -> String {
    let p = recordings_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn recording_json(name: &str) -> Value {
    serde_json::from_str(&recording(name)).unwrap()
}

pub fn recording_lines(name: &str) -> Vec<Value> {
    recording(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An `.http` recording: status code, lower-cased headers, JSON body.
pub fn recording_http(name: &str) -> (u16, Vec<(String, String)>, Value, String) {
    let text = recording(name);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .expect("blank line");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        code,
        headers,
        serde_json::from_str(body).unwrap(),
        body.to_string(),
    )
}

/// Sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// `ns/name` of every list item.
pub fn item_ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// A copy of `v` without `metadata.resourceVersion` (and optionally other metadata keys).
pub fn without_meta(v: &Value, fields: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        for f in fields {
            m.remove(*f);
        }
    }
    v
}

/// A minimal HTTP/1.1 client over a fresh connection per request.
#[derive(Clone)]
pub struct Client {
    addr: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
    user_agent: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Client {
    pub fn new(api: &FakeApiServer) -> Client {
        let tls = api.ca_der().map(|der| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der.into()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
        });
        Client {
            addr: api.addr(),
            tls,
            token: Some("test-token".into()),
            user_agent: "weir-testkit-tests".into(),
        }
    }

    pub fn token(mut self, t: Option<&str>) -> Client {
        self.token = t.map(str::to_string);
        self
    }

    pub fn user_agent(mut self, ua: &str) -> Client {
        self.user_agent = ua.into();
        self
    }

    async fn send(&self, path_and_query: &str) -> anyhow::Result<http::Response<Incoming>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let mut req = Request::get(path_and_query)
            .header("host", self.addr.to_string())
            .header("user-agent", &self.user_agent)
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let resp = match &self.tls {
            None => {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender.send_request(req).await?
            }
            Some(tls) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let stream = tls.connect(name, tcp).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender.send_request(req).await?
            }
        };
        Ok(resp)
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Reply> {
        let resp = tokio::time::timeout(T, self.send(path_and_query)).await??;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(T, resp.into_body().collect())
            .await??
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn watch(&self, path_and_query: &str) -> anyhow::Result<WatchStream> {
        let resp = tokio::time::timeout(T, self.send(path_and_query)).await??;
        Ok(WatchStream {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

#[derive(Debug)]
pub enum Next {
    Event(Value),
    /// The stream ended cleanly (terminating chunk).
    End,
    /// The stream broke (connection dropped mid-stream).
    Broken(String),
    Timeout,
}

pub struct WatchStream {
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next JSON line, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Next::Event(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("bad line {e}: {}", String::from_utf8_lossy(&line))
                }));
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Next::Timeout,
                Ok(None) => return Next::End,
                Ok(Some(Err(e))) => return Next::Broken(e.to_string()),
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    /// The next event, panicking on anything else.
    pub async fn event(&mut self) -> Value {
        match self.next(T).await {
            Next::Event(v) => v,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next non-BOOKMARK event.
    pub async fn non_bookmark(&mut self) -> Value {
        loop {
            let e = self.event().await;
            if e["type"] != "BOOKMARK" {
                return e;
            }
        }
    }

    /// Reads until the stream ends; returns the events and how it ended.
    pub async fn drain(&mut self, timeout: Duration) -> (Vec<Value>, Next) {
        let mut evs = Vec::new();
        loop {
            match self.next(timeout).await {
                Next::Event(v) => evs.push(v),
                end => return (evs, end),
            }
        }
    }
}

pub fn event_summary(e: &Value) -> String {
    format!(
        "{} {}/{}@{}",
        e["type"].as_str().unwrap_or("?"),
        e["object"]["metadata"]["namespace"].as_str().unwrap_or(""),
        e["object"]["metadata"]["name"].as_str().unwrap_or(""),
        e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
    )
}
