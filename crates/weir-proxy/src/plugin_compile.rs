//! Resolving a resource's `plugins` map into a [`Pipeline`]: each name found
//! in the catalogue, `_meta` applied, the typed configuration built. Pure:
//! building plugins starts nothing.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use weir_config::FieldError;
use weir_plugin::{BuildCtx, Entry, Pipeline, RequestCtx};

/// Builds the pipeline of a `plugins` map found at `at`
/// (`routes[3].plugins`). Every error is reported, each with its path.
pub fn compile(
    plugins: &BTreeMap<String, Value>,
    at: &str,
    ctx: &BuildCtx<'_>,
    errors: &mut Vec<FieldError>,
) -> Pipeline {
    Pipeline::new(compile_entries(plugins, at, ctx, errors))
}

/// The built plugins of a `plugins` map, unordered (for pipelines gathered
/// from several maps).
pub fn compile_entries(
    plugins: &BTreeMap<String, Value>,
    at: &str,
    ctx: &BuildCtx<'_>,
    errors: &mut Vec<FieldError>,
) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(plugins.len());
    for (name, conf) in plugins {
        let path = format!("{at}.{name}");
        let Some(spec) = weir_plugins::find(name) else {
            errors.push(FieldError::new(
                path,
                format!(
                    "unknown plugin, available: {}",
                    weir_plugins::names().join(", ")
                ),
            ));
            continue;
        };
        let Some(obj) = conf.as_object() else {
            errors.push(FieldError::new(
                path,
                "plugin configuration must be an object",
            ));
            continue;
        };
        let mut obj = obj.clone();
        let meta = match Meta::take(&mut obj, &path) {
            Ok(m) => m,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if meta.disable {
            continue;
        }
        match (spec.build)(&Value::Object(obj), ctx) {
            Ok(plugin) => entries.push(Entry {
                spec,
                plugin,
                priority: meta.priority.unwrap_or(spec.priority),
                filter: meta.filter.map(|vars| -> weir_plugin::pipeline::Filter {
                    Box::new(move |ctx: &RequestCtx<'_>| vars.eval(&weir_plugins::CtxVars(ctx)))
                }),
                error_response: meta.error_response,
            }),
            Err(e) if e.absolute => {
                let err = FieldError::new(e.path, e.message);
                if !errors.contains(&err) {
                    errors.push(err);
                }
            }
            Err(e) if e.path.is_empty() => errors.push(FieldError::new(path, e.message)),
            Err(e) => errors.push(FieldError::new(format!("{path}.{}", e.path), e.message)),
        }
    }
    entries
}

/// A plugin's `_meta` block (and the legacy top-level `disable`).
struct Meta {
    disable: bool,
    priority: Option<i32>,
    error_response: Option<Bytes>,
    filter: Option<weir_config::vars::Vars>,
}

impl Meta {
    fn take(conf: &mut serde_json::Map<String, Value>, at: &str) -> Result<Meta, FieldError> {
        let mut meta = Meta {
            disable: false,
            priority: None,
            error_response: None,
            filter: None,
        };
        if let Some(d) = conf.remove("disable") {
            meta.disable = d
                .as_bool()
                .ok_or_else(|| FieldError::new(format!("{at}.disable"), "must be a boolean"))?;
        }
        let Some(m) = conf.remove("_meta") else {
            return Ok(meta);
        };
        let at = format!("{at}._meta");
        let Value::Object(m) = m else {
            return Err(FieldError::new(at, "must be an object"));
        };
        for (k, v) in m {
            let field = format!("{at}.{k}");
            match k.as_str() {
                "disable" => {
                    meta.disable |= v
                        .as_bool()
                        .ok_or_else(|| FieldError::new(field, "must be a boolean"))?;
                }
                "priority" => {
                    let p = v
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| FieldError::new(field, "must be an integer"))?;
                    meta.priority = Some(p);
                }
                "error_response" => {
                    meta.error_response = Some(match v {
                        Value::String(s) => Bytes::from(s),
                        // A JSON body as APISIX sends a table: JSON and a newline.
                        Value::Object(_) => Bytes::from(format!("{v}\n")),
                        _ => return Err(FieldError::new(field, "must be a string or an object")),
                    });
                }
                "filter" => {
                    let vars = weir_config::vars::Vars::from_value(&v).map_err(|e| {
                        let at = if e.path.is_empty() {
                            field.clone()
                        } else {
                            format!("{field}{}", e.path)
                        };
                        FieldError::new(at, e.message)
                    })?;
                    meta.filter = Some(vars);
                }
                "pre_function" => {
                    return Err(FieldError::new(field, "not supported: weir runs no Lua"))
                }
                _ => {
                    return Err(FieldError::new(
                        field,
                        "unknown field, expected disable, priority, error_response or filter",
                    ))
                }
            }
        }
        Ok(meta)
    }
}
