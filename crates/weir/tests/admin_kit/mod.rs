//! The harness of the Admin API tests (`admin_api*.rs`): a gateway started
//! with the Admin API on a port-0 listener and a state file in a temporary
//! directory, and a client that calls the Admin API with a key.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::common;

/// The admin key of these tests.
pub const KEY: &str = "test-admin-key-0f3a9c";
/// A viewer key.
pub const VIEWER: &str = "test-viewer-key-77b1";

/// The `deployment:` block: both keys, port 0, and `state_file` when given.
pub fn deployment(state_file: Option<&std::path::Path>) -> String {
    let state = state_file
        .map(|p| format!("    state_file: {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "deployment:\n  admin:\n    admin_listen: {{ip: 127.0.0.1, port: 0}}\n    admin_key:\n      - {{name: admin, key: {KEY}, role: admin}}\n      - {{name: viewer, key: {VIEWER}, role: viewer}}\n{state}"
    )
}

/// A gateway with the Admin API, its state file in `dir`.
pub struct Started {
    pub gw: weir::Gateway,
    pub admin: Admin,
    pub dir: tempfile::TempDir,
}

impl Started {
    /// The state file's path.
    pub fn state_file(&self) -> std::path::PathBuf {
        self.dir.path().join("admin-state.json")
    }

    pub fn proxy(&self) -> SocketAddr {
        self.gw.proxy_addr()
    }
}

/// Starts a gateway in-process on `file` (a configuration without a
/// `deployment:` block) with a writable Admin API.
pub async fn start(file: &str) -> Started {
    let dir = tempfile::tempdir().expect("temporary directory");
    let yaml = format!(
        "{file}\n{}",
        deployment(Some(&dir.path().join("admin-state.json")))
    );
    let gw = weir::Gateway::start(common::config(&yaml))
        .await
        .expect("gateway start");
    let admin = Admin::new(gw.admin_addr().expect("the Admin API runs"));
    Started { gw, admin, dir }
}

/// An Admin API answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

/// A client of one Admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        Admin { addr }
    }

    /// `method path` with the admin key.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[("x-api-key", KEY)])
            .await
    }

    /// `method path` with these header fields (no key unless given).
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        fields: &[(&str, &str)],
    ) -> Answer {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(format!("http://{}{path}", self.addr));
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        let req = b.body(common::body(&body)).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), common::client().request(req))
            .await
            .expect("the Admin API answers within 30 s")
            .expect("Admin API request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    /// PUT with the admin key; `None` when the connection fails (the
    /// gateway was killed).
    pub async fn try_put(&self, path: &str, body: Value) -> Option<Answer> {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!("http://{}{path}", self.addr))
            .header("x-api-key", KEY)
            .body(common::body(&body.to_string()))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), common::client().request(req))
            .await
            .expect("the Admin API answers or fails within 30 s")
            .ok()?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some(Answer {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None).await
    }

    /// PUT that must succeed (200 or 201).
    pub async fn put_ok(&self, path: &str, body: Value) -> Answer {
        let a = self.put(path, body).await;
        assert!(
            a.status == StatusCode::OK || a.status == StatusCode::CREATED,
            "PUT {path}: {} {}",
            a.status,
            a.text
        );
        a
    }
}

/// Polls `GET path` on the proxy until `pred` holds on (status, body), at
/// most 10 s; returns the last answer.
pub async fn wait_proxy(
    proxy: SocketAddr,
    path: &str,
    what: &str,
    pred: impl Fn(StatusCode, &str) -> bool,
) -> common::Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::get(proxy, None, path).await;
        if pred(r.status, &r.body) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {} {:?} after 10 s",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A self-signed certificate and key for `name`, in PEM.
pub fn cert(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// A minimal gateway file: one listener, no routes of its own.
pub const EMPTY: &str = "gateway:\n  listeners: [{address: \"127.0.0.1:0\"}]\n";

/// A gateway file with `config_provider: etcd` on `hosts`, a control API
/// and the Admin API (both on port 0).
pub fn etcd_file(hosts: &[String]) -> String {
    format!(
        "gateway:\n  listeners: [{{address: \"127.0.0.1:0\"}}]\n  control: {{address: \"127.0.0.1:0\"}}\n  access_log: {{enabled: false}}\ndeployment:\n  role_traditional: {{config_provider: etcd}}\n  etcd:\n    host: {hosts:?}\n    timeout: 2\n  admin:\n    admin_listen: {{ip: 127.0.0.1, port: 0}}\n    admin_key:\n      - {{name: admin, key: {KEY}, role: admin}}\n      - {{name: viewer, key: {VIEWER}, role: viewer}}\n"
    )
}

/// A gateway on etcd at `hosts`, ready (etcd read once), and its Admin API.
pub async fn start_etcd(hosts: &[String]) -> (weir::Gateway, Admin) {
    let gw = weir::Gateway::start(common::config(&etcd_file(hosts)))
        .await
        .expect("gateway start");
    assert!(
        gw.wait_ready(Duration::from_secs(10)).await,
        "the gateway read etcd within 10 s"
    );
    let admin = Admin::new(gw.admin_addr().expect("the Admin API runs"));
    (gw, admin)
}

/// `GET path` on the gateway's control API, as JSON.
pub async fn control(gw: &weir::Gateway, path: &str) -> common::Reply {
    common::get(gw.control_addr().expect("control API"), None, path).await
}

/// Polls the control API's `/v1/config_source` until `pred` holds (10 s).
pub async fn wait_source(gw: &weir::Gateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = control(gw, "/v1/config_source").await;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        if pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /v1/config_source still {v} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
