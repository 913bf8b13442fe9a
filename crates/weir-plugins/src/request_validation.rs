//! `request-validation`: refuses requests whose header fields or body do
//! not match a JSON Schema, as APISIX's `request-validation` (priority 2800,
//! rewrite phase).
//!
//! `header_schema` is checked against an object of the request's header
//! fields (names lower-cased; a repeated field's values as an array),
//! `body_schema` against the body decoded as JSON, or as a form
//! (`application/x-www-form-urlencoded`: an object of its fields, values
//! as strings). Schemas are draft 4 (APISIX's validator), compiled when the
//! configuration loads: an invalid schema is a configuration error. A
//! refusal is `rejected_code` (400) with `rejected_msg`, or the validator's
//! message, as plain text.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "request-validation",
    priority: 2800,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: true,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    header_schema: Option<Value>,
    body_schema: Option<Value>,
    #[serde(default = "default_code")]
    rejected_code: u16,
    rejected_msg: Option<String>,
    max_req_body_size: Option<u64>,
}

fn default_code() -> u16 {
    400
}

struct RequestValidation {
    header: Option<jsonschema::Validator>,
    body: Option<jsonschema::Validator>,
    code: StatusCode,
    message: Option<String>,
}

fn schema(v: &Option<Value>, at: &str) -> Result<Option<jsonschema::Validator>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    if !v.is_object() {
        return Err(ConfigError::at(at, "must be an object (a JSON Schema)"));
    }
    jsonschema::draft4::new(v)
        .map(Some)
        .map_err(|e| ConfigError::at(at, format!("not a valid JSON Schema: {e}")))
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    if c.header_schema.is_none() && c.body_schema.is_none() {
        return Err(ConfigError::whole("needs `header_schema` or `body_schema`"));
    }
    if !(200..=599).contains(&c.rejected_code) {
        return Err(ConfigError::at(
            "rejected_code",
            "must be between 200 and 599",
        ));
    }
    if let Some(m) = &c.rejected_msg {
        if m.is_empty() || m.len() > 256 {
            return Err(ConfigError::at("rejected_msg", "1 to 256 characters"));
        }
    }
    if c.max_req_body_size.is_some_and(|n| n > 1 << 20) {
        return Err(ConfigError::at(
            "max_req_body_size",
            "weir reads bodies for plugins up to 1 MiB (1048576)",
        ));
    }
    Ok(Arc::new(RequestValidation {
        header: schema(&c.header_schema, "header_schema")?,
        body: schema(&c.body_schema, "body_schema")?,
        code: StatusCode::from_u16(c.rejected_code)
            .map_err(|_| ConfigError::at("rejected_code", "not a status code"))?,
        message: c.rejected_msg,
    }))
}

impl RequestValidation {
    fn refuse(&self, why: String) -> Flow {
        let mut reply = LocalReply::empty(self.code);
        reply.replace_body(
            HeaderValue::from_static("text/plain"),
            Bytes::from(self.message.clone().unwrap_or(why)),
        );
        Flow::Reply(reply)
    }
}

fn headers_object(ctx: &RequestCtx<'_>) -> Value {
    let mut map = Map::new();
    for (name, value) in ctx.view().fields() {
        let v = Value::String(String::from_utf8_lossy(value).into_owned());
        match map.get_mut(&name.to_ascii_lowercase()) {
            Some(Value::Array(a)) => a.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, v]);
            }
            None => {
                map.insert(name.to_ascii_lowercase(), v);
            }
        }
    }
    Value::Object(map)
}

fn form_object(body: &[u8]) -> Value {
    let mut map = Map::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let decode =
            |s: &[u8]| weir_plugin::percent_decode(&String::from_utf8_lossy(s)).into_owned();
        map.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(map)
}

impl Plugin for RequestValidation {
    fn rewrite(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        if let Some(v) = &self.header {
            if let Err(e) = v.validate(&headers_object(ctx)) {
                return self.refuse(e.to_string());
            }
        }
        let Some(v) = &self.body else {
            return Flow::Continue;
        };
        let body = ctx.body().unwrap_or_default();
        let form = ctx
            .header("content-type")
            .is_some_and(|t| t.starts_with(b"application/x-www-form-urlencoded"));
        let instance = if form {
            form_object(body)
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => v,
                Err(e) => return self.refuse(format!("failed to decode the json body: {e}")),
            }
        };
        match v.validate(&instance) {
            Ok(()) => Flow::Continue,
            Err(e) => self.refuse(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn configuration_errors_name_the_field() {
        assert!(config_error(&SPEC, json!({}))
            .message
            .contains("header_schema"));
        assert_eq!(
            config_error(&SPEC, json!({"body_schema": {"type": 5}})).path,
            "body_schema"
        );
        assert_eq!(
            config_error(&SPEC, json!({"body_schema": []})).path,
            "body_schema"
        );
        assert_eq!(
            config_error(
                &SPEC,
                json!({"body_schema": {"type": "object"}, "rejected_code": 600})
            )
            .path,
            "rejected_code"
        );
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_object(b"a=1&b=x+y&c=%41"),
            json!({"a": "1", "b": "x y", "c": "A"})
        );
    }
}
