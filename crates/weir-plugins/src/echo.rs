//! `echo` (weir's own): answers with JSON describing the request, like
//! httpbin's `/anything` (method, url, args, headers, origin, data). Useful
//! as a default route and for trying routes without a backend.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "echo",
    priority: 412,
    phases: Phases::of(&[Phase::Access]),
    needs_body: true,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    /// The status to answer with (default 200).
    #[serde(default = "ok")]
    status: u16,
}

fn ok() -> u16 {
    200
}

struct Echo {
    status: StatusCode,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let status = StatusCode::from_u16(conf.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .ok_or_else(|| ConfigError::at("status", "must be between 200 and 599"))?;
    Ok(Arc::new(Echo { status }))
}

impl Plugin for Echo {
    fn access(&self, req: &mut RequestCtx<'_>) -> Flow {
        let view = req.view();
        let mut headers = Map::new();
        for (name, value) in view.fields() {
            let v = Value::String(String::from_utf8_lossy(value).into_owned());
            headers.insert(title_case(name), v);
        }
        let mut args = Map::new();
        if let Some(q) = view.query() {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        let host = view.host().map(String::from_utf8_lossy).unwrap_or_default();
        let scheme = if req.conn().tls { "https" } else { "http" };
        let url = format!("{scheme}://{host}{}", view.path_and_query());
        let data = req
            .body()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let doc = json!({
            "args": args,
            "data": data,
            "headers": headers,
            "method": view.method(),
            "origin": req.remote_ip().to_string(),
            "url": url,
        });
        let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        text.push(b'\n');
        Flow::Reply(LocalReply {
            status: self.status,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(text),
        })
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
