//! The plugin catalogue. Each plugin is one file; adding one is that file,
//! one line in [`CATALOGUE`] and its section in `docs/plugins.md`.
#![forbid(unsafe_code)]

mod auth;
mod basic_auth;
mod consumer_restriction;
mod cors;
mod echo;
mod hmac_auth;
mod ip_restriction;
mod ipmatch;
mod jwt_auth;
mod key_auth;
mod referer_restriction;
mod secret;
#[cfg(test)]
mod testing;
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
];

/// The catalogue entry of `name`.
pub fn find(name: &str) -> Option<&'static PluginSpec> {
    CATALOGUE.iter().copied().find(|s| s.name == name)
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

    #[test]
    fn names_are_unique() {
        let mut n = names();
        n.dedup();
        assert_eq!(n.len(), CATALOGUE.len());
    }
}
