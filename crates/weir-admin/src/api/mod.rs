//! The Admin API over HTTP/1.1 on its own listener: APISIX v3's paths,
//! methods, status codes and bodies. Every answer is JSON with
//! `X-API-VERSION: v3`.

mod auth;
mod query;
mod read;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::AdminError;
use crate::hub::{ConfigHub, Engine};
use crate::kind::Kind;
use crate::ops::Write;

/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest request body, as APISIX (1.5 MiB).
const MAX_BODY: usize = 1024 * 1024 * 3 / 2;

/// The running Admin API.
pub struct AdminServer {
    /// Bound address.
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

/// The Admin API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (Admin API, deployment.admin.admin_listen): {source}")]
pub struct StartError {
    address: String,
    source: std::io::Error,
}

struct Ctx<E> {
    hub: Arc<ConfigHub>,
    engine: Arc<E>,
}

impl AdminServer {
    /// Binds `address` and serves the Admin API for `hub`, applying writes
    /// through `engine`.
    pub async fn start<E: Engine>(
        address: &str,
        hub: Arc<ConfigHub>,
        engine: Arc<E>,
    ) -> Result<AdminServer, StartError> {
        let err = |source| StartError {
            address: address.to_owned(),
            source,
        };
        let listener = TcpListener::bind(address).await.map_err(err)?;
        let local_addr = listener.local_addr().map_err(err)?;
        tracing::info!(address = %local_addr, writable = hub.is_writable(), "admin API listening");
        if !hub.is_writable() {
            tracing::warn!("the Admin API is read-only: deployment.admin.state_file is not set");
        }
        let ctx = Arc::new(Ctx { hub, engine });
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("admin API accept: {e}");
                        continue;
                    }
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(handle(&ctx, peer, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(AdminServer { local_addr, task })
    }

    /// Stops accepting connections.
    pub fn stop(self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: Option<&Value>) -> Response<Full<Bytes>> {
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-api-version", HeaderValue::from_static("v3"));
    resp
}

fn error_reply(e: &AdminError) -> Response<Full<Bytes>> {
    reply(e.status(), Some(&e.body()))
}

async fn handle<E: Engine>(
    ctx: &Ctx<E>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let view = ctx.hub.view();
    let settings = &view.file.deployment.admin;
    if !auth::allowed(settings, peer.ip()) {
        tracing::debug!(client = %peer, "admin API: client not in allow_admin");
        return reply(
            StatusCode::FORBIDDEN,
            Some(
                &json!({"error_msg": "forbidden: the client address is not in deployment.admin.allow_admin"}),
            ),
        );
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(rest) = path
        .strip_prefix("/apisix/admin")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return reply(
            StatusCode::NOT_FOUND,
            Some(&json!({"error_msg": "not found"})),
        );
    };
    if parts.method == Method::HEAD && (rest.is_empty() || rest == "/") {
        return reply(StatusCode::OK, None);
    }
    let args: HashMap<String, String> = parts
        .uri
        .query()
        .map(query::parse)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let by = match auth::check(
        &parts,
        args.get("api_key").map(String::as_str),
        &settings.admin_key,
    ) {
        Ok(k) => k.name.clone(),
        Err(refusal) => {
            tracing::warn!(client = %peer, method = %parts.method, path = %path, reason = refusal.description(), "admin API: failed to check token");
            return reply(
                StatusCode::UNAUTHORIZED,
                Some(
                    &json!({"error_msg": "failed to check token", "description": refusal.description()}),
                ),
            );
        }
    };
    drop(view);
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_reply(&AdminError::BadRequest(format!(
                "invalid request body: {e}"
            )));
        }
    };
    let body: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return error_reply(&AdminError::BadRequest(format!(
                    "invalid request body: {e}"
                )))
            }
        }
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = parts.method.clone();
    let result = match segs.as_slice() {
        ["plugins", "list"] => plugins_list(ctx, &method, &args),
        ["plugins", ..] => Err(AdminError::Missing(
            "weir does not publish plugin JSON schemas; POST /apisix/admin/schema/validate/{resource} checks a configuration".into(),
        )),
        ["schema", "validate", res] if method == Method::POST => match Kind::from_segment(res).filter(|k| *k != Kind::Credential) {
            Some(kind) => ctx.hub.validate(&*ctx.engine, kind, body).map(|()| (StatusCode::OK, None)),
            None => Err(match crate::kind::not_supported(res) {
                Some(why) => AdminError::BadRequest(why.into()),
                None => AdminError::Missing(format!("Unsupported resource type: {res}")),
            }),
        },
        _ => resource(ctx, &method, &segs, body, &args).await.map(|(s, b)| (s, Some(b))),
    };
    match result {
        Ok((status, body)) => {
            if method != Method::GET {
                tracing::info!(method = %method, path = %path, status = status.as_u16(), by = %by, "admin API change");
            }
            reply(status, body.as_ref())
        }
        Err(e) => {
            if method != Method::GET {
                tracing::info!(method = %method, path = %path, status = e.status().as_u16(), by = %by, error = %e, "admin API change refused");
            }
            error_reply(&e)
        }
    }
}

fn plugins_list<E: Engine>(
    ctx: &Ctx<E>,
    method: &Method,
    args: &HashMap<String, String>,
) -> Result<(StatusCode, Option<Value>), AdminError> {
    if method != Method::GET {
        return Err(AdminError::MethodNotAllowed(format!(
            "not supported `{method}` method for plugins"
        )));
    }
    match args.get("subsystem").map(String::as_str) {
        None | Some("http") => Ok((StatusCode::OK, Some(json!(ctx.engine.plugin_names())))),
        Some("stream") => Ok((StatusCode::OK, Some(json!([])))),
        Some(other) => Err(AdminError::BadRequest(format!(
            "unsupported subsystem: {other}"
        ))),
    }
}

/// `/apisix/admin/<kind>[/<id>[/<sub path>]]` and
/// `/apisix/admin/consumers/<username>/credentials[/<id>]`.
async fn resource<E: Engine>(
    ctx: &Ctx<E>,
    method: &Method,
    segs: &[&str],
    body: Option<Value>,
    args: &HashMap<String, String>,
) -> Result<(StatusCode, Value), AdminError> {
    let Some(first) = segs.first() else {
        return Err(AdminError::Missing("Unsupported resource type: ".into()));
    };
    let (kind, owner, id, sub_path) = match segs {
        ["consumers", user, "credentials", rest @ ..] => {
            if rest.len() > 1 {
                return Err(AdminError::Missing("not found".into()));
            }
            (
                Kind::Credential,
                Some((*user).to_owned()),
                rest.first().map(|s| (*s).to_owned()),
                None,
            )
        }
        [res, rest @ ..] => {
            if let Some(why) = crate::kind::not_supported(res) {
                return Err(AdminError::BadRequest(why.into()));
            }
            let kind = Kind::from_segment(res)
                .filter(|k| *k != Kind::Credential)
                .ok_or_else(|| {
                    AdminError::Missing(format!("Unsupported resource type: {first}"))
                })?;
            let sub = (rest.len() > 1).then(|| rest[1..].join("/"));
            (kind, None, rest.first().map(|s| (*s).to_owned()), sub)
        }
        [] => return Err(AdminError::Missing("Unsupported resource type: ".into())),
    };
    if *method == Method::GET {
        let view = ctx.hub.view();
        return match &id {
            Some(id) => read::one(&view, kind, owner.as_deref(), id),
            None => read::list(&view, kind, owner.as_deref(), args),
        }
        .map(|v| (StatusCode::OK, v));
    }
    let ttl = match args.get("ttl") {
        None => None,
        Some(t) => match t.parse::<u64>() {
            Ok(n) if n > 0 && n <= 10 * 365 * 24 * 3600 => Some(n),
            _ => {
                return Err(AdminError::BadRequest(format!(
                    "invalid ttl {t:?}: must be a whole number of seconds above 0"
                )))
            }
        },
    };
    let w = Write {
        method: method.clone(),
        kind,
        owner,
        id,
        sub_path,
        body,
        force: args.get("force").is_some_and(|f| f == "true"),
    };
    let written = ctx.hub.write_with_ttl(&*ctx.engine, w, ttl).await?;
    Ok((written.status, written.body))
}
