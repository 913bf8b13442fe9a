//! Helpers shared by the integration tests.
#![allow(dead_code)]

use weir_config::{AnyPlugin, Config, LoadError, LoadOptions};

fn no_env(_: &str) -> Option<String> {
    None
}

/// Loads with every plugin accepted (plugin schemas are not this crate's).
pub fn load(yaml: &str) -> Config {
    try_load(yaml).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_load(yaml: &str) -> Result<Config, LoadError> {
    let options = LoadOptions {
        plugins: &AnyPlugin,
        env: &no_env,
    };
    weir_config::load_str_with(yaml, "test.yaml", &options)
}

/// The errors as `path: message` lines.
pub fn errors(yaml: &str) -> Vec<String> {
    match try_load(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(LoadError::Invalid { errors, .. }) => errors.0.iter().map(|e| e.to_string()).collect(),
        Err(e) => panic!("expected field errors, got {e}"),
    }
}

/// Asserts one error is at `path` and contains `needle`.
#[track_caller]
pub fn has(errors: &[String], path: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "no error at {path} containing {needle:?} in {errors:#?}"
    );
}

/// Asserts no error is at or below `path`.
#[track_caller]
pub fn none_at(errors: &[String], path: &str) {
    assert!(
        !errors.iter().any(|e| e.starts_with(path)),
        "unexpected error at {path} in {errors:#?}"
    );
}

pub const NODE: &str = r#"{nodes: {"10.0.0.1:80": 1}}"#;
