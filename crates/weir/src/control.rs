//! The control API: status, readiness, Prometheus metrics, live routes and
//! upstreams, and the Kubernetes discovery dump. Read-only; binds to
//! 127.0.0.1 by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::gateway::GatewayCore;

/// The running control API.
pub struct ControlServer {
    /// Bound address.
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Binds and serves the control API.
    pub async fn start(address: &str, core: Arc<GatewayCore>) -> anyhow::Result<ControlServer> {
        let addr: SocketAddr = address
            .parse()
            .with_context(|| format!("control address {address:?}"))?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (control API)"))?;
        let local_addr = listener.local_addr()?;
        tracing::info!(address = %local_addr, "control API listening");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let core = core.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let core = core.clone();
                        async move { Ok::<_, Infallible>(route(&core, req)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(ControlServer { local_addr, task })
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

fn route(core: &GatewayCore, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error_msg": "the control API is read-only: use GET"}),
        );
    }
    match req.uri().path() {
        "/status" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/status/ready" => match core.not_ready_reason() {
            None => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Some(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "error": reason}),
            ),
        },
        "/v1/routes" => {
            let config = core.config.load();
            json_response(StatusCode::OK, &json!(config.routes))
        }
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(crate::metrics::render(core))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            resp
        }
        "/v1/upstreams" => json_response(StatusCode::OK, &upstreams(core)),
        "/v1/healthcheck" => json_response(StatusCode::OK, &healthcheck(core)),
        "/v1/config_source" => json_response(StatusCode::OK, &config_source(core)),
        "/v1/reload" => json_response(StatusCode::OK, &json!(*core.reload_status().borrow())),
        "/v1/discovery/kubernetes/dump" => match core.discovery_dump() {
            Some(dump) => json_response(StatusCode::OK, &dump),
            None => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error_msg": "kubernetes discovery is not configured"}),
            ),
        },
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error_msg": "not found"})),
    }
}

/// Where the configuration comes from and, for etcd, the connection's
/// state (no secret is ever part of it).
fn config_source(core: &GatewayCore) -> Value {
    match core.hub.etcd() {
        Some(src) => json!(src.status()),
        None => {
            let config = core.config.load();
            json!({
                "provider": "yaml",
                "state_file": config.deployment.admin.state_file,
            })
        }
    }
}

/// Every compiled upstream with the nodes it routes to right now.
fn upstreams(core: &GatewayCore) -> Value {
    let snapshot = core.proxy.snapshot.load();
    let mut ids: Vec<&String> = snapshot.upstreams.keys().collect();
    ids.sort();
    let list: Vec<Value> = ids
        .into_iter()
        .filter_map(|id| snapshot.upstreams.get(id).map(|u| (id, u)))
        .map(|(id, up)| {
            let set = up.node_set();
            let nodes: Vec<Value> = set
                .nodes
                .iter()
                .zip(&set.balance_nodes)
                .map(|(n, b)| {
                    json!({
                        "host": n.endpoint.host,
                        "port": n.endpoint.port,
                        "weight": b.weight,
                        "in_flight": n.load.in_flight(),
                        "idle_connections": n.pool.idle_count() + n.h1_pool.idle_count(),
                    })
                })
                .collect();
            json!({
                "id": id,
                "type": up.lb,
                "service_name": up.service_name(),
                "nodes": nodes,
            })
        })
        .collect();
    Value::Array(list)
}

/// Health of every node of every upstream that has `checks`, in the spirit
/// of APISIX's `/v1/healthcheck`.
fn healthcheck(core: &GatewayCore) -> Value {
    let snapshot = core.proxy.snapshot.load();
    let mut ids: Vec<&String> = snapshot.upstreams.keys().collect();
    ids.sort();
    let list: Vec<Value> = ids
        .into_iter()
        .filter_map(|id| snapshot.upstreams.get(id).map(|u| (id, u)))
        .filter_map(|(id, up)| up.health.as_ref().map(|policy| (id, up, policy)))
        .map(|(id, up, policy)| {
            let set = up.node_set();
            let nodes: Vec<Value> = set
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "host": n.endpoint.host,
                        "port": n.endpoint.port,
                        "status": if n.health.is_healthy() { "healthy" } else { "unhealthy" },
                        "counter": n.health.counters(),
                    })
                })
                .collect();
            json!({
                "name": id,
                "active": policy.active.is_some(),
                "passive": policy.passive.is_some(),
                "nodes": nodes,
            })
        })
        .collect();
    Value::Array(list)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(body).unwrap_or_default();
    text.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
