//! `echo`: answers with JSON describing the request, like httpbin's
//! `/anything` (method, url, args, headers, origin, data).

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::Response;
use serde_json::{json, Map, Value};

use super::PluginContext;
use crate::body::ProxyBody;

/// Request bodies larger than this are not echoed back.
const MAX_ECHO_BODY: usize = 1 << 20;

/// The `echo` plugin.
#[derive(Debug, Clone)]
pub struct EchoPlugin {
    status: StatusCode,
}

impl EchoPlugin {
    /// From `{status?: 100..599}`.
    pub fn from_config(conf: &Value) -> Result<EchoPlugin, String> {
        let status = match conf.get("status").and_then(Value::as_u64) {
            None => StatusCode::OK,
            Some(s) => u16::try_from(s)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| format!("invalid status {s}"))?,
        };
        Ok(EchoPlugin { status })
    }

    /// Builds the echo response (reads the request body, up to 1 MiB).
    pub async fn respond(
        &self,
        parts: &Parts,
        body: Incoming,
        ctx: &PluginContext<'_>,
    ) -> Response<ProxyBody> {
        let data = match Limited::new(body, MAX_ECHO_BODY).collect().await {
            Ok(c) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
            Err(_) => String::from("<request body too large or unreadable>"),
        };
        let mut headers = Map::new();
        for (name, value) in &parts.headers {
            let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
            headers.insert(title_case(name.as_str()), v);
        }
        if !headers.contains_key("Host") {
            headers.insert("Host".into(), Value::String(ctx.host.to_owned()));
        }
        let mut args = Map::new();
        if let Some(q) = parts.uri.query() {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or(ctx.host);
        let url = format!("{}://{}{}", ctx.scheme, authority, path);
        let doc = json!({
            "args": args,
            "data": data,
            "headers": headers,
            "method": parts.method.as_str(),
            "origin": ctx.remote.ip().to_string(),
            "url": url,
        });
        let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        text.push(b'\n');
        let mut resp = Response::new(ProxyBody::full(Bytes::from(text)));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// `x-forwarded-for` -> `X-Forwarded-For`, as httpbin shows headers.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out
}
