//! Reading a document (YAML or JSON) into a validated [`Config`].
//!
//! Each section, and each element of a list, is decoded on its own so that one
//! broken route does not hide the errors of the next: the user sees every
//! problem at once, each with its field path.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Errors, FieldErrors, LoadError};
use crate::model::Config;
use crate::path;
use crate::validate;

/// The configuration `weir run` uses when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

const SECTIONS: &[&str] = &["gateway", "routes", "upstreams", "ssls", "discovery"];

/// Reads, parses and validates a configuration file.
pub fn load_file(file: &str) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|source| LoadError::Io {
        path: file.to_owned(),
        source,
    })?;
    load_str(&text, file)
}

/// Parses and validates the embedded default configuration.
pub fn load_default() -> Result<Config, LoadError> {
    load_str(EMBEDDED_DEFAULT, "<embedded default>")
}

/// Parses and validates a document; `origin` names it in messages.
pub fn load_str(text: &str, origin: &str) -> Result<Config, LoadError> {
    let doc = parse_document(text).map_err(|message| LoadError::Syntax {
        origin: origin.to_owned(),
        message,
    })?;
    let mut errors = Errors::default();
    let mut positions = validate::Positions::default();
    let config = decode(doc, &mut errors, &mut positions);
    // Semantic checks run even after decoding errors, on what did decode,
    // under the original list positions, so every problem is reported at once.
    validate::validate(&config, &positions, &mut errors);
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(LoadError::Invalid {
            origin: origin.to_owned(),
            errors: FieldErrors(errors.0),
        })
    }
}

/// YAML or JSON text to a generic tree. JSON is detected by its first byte.
fn parse_document(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    Ok(match value {
        Value::Null => Value::Object(Default::default()),
        v => v,
    })
}

fn decode(doc: Value, errors: &mut Errors, positions: &mut validate::Positions) -> Config {
    let mut config = Config::default();
    let Value::Object(top) = doc else {
        errors.add(
            "",
            "the document must be a mapping with gateway/routes/upstreams/ssls/discovery",
        );
        return config;
    };
    let before = errors.0.len();
    for (name, value) in top {
        match name.as_str() {
            "gateway" => {
                if let Some(g) = decode_one(value, "gateway", errors) {
                    config.gateway = g;
                }
            }
            "routes" => (config.routes, positions.routes, _) = decode_list(value, "routes", errors),
            "upstreams" => {
                let complete;
                (config.upstreams, positions.upstreams, complete) =
                    decode_list(value, "upstreams", errors);
                positions.upstreams_incomplete = !complete;
            }
            "ssls" => (config.ssls, positions.ssls, _) = decode_list(value, "ssls", errors),
            "discovery" => {
                if !value.is_null() {
                    config.discovery = decode_one(value, "discovery", errors);
                }
            }
            other => errors.add(
                path::key("", other),
                format!("unknown section, expected one of {}", SECTIONS.join(", ")),
            ),
        }
    }
    if errors.0.len() > before {
        // Keep the order users read files in: by path.
        errors.0[before..].sort_by(|a, b| a.path.cmp(&b.path));
    }
    config
}

fn decode_one<T: DeserializeOwned>(value: Value, at: &str, errors: &mut Errors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let p = path::from_serde(at, e.path());
            errors.add(p, e.into_inner().to_string());
            None
        }
    }
}

/// Decodes each element on its own; returns the decoded ones, their
/// positions in the document, and whether every element decoded.
fn decode_list<T: DeserializeOwned>(
    value: Value,
    at: &str,
    errors: &mut Errors,
) -> (Vec<T>, Vec<usize>, bool) {
    let mut out = Vec::new();
    let mut positions = Vec::new();
    let mut complete = true;
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                match decode_one(item, &path::index(at, i), errors) {
                    Some(v) => {
                        out.push(v);
                        positions.push(i);
                    }
                    None => complete = false,
                }
            }
        }
        _ => {
            errors.add(at, "must be a list");
            complete = false;
        }
    }
    (out, positions, complete)
}
