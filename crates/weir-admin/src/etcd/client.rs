//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/watch`, `/v3/lease/grant`, `/v3/auth/authenticate`),
//! the wire path APISIX's lua-resty-etcd uses. Keys and values are base64 on
//! that wire; 64-bit integers are JSON strings.
//!
//! Hosts are tried in turn: a host that cannot be reached moves the client
//! to the next one. With `user` / `password`, a token is fetched once and
//! again when etcd says it is no longer valid.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_config::discovery_resolve::Secret;
use weir_config::EtcdSettings;

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No connection, or the connection broke.
    #[error("etcd {host}: {message}")]
    Unreachable {
        /// The etcd URL.
        host: String,
        /// What happened.
        message: String,
    },
    /// etcd did not answer in time (`deployment.etcd.timeout`).
    #[error("etcd {host}: no answer within {secs} s (deployment.etcd.timeout)")]
    Timeout {
        /// The etcd URL.
        host: String,
        /// The timeout.
        secs: f64,
    },
    /// The liveness probe got no answer in time
    /// (`deployment.etcd.health_check_timeout`).
    #[error("etcd {host}: the liveness probe got no answer within {secs} s (deployment.etcd.health_check_timeout)")]
    Unhealthy {
        /// The etcd URL.
        host: String,
        /// The timeout.
        secs: f64,
    },
    /// etcd answered with an error.
    #[error("etcd {host} answered {status}: {message}")]
    Status {
        /// The etcd URL.
        host: String,
        /// The HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// etcd's answer could not be read.
    #[error("etcd {host}: unexpected answer: {message}")]
    Protocol {
        /// The etcd URL.
        host: String,
        /// What is wrong.
        message: String,
    },
}

/// A 64-bit integer the gateway sends as a string (or a number).
fn int<'de, D: serde::Deserializer<'de>, T: std::str::FromStr + Default>(
    d: D,
) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    let text = match v {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        Value::Null => return Ok(T::default()),
        _ => return Err(serde::de::Error::custom("expected an integer")),
    };
    text.parse()
        .map_err(|_| serde::de::Error::custom("expected an integer"))
}

/// etcd's response header.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// The cluster's id (a new data directory is a new cluster).
    #[serde(default, deserialize_with = "int")]
    pub cluster_id: u64,
    /// The store's revision when the answer was made.
    #[serde(default, deserialize_with = "int")]
    pub revision: i64,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int")]
    create_revision: i64,
    #[serde(default, deserialize_with = "int")]
    mod_revision: i64,
}

/// One key and its value.
#[derive(Debug, Clone)]
pub struct Kv {
    /// The key, decoded (not necessarily UTF-8 in etcd: lossy).
    pub key: String,
    /// The value's bytes.
    pub value: Bytes,
    /// The revision that created it.
    pub create_revision: i64,
    /// The revision that last changed it.
    pub mod_revision: i64,
}

impl RawKv {
    fn decode(self) -> Result<Kv, String> {
        let key = B64
            .decode(&self.key)
            .map_err(|e| format!("key is not base64: {e}"))?;
        let value = B64
            .decode(&self.value)
            .map_err(|e| format!("value is not base64: {e}"))?;
        Ok(Kv {
            key: String::from_utf8_lossy(&key).into_owned(),
            value: Bytes::from(value),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        })
    }
}

/// A watch event.
#[derive(Debug, Clone)]
pub enum Event {
    /// The key was written.
    Put(Kv),
    /// The key was deleted (only `key` and `mod_revision` are meaningful).
    Delete(Kv),
}

/// One message of a watch stream.
#[derive(Debug)]
pub enum WatchMessage {
    /// The watch is established.
    Created(Header),
    /// Changes of one revision (or a progress note when empty).
    Events(Header, Vec<Event>),
    /// The revision asked for was compacted away: read everything again.
    Compacted {
        /// The oldest revision etcd still has.
        compact_revision: i64,
    },
    /// etcd ended the watch.
    Canceled(String),
}

/// A comparison of a transaction.
#[derive(Debug, Clone, Copy)]
pub enum Compare {
    /// The key does not exist (create_revision == 0).
    Absent,
    /// The key's mod_revision equals this one.
    ModRevision(i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a value, with a lease id or 0.
    Put(String, Vec<u8>, i64),
    /// Delete one key.
    Delete(String),
    /// Delete every key with this prefix.
    DeletePrefix(String),
}

/// The client.
pub struct EtcdClient {
    hosts: Vec<String>,
    current: AtomicUsize,
    timeout: Duration,
    auth: Option<(String, Secret)>,
    token: Mutex<Option<String>>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("hosts", &self.hosts)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix
/// end": the last byte plus one).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn b64(s: impl AsRef<[u8]>) -> String {
    B64.encode(s.as_ref())
}

impl EtcdClient {
    /// A client for `deployment.etcd` (nothing is connected yet); fails
    /// when the TLS files cannot be used.
    pub fn new(settings: &EtcdSettings) -> Result<EtcdClient, String> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs_f64(
            settings.timeout.clamp(0.05, 3600.0),
        )));
        let tls = super::tls::client_config(settings.tls.as_ref())?;
        let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        if let Some(sni) = settings.tls.as_ref().and_then(|t| t.sni.as_deref()) {
            let name = rustls::pki_types::ServerName::try_from(sni.to_owned())
                .map_err(|e| format!("deployment.etcd.tls.sni: {sni:?}: {e}"))?;
            builder =
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
        }
        let connector = builder.enable_http1().wrap_connector(connector);
        Ok(EtcdClient {
            hosts: settings
                .host
                .iter()
                .map(|h| h.trim_end_matches('/').to_owned())
                .collect(),
            current: AtomicUsize::new(0),
            timeout: Duration::from_secs_f64(settings.timeout.clamp(0.05, 3600.0)),
            auth: settings.user.clone().zip(settings.password.clone()),
            token: Mutex::new(None),
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        })
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn host(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.hosts.len().max(1);
        self.hosts.get(i).map_or("", String::as_str)
    }

    fn next_host(&self, failed: &str) {
        if self.host() == failed {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Sends `body` to `path`; the response head within the timeout.
    async fn send(&self, path: &str, body: &Value) -> Result<hyper::Response<Incoming>, EtcdError> {
        let host = self.host().to_owned();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{host}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = self.token() {
            req = req.header(http::header::AUTHORIZATION, t);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| EtcdError::Protocol {
                host: host.clone(),
                message: e.to_string(),
            })?;
        match tokio::time::timeout(self.timeout, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.next_host(&host);
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message = format!("{message}: {s}");
                    source = s.source();
                }
                Err(EtcdError::Unreachable { host, message })
            }
            Err(_) => {
                self.next_host(&host);
                Err(EtcdError::Timeout {
                    host,
                    secs: self.timeout.as_secs_f64(),
                })
            }
        }
    }

    /// The error of a liveness probe that got no answer within `within`;
    /// the next call goes to the next host.
    pub(crate) fn unhealthy(&self, within: Duration) -> EtcdError {
        let host = self.host().to_owned();
        self.next_host(&host);
        EtcdError::Unhealthy {
            host,
            secs: within.as_secs_f64(),
        }
    }

    /// How many hosts are tried in turn.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// One unary call: the JSON answer, authenticating first when needed.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        if self.auth.is_some() && self.token().is_none() {
            self.authenticate().await?;
        }
        match self.call_once(path, body).await {
            Err(EtcdError::Status { message, .. })
                if self.auth.is_some() && message.contains("token") =>
            {
                // An expired or revoked token: once more with a new one.
                self.set_token(None);
                self.authenticate().await?;
                self.call_once(path, body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let host = self.host().to_owned();
        let resp = self.send(path, body).await?;
        let status = resp.status();
        let bytes = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| EtcdError::Timeout {
                host: host.clone(),
                secs: self.timeout.as_secs_f64(),
            })?
            .map_err(|e| EtcdError::Unreachable {
                host: host.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| EtcdError::Protocol {
            host: host.clone(),
            message: format!("{path}: {e}"),
        })?;
        if status != StatusCode::OK {
            let message = v
                .get("error")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Err(EtcdError::Status {
                host,
                status: status.as_u16(),
                message,
            });
        }
        Ok(v)
    }

    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((user, password)) = &self.auth else {
            return Ok(());
        };
        let body = json!({"name": user, "password": password.expose()});
        let v = self.call_once("/v3/auth/authenticate", &body).await?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Protocol {
                host: self.host().to_owned(),
                message: "/v3/auth/authenticate: no token".into(),
            })?;
        self.set_token(Some(token.to_owned()));
        Ok(())
    }

    fn protocol(&self, message: impl Into<String>) -> EtcdError {
        EtcdError::Protocol {
            host: self.host().to_owned(),
            message: message.into(),
        }
    }

    fn header(&self, v: &Value) -> Result<Header, EtcdError> {
        Header::deserialize(v.get("header").cloned().unwrap_or(Value::Null))
            .map_err(|e| self.protocol(format!("header: {e}")))
    }

    fn kvs(&self, v: &Value) -> Result<Vec<Kv>, EtcdError> {
        let Some(list) = v.get("kvs") else {
            return Ok(Vec::new());
        };
        let raw: Vec<RawKv> =
            Vec::deserialize(list.clone()).map_err(|e| self.protocol(format!("kvs: {e}")))?;
        raw.into_iter()
            .map(|k| k.decode().map_err(|e| self.protocol(e)))
            .collect()
    }

    /// Every key under `prefix`, read in pages at one revision.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(Header, Vec<Kv>), EtcdError> {
        const PAGE: usize = 1000;
        let end = b64(prefix_end(prefix.as_bytes()));
        let mut from = prefix.as_bytes().to_vec();
        let mut all = Vec::new();
        let mut first: Option<Header> = None;
        loop {
            let mut body = json!({"key": b64(&from), "range_end": end, "limit": PAGE});
            if let Some(h) = first {
                body["revision"] = json!(h.revision.to_string());
            }
            let v = self.call("/v3/kv/range", &body).await?;
            let header = self.header(&v)?;
            let page = self.kvs(&v)?;
            let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
            first.get_or_insert(header);
            let last = page.last().map(|k| k.key.clone());
            all.extend(page);
            match (more, last) {
                (true, Some(last)) => {
                    from = last.into_bytes();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok((first.unwrap_or_default(), all))
    }

    /// One key.
    pub async fn get(&self, key: &str) -> Result<(Header, Option<Kv>), EtcdError> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key)})).await?;
        Ok((self.header(&v)?, self.kvs(&v)?.into_iter().next()))
    }

    /// The header only (a cheap liveness probe that also tells the cluster
    /// id and revision).
    pub async fn probe(&self, prefix: &str) -> Result<Header, EtcdError> {
        let body = json!({"key": b64(prefix), "range_end": b64(prefix_end(prefix.as_bytes())), "count_only": true});
        let v = self.call("/v3/kv/range", &body).await?;
        self.header(&v)
    }

    /// A transaction: `ops` when `compare` holds on `key`. Returns whether
    /// it held and etcd's header (the new revision when it did).
    pub async fn txn(
        &self,
        key: &str,
        compare: Compare,
        ops: &[Op],
    ) -> Result<(bool, Header), EtcdError> {
        let cmp = match compare {
            Compare::Absent => {
                json!({"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
            }
            Compare::ModRevision(r) => {
                json!({"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": r.to_string()})
            }
        };
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v, lease) => {
                    let mut put = json!({"key": b64(k), "value": b64(v)});
                    if *lease != 0 {
                        put["lease"] = json!(lease.to_string());
                    }
                    json!({"request_put": put})
                }
                Op::Delete(k) => json!({"request_delete_range": {"key": b64(k)}}),
                Op::DeletePrefix(p) => json!({"request_delete_range": {
                    "key": b64(p), "range_end": b64(prefix_end(p.as_bytes()))}}),
            })
            .collect();
        let v = self
            .call("/v3/kv/txn", &json!({"compare": [cmp], "success": success}))
            .await?;
        let ok = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        Ok((ok, self.header(&v)?))
    }

    /// A lease of `ttl` seconds; its id.
    pub async fn lease(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))
            .await?;
        #[derive(Deserialize)]
        struct Granted {
            #[serde(rename = "ID", deserialize_with = "int")]
            id: i64,
        }
        let g = Granted::deserialize(v).map_err(|e| self.protocol(format!("lease: {e}")))?;
        Ok(g.id)
    }

    /// Starts watching every key under `prefix` from `revision`.
    pub async fn watch(&self, prefix: &str, revision: i64) -> Result<WatchStream, EtcdError> {
        if self.auth.is_some() && self.token().is_none() {
            self.authenticate().await?;
        }
        let host = self.host().to_owned();
        let body = json!({"create_request": {
            "key": b64(prefix),
            "range_end": b64(prefix_end(prefix.as_bytes())),
            "start_revision": revision.to_string(),
        }});
        let resp = self.send("/v3/watch", &body).await?;
        if resp.status() != StatusCode::OK {
            return Err(EtcdError::Status {
                host,
                status: resp.status().as_u16(),
                message: "/v3/watch".into(),
            });
        }
        Ok(WatchStream {
            host,
            body: resp.into_body(),
            buf: BytesMut::new(),
        })
    }
}

/// The messages of one watch, newline-delimited JSON on one response.
pub struct WatchStream {
    host: String,
    body: Incoming,
    buf: BytesMut,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    kv: RawKv,
}

impl WatchStream {
    /// The next message; `Ok(None)` when etcd closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchMessage>, EtcdError> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(at + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return self.parse(line).map(Some);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(EtcdError::Unreachable {
                        host: self.host.clone(),
                        message: format!("watch: {e}"),
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<WatchMessage, EtcdError> {
        let protocol = |message: String| EtcdError::Protocol {
            host: self.host.clone(),
            message,
        };
        let v: Value = serde_json::from_slice(line).map_err(|e| protocol(format!("watch: {e}")))?;
        if let Some(err) = v.get("error") {
            return Ok(WatchMessage::Canceled(err.to_string()));
        }
        let r = v.get("result").cloned().unwrap_or(Value::Null);
        let header = Header::deserialize(r.get("header").cloned().unwrap_or(Value::Null))
            .map_err(|e| protocol(format!("watch header: {e}")))?;
        let compact: i64 = r
            .get("compact_revision")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .or_else(|| c.as_i64().map(|n| n.to_string()))
            })
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if compact > 0 {
            return Ok(WatchMessage::Compacted {
                compact_revision: compact,
            });
        }
        if r.get("canceled").and_then(Value::as_bool) == Some(true) {
            let reason = r
                .get("cancel_reason")
                .and_then(Value::as_str)
                .unwrap_or("canceled")
                .to_owned();
            return Ok(WatchMessage::Canceled(reason));
        }
        if r.get("created").and_then(Value::as_bool) == Some(true) {
            return Ok(WatchMessage::Created(header));
        }
        let raw: Vec<RawEvent> = match r.get("events") {
            Some(list) => Vec::deserialize(list.clone())
                .map_err(|e| protocol(format!("watch events: {e}")))?,
            None => Vec::new(),
        };
        let mut events = Vec::with_capacity(raw.len());
        for e in raw {
            let kv = e.kv.decode().map_err(protocol)?;
            events.push(match e.kind.as_deref() {
                Some("DELETE") => Event::Delete(kv),
                _ => Event::Put(kv),
            });
        }
        Ok(WatchMessage::Events(header, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/apisix/"), b"/apisix0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
