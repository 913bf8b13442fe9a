//! Where plugin configurations are checked. This crate does not know the
//! plugin catalogue: it checks the resource model and hands every plugin
//! entry (name + configuration, and where it appears) to a [`PluginCheck`].
//!
//! [`AnyPlugin`] is what [`crate::load_str`] uses: it only requires each
//! configuration to be an object. The plugins themselves (names, fields,
//! consumer-side settings) are checked by the engine when it compiles a
//! snapshot with the plugin catalogue (`weir validate` compiles too), so one
//! source, the plugin's typed configuration, parses and validates.

use crate::error::FieldError;

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
