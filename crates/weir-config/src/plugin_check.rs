//! Where plugin configurations are checked. This crate does not know the
//! plugin catalogue: it checks the resource model and hands every plugin
//! entry (name + configuration, and where it appears) to a [`PluginCheck`].
//!
//! [`BuiltinPlugins`] is what [`crate::load_str`] uses: today's catalogue
//! ([`KNOWN_PLUGINS`]). The plugin catalogue supplies its own checker
//! through [`crate::LoadOptions`]; [`AnyPlugin`] accepts every plugin whose
//! configuration is an object (for tools that only check the resources).

use crate::error::FieldError;
use crate::path;

/// Plugins weir knows. The catalogue grows with the plugin issue.
pub const KNOWN_PLUGINS: &[&str] = &["echo"];

/// Plugins that identify a consumer: the only ones a credential may hold.
pub const AUTH_PLUGINS: &[&str] = &["key-auth", "basic-auth", "jwt-auth", "hmac-auth"];

/// Where a plugin entry appears; plugins have different schemas on routes,
/// on consumers/credentials, and as metadata (APISIX's `schema`,
/// `consumer_schema`, `metadata_schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginSite {
    /// `routes[].plugins`.
    Route,
    /// `services[].plugins`.
    Service,
    /// `plugin_configs[].plugins`.
    PluginConfig,
    /// `global_rules[].plugins`.
    GlobalRule,
    /// `consumer_groups[].plugins`.
    ConsumerGroup,
    /// `consumers[].plugins`.
    Consumer,
    /// `credentials[].plugins`.
    Credential,
    /// `plugin_metadata.<name>`.
    Metadata,
}

/// Checks one plugin entry. `at` is the entry's field path
/// (`routes[0].plugins.key-auth`); errors name it or a path below it.
pub trait PluginCheck: Sync {
    /// Reports every problem of `conf` (the configuration of plugin `name`
    /// at `site`) into `errors`.
    fn check(
        &self,
        site: PluginSite,
        name: &str,
        conf: &serde_json::Value,
        at: &str,
        errors: &mut Vec<FieldError>,
    );
}

/// Today's built-in catalogue: the names in [`KNOWN_PLUGINS`] and `echo`'s
/// fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinPlugins;

/// Accepts any plugin name; only requires the configuration to be an object.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyPlugin;

fn object(conf: &serde_json::Value, at: &str, errors: &mut Vec<FieldError>) -> bool {
    if conf.is_object() {
        true
    } else {
        errors.push(FieldError::new(
            at,
            "plugin configuration must be an object",
        ));
        false
    }
}

impl PluginCheck for AnyPlugin {
    fn check(
        &self,
        _site: PluginSite,
        _name: &str,
        conf: &serde_json::Value,
        at: &str,
        errors: &mut Vec<FieldError>,
    ) {
        object(conf, at, errors);
    }
}

impl PluginCheck for BuiltinPlugins {
    fn check(
        &self,
        _site: PluginSite,
        name: &str,
        conf: &serde_json::Value,
        at: &str,
        errors: &mut Vec<FieldError>,
    ) {
        if !KNOWN_PLUGINS.contains(&name) {
            errors.push(FieldError::new(
                at,
                format!("unknown plugin, available: {}", KNOWN_PLUGINS.join(", ")),
            ));
            return;
        }
        if !object(conf, at, errors) || name != "echo" {
            return;
        }
        let Some(obj) = conf.as_object() else { return };
        for k in obj.keys() {
            if k != "status" && k != "disable" {
                errors.push(FieldError::new(
                    path::key(at, k),
                    "unknown field, expected status or disable",
                ));
            }
        }
        if let Some(s) = obj.get("status") {
            if !s.as_u64().is_some_and(|s| (100..=599).contains(&s)) {
                errors.push(FieldError::new(
                    path::key(at, "status"),
                    "must be an HTTP status 100..599",
                ));
            }
        }
    }
}
