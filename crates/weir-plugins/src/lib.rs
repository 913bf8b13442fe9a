//! The plugin catalogue. Each plugin is one file; adding one is that file,
//! one line in [`CATALOGUE`] and its section in `docs/plugins.md`.
#![forbid(unsafe_code)]

mod api_breaker;
mod auth;
mod basic_auth;
mod consumer_restriction;
mod cors;
mod echo;
mod fault_injection;
mod file_logger;
mod hmac_auth;
mod ip_restriction;
mod ipmatch;
mod jwt_auth;
mod key_auth;
pub mod limit;
mod limit_conn;
mod limit_count;
mod limit_req;
pub mod opentelemetry;
pub mod prometheus;
pub mod proxy_mirror;
mod proxy_rewrite;
mod real_ip;
mod redirect;
mod referer_restriction;
mod request_id;
mod request_validation;
mod response_rewrite;
mod secret;
mod template;
#[cfg(test)]
mod testing;
mod traffic_split;
mod ua_restriction;

use weir_plugin::PluginSpec;

/// Every plugin weir knows.
pub static CATALOGUE: &[&PluginSpec] = &[
    &echo::SPEC,
    &key_auth::SPEC,
    &basic_auth::SPEC,
    &jwt_auth::SPEC,
    &hmac_auth::SPEC,
    &ip_restriction::SPEC,
    &consumer_restriction::SPEC,
    &ua_restriction::SPEC,
    &referer_restriction::SPEC,
    &cors::SPEC,
    &request_id::SPEC,
    &real_ip::SPEC,
    &redirect::SPEC,
    &file_logger::SPEC,
    &limit_count::SPEC,
    &traffic_split::SPEC,
    &fault_injection::SPEC,
    &proxy_mirror::SPEC,
    &proxy_rewrite::SPEC,
    &response_rewrite::SPEC,
    &api_breaker::SPEC,
    &request_validation::SPEC,
    &limit_req::SPEC,
    &limit_conn::SPEC,
    &prometheus::SPEC,
    &opentelemetry::SPEC,
];

/// The catalogue entry of `name`.
pub fn find(name: &str) -> Option<&'static PluginSpec> {
    CATALOGUE.iter().copied().find(|s| s.name == name)
}

/// The upstreams plugin `name`'s configuration names (`traffic-split`'s
/// `upstream_id`s and inline upstreams), for the engine to build and check.
pub fn plugin_upstreams(name: &str, conf: &serde_json::Value) -> Vec<weir_plugin::PluginUpstream> {
    match name {
        "traffic-split" => traffic_split::upstreams(conf),
        _ => Vec::new(),
    }
}

/// A request's variables as APISIX `vars` expressions read them (plugin
/// edits and the consumer included): for `_meta.filter`, `traffic-split`,
/// `fault-injection`.
pub struct CtxVars<'a, 'b>(pub &'a weir_plugin::RequestCtx<'b>);

impl weir_config::vars::VarLookup for CtxVars<'_, '_> {
    fn var(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.0.var(name)
    }
}

/// The names of every plugin, sorted (for error messages).
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<_> = CATALOGUE.iter().map(|s| s.name).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plugin runs at APISIX's default priority (apisix/plugins/*.lua).
    #[test]
    fn priorities_are_apisix() {
        let apisix = [
            ("real-ip", 23000),
            ("request-id", 12015),
            ("cors", 4000),
            ("ip-restriction", 3000),
            ("ua-restriction", 2999),
            ("referer-restriction", 2990),
            ("hmac-auth", 2530),
            ("basic-auth", 2520),
            ("jwt-auth", 2510),
            ("key-auth", 2500),
            ("consumer-restriction", 2400),
            ("redirect", 900),
            ("file-logger", 399),
            ("limit-count", 1002),
            ("traffic-split", 966),
            ("fault-injection", 11000),
            ("proxy-mirror", 1010),
            ("proxy-rewrite", 1008),
            ("response-rewrite", 899),
            ("api-breaker", 1005),
            ("request-validation", 2800),
            ("limit-req", 1001),
            ("limit-conn", 1003),
            ("prometheus", 500),
            ("opentelemetry", 12009),
        ];
        for spec in CATALOGUE {
            if spec.name == "echo" {
                continue; // weir's own
            }
            let expected = apisix.iter().find(|(n, _)| *n == spec.name);
            assert_eq!(
                expected.map(|(_, p)| *p),
                Some(spec.priority),
                "{}",
                spec.name
            );
        }
        for (name, _) in apisix {
            assert!(find(name).is_some(), "{name} is not in the catalogue");
        }
    }

    /// Authentication plugins, and only they, check consumer configurations.
    #[test]
    fn auth_plugins_have_consumer_checks() {
        for spec in CATALOGUE {
            assert_eq!(
                spec.is_auth(),
                spec.name.ends_with("-auth"),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let mut n = names();
        n.dedup();
        assert_eq!(n.len(), CATALOGUE.len());
    }
}
