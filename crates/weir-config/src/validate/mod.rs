//! Semantic checks on a decoded [`Config`]: everything serde cannot express,
//! and the references between resources.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::error::{Errors, FieldErrors};
use crate::model::{Config, Labels, Route};
use crate::path;
use crate::plugin_check::{PluginCheck, PluginSite};

mod deployment;
mod resources;
pub(crate) mod upstream;

pub(crate) const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

/// Kinds of list elements, for ids of elements that did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Upstream,
    Service,
    Consumer,
    ConsumerGroup,
    PluginConfig,
    GlobalRule,
}

/// An element that did not decode at all: (kind, path, raw id).
pub(crate) type Undecoded = (Kind, String, String);

/// Where a decoded list element stood in the document, and whether it
/// decoded cleanly. A partly decoded element (its broken fields removed,
/// their errors reported) takes part in id and reference checks only.
#[derive(Debug, Clone)]
pub(crate) struct Pos {
    pub path: String,
    pub clean: bool,
}

/// Positions of every decoded element, by list.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    pub routes: Vec<Pos>,
    pub upstreams: Vec<Pos>,
    pub ssls: Vec<Pos>,
    pub services: Vec<Pos>,
    pub consumers: Vec<Pos>,
    pub credentials: Vec<Pos>,
    pub consumer_groups: Vec<Pos>,
    pub plugin_configs: Vec<Pos>,
    pub global_rules: Vec<Pos>,
    /// For each credential, the field that names its consumer: `id`
    /// (`<username>/credentials/<id>`) or `consumer`.
    pub credential_owner_field: Vec<&'static str>,
    /// Ids of elements that did not decode at all.
    pub undecoded: Vec<Undecoded>,
}

impl Positions {
    /// The position of element `i`: as recorded, or `section[i]`, clean.
    pub(crate) fn at(list: &[Pos], section: &str, i: usize) -> Pos {
        list.get(i).cloned().unwrap_or_else(|| Pos {
            path: path::index(section, i),
            clean: true,
        })
    }

    fn all(&self, list: &[Pos], section: &str, n: usize) -> Vec<Pos> {
        (0..n).map(|i| Positions::at(list, section, i)).collect()
    }
}

pub(crate) fn validate(
    config: &Config,
    positions: &Positions,
    checker: &dyn PluginCheck,
    errors: &mut Errors,
) {
    validate_gateway(config, errors);
    deployment::validate_deployment(&config.deployment, errors);
    let known = resources::collect_ids(config, positions, errors);
    resources::check_references(config, positions, &known, errors);
    for (i, route) in config.routes.iter().enumerate() {
        let p = Positions::at(&positions.routes, "routes", i);
        if p.clean {
            validate_route(config, route, &p.path, checker, errors);
        }
    }
    for (i, up) in config.upstreams.iter().enumerate() {
        let p = Positions::at(&positions.upstreams, "upstreams", i);
        if p.clean {
            upstream::validate_upstream(config, up, &p.path, errors);
        }
    }
    for (i, ssl) in config.ssls.iter().enumerate() {
        let p = Positions::at(&positions.ssls, "ssls", i);
        if p.clean {
            validate_ssl(ssl, &p.path, errors);
        }
    }
    resources::validate_resources(config, positions, checker, errors);
    if let Some(d) = &config.discovery {
        crate::discovery_resolve::validate(d, errors);
    }
}

/// Validates a configuration that was built or decoded without the loader
/// (the loader runs the same checks). Every error is returned at once, each
/// with its field path.
pub fn validate_config(config: &Config, plugins: &dyn PluginCheck) -> Result<(), FieldErrors> {
    let mut errors = Errors::default();
    validate(config, &Positions::default(), plugins, &mut errors);
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(FieldErrors(errors.0))
    }
}

fn validate_ssl(ssl: &crate::model::Ssl, at: &str, errors: &mut Errors) {
    let snis = ssl.snis.iter().flatten().chain(ssl.sni.iter());
    let mut any = false;
    for sni in snis {
        any = true;
        if let Err(e) = check_host_pattern(sni) {
            errors.add(path::field(at, "snis"), format!("{sni:?}: {e}"));
        }
    }
    if !any {
        errors.add(
            path::field(at, "snis"),
            "at least one of sni / snis is required",
        );
    }
    match (&ssl.cert, &ssl.cert_file) {
        (None, None) => errors.add(path::field(at, "cert"), "cert or cert_file is required"),
        (Some(_), Some(_)) => errors.add(
            path::field(at, "cert_file"),
            "give cert or cert_file, not both",
        ),
        _ => {}
    }
    match (&ssl.key, &ssl.key_file) {
        (None, None) => errors.add(path::field(at, "key"), "key or key_file is required"),
        (Some(_), Some(_)) => errors.add(
            path::field(at, "key_file"),
            "give key or key_file, not both",
        ),
        _ => {}
    }
    if ssl.status > 1 {
        errors.add(path::field(at, "status"), "must be 0 or 1");
    }
}

/// Longest idle gap a worker may busy-poll through.
const MAX_BUSY_POLL_US: u32 = 10_000;

fn validate_gateway(config: &Config, errors: &mut Errors) {
    let g = &config.gateway;
    if g.listeners.is_empty() {
        errors.add("gateway.listeners", "at least one listener is required");
    }
    let mut seen = HashSet::new();
    for (i, l) in g.listeners.iter().enumerate() {
        let at = path::field(&path::index("gateway.listeners", i), "address");
        match l.address.parse::<SocketAddr>() {
            Ok(addr) => {
                if !seen.insert(addr) {
                    errors.add(at, format!("{addr} is used by another listener"));
                }
            }
            Err(_) => errors.add(at, format!("{:?} is not an ip:port address", l.address)),
        }
        if l.tls && config.ssls.iter().all(|s| s.status == 0) {
            errors.add(
                path::field(&path::index("gateway.listeners", i), "tls"),
                "a TLS listener needs at least one enabled entry in ssls",
            );
        }
    }
    if g.control.enabled && g.control.address.parse::<SocketAddr>().is_err() {
        errors.add(
            "gateway.control.address",
            format!("{:?} is not an ip:port address", g.control.address),
        );
    }
    positive(g.http.header_timeout, "gateway.http.header_timeout", errors);
    positive(g.http.body_timeout, "gateway.http.body_timeout", errors);
    positive(g.http.send_timeout, "gateway.http.send_timeout", errors);
    positive(
        g.http.tunnel_idle_timeout,
        "gateway.http.tunnel_idle_timeout",
        errors,
    );
    non_negative(
        g.shutdown.drain_delay,
        "gateway.shutdown.drain_delay",
        errors,
    );
    non_negative(g.shutdown.timeout, "gateway.shutdown.timeout", errors);
    if g.access_log.path.trim().is_empty() {
        errors.add(
            "gateway.access_log.path",
            "must be stdout, stderr or a file path",
        );
    }
    if g.busy_poll_us > MAX_BUSY_POLL_US {
        errors.add(
            "gateway.busy_poll_us",
            format!(
                "{} is too long: at most {MAX_BUSY_POLL_US} (10 ms); 0 turns busy polling off",
                g.busy_poll_us
            ),
        );
    }
    if g.workers == Some(0) {
        errors.add("gateway.workers", "must be at least 1");
    }
    if g.state_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
        errors.add(
            "gateway.state_dir",
            "must be a directory path (leave it out for no warm start)",
        );
    }
}

fn validate_route(
    config: &Config,
    route: &Route,
    at: &str,
    checker: &dyn PluginCheck,
    errors: &mut Errors,
) {
    check_text(route.name.as_deref(), route.desc.as_deref(), at, errors);
    check_labels(&route.labels, at, errors);
    match (&route.uri, &route.uris) {
        (None, None) => errors.add(path::field(at, "uri"), "uri or uris is required"),
        (Some(_), Some(_)) => errors.add(path::field(at, "uris"), "give uri or uris, not both"),
        (Some(u), None) => check_uri(u, &path::field(at, "uri"), errors),
        (None, Some(us)) => {
            if us.is_empty() {
                errors.add(path::field(at, "uris"), "must not be empty");
            }
            for (j, u) in us.iter().enumerate() {
                check_uri(u, &path::index(&path::field(at, "uris"), j), errors);
            }
        }
    }
    if route.host.is_some() && route.hosts.is_some() {
        errors.add(path::field(at, "hosts"), "give host or hosts, not both");
    }
    if let Some(h) = &route.host {
        if let Err(e) = check_host_pattern(h) {
            errors.add(path::field(at, "host"), format!("{h:?}: {e}"));
        }
    }
    for (j, h) in route.hosts.iter().flatten().enumerate() {
        if let Err(e) = check_host_pattern(h) {
            errors.add(
                path::index(&path::field(at, "hosts"), j),
                format!("{h:?}: {e}"),
            );
        }
    }
    for (j, m) in route.methods.iter().flatten().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            errors.add(
                path::index(&path::field(at, "methods"), j),
                format!(
                    "unknown method {m:?}, expected one of {}",
                    METHODS.join(", ")
                ),
            );
        }
    }
    if route.status > 1 {
        errors.add(path::field(at, "status"), "must be 0 or 1");
    }
    match (&route.remote_addr, &route.remote_addrs) {
        (Some(_), Some(_)) => errors.add(
            path::field(at, "remote_addrs"),
            "give remote_addr or remote_addrs, not both",
        ),
        (None, Some(list)) if list.is_empty() => errors.add(
            path::field(at, "remote_addrs"),
            "must not be empty (leave it out to accept every client)",
        ),
        _ => {}
    }
    if let Some(t) = &route.timeout {
        let tat = path::field(at, "timeout");
        positive(t.connect, &path::field(&tat, "connect"), errors);
        positive(t.send, &path::field(&tat, "send"), errors);
        positive(t.read, &path::field(&tat, "read"), errors);
    }
    resources::check_plugins(checker, PluginSite::Route, &route.plugins, at, errors);
    match (&route.upstream, &route.upstream_id) {
        (Some(_), Some(_)) => errors.add(
            path::field(at, "upstream_id"),
            "give upstream or upstream_id, not both",
        ),
        (Some(up), None) => {
            let up_at = path::field(at, "upstream");
            upstream::validate_upstream(config, up, &up_at, errors);
        }
        (None, Some(_)) => {}
        (None, None) => {
            // The service may bring the upstream; plugins (echo, redirect...)
            // may answer by themselves, as APISIX allows.
            let service = route
                .service_id
                .as_ref()
                .map(|id| config.services.iter().find(|s| s.id == *id));
            let plugin_config = route
                .plugin_config_id
                .as_ref()
                .and_then(|id| config.plugin_configs.iter().find(|c| c.id == *id));
            let service_upstream = match service {
                Some(Some(s)) => s.upstream.is_some() || s.upstream_id.is_some(),
                Some(None) => true, // unknown service: reported already
                None => false,
            };
            let any_plugins = !route.plugins.is_empty()
                || plugin_config.is_some_and(|c| !c.plugins.is_empty())
                || matches!(service, Some(Some(s)) if !s.plugins.is_empty());
            if !service_upstream && !any_plugins {
                errors.add(
                    path::field(at, "upstream"),
                    "upstream or upstream_id is required (or a service_id whose service has one)",
                );
            }
        }
    }
}

/// `name` (1..256 characters) and `desc` (at most 256), as APISIX.
pub(crate) fn check_text(name: Option<&str>, desc: Option<&str>, at: &str, errors: &mut Errors) {
    if let Some(n) = name {
        if n.is_empty() || n.chars().count() > 256 {
            errors.add(path::field(at, "name"), "must be 1 to 256 characters");
        }
    }
    if desc.is_some_and(|d| d.chars().count() > 256) {
        errors.add(path::field(at, "desc"), "must be at most 256 characters");
    }
}

/// Label values are 1 to 256 characters without whitespace, as APISIX.
pub(crate) fn check_labels(labels: &Labels, at: &str, errors: &mut Errors) {
    let lat = path::field(at, "labels");
    for (k, v) in labels {
        if v.is_empty() || v.chars().count() > 256 || v.chars().any(char::is_whitespace) {
            errors.add(
                path::key(&lat, k),
                format!("{v:?}: a label value is 1 to 256 characters without spaces"),
            );
        }
    }
}

fn check_uri(u: &str, at: &str, errors: &mut Errors) {
    if u.len() > 4096 {
        errors.add(at, "longer than 4096 characters");
        return;
    }
    if !u.starts_with('/') {
        errors.add(at, format!("{u:?} must start with /"));
        return;
    }
    if let Some(pos) = u.find('*') {
        if pos != u.len() - 1 {
            errors.add(
                at,
                format!("{u:?}: * is only allowed at the end (prefix match)"),
            );
        }
    }
    for seg in u.split('/') {
        if seg == ":" {
            errors.add(at, format!("{u:?}: a :param segment needs a name"));
        }
    }
}

/// Longest duration any setting may take, in seconds (a year). Beyond it a
/// value is a typo, and far beyond it (1e20) it would overflow the clock
/// arithmetic and panic when the configuration is applied.
const MAX_SECONDS: f64 = 31_536_000.0;

pub(crate) fn positive(v: f64, at: &str, errors: &mut Errors) {
    if !(v.is_finite() && v > 0.0) {
        errors.add(at, format!("must be a positive number of seconds, got {v}"));
    } else if v > MAX_SECONDS {
        errors.add(at, too_long(v));
    }
}

pub(crate) fn non_negative(v: f64, at: &str, errors: &mut Errors) {
    if !(v.is_finite() && v >= 0.0) {
        errors.add(
            at,
            format!("must be zero or a positive number of seconds, got {v}"),
        );
    } else if v > MAX_SECONDS {
        errors.add(at, too_long(v));
    }
}

fn too_long(v: f64) -> String {
    format!("must be at most {MAX_SECONDS} seconds (a year), got {v}")
}

/// Splits a node key `host:port` (IPv6 as `[::1]:80`); the port is optional.
pub fn parse_node_key(key: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = key.strip_prefix('[') {
        let end = rest.find(']').ok_or("unterminated [ in IPv6 address")?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after ]".into()),
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {host:?}"));
        }
        (host.to_owned(), port)
    } else {
        match key.rsplit_once(':') {
            Some((h, p)) => {
                check_host(h)?;
                (h.to_owned(), Some(p))
            }
            None => {
                check_host(key)?;
                (key.to_owned(), None)
            }
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err("invalid port".into()),
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

/// Checks an IP address or DNS name.
pub fn check_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty host".into());
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if h.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("invalid host name".into());
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("invalid character in host name".into());
        }
    }
    Ok(())
}

/// Checks a route host / SNI: a DNS name, optionally with a leading `*.`.
pub fn check_host_pattern(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.contains('*') {
        return Err("a wildcard is only allowed as the leading label (*.example.com)".into());
    }
    check_host(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys() {
        assert_eq!(
            parse_node_key("10.0.0.1:80").unwrap(),
            ("10.0.0.1".into(), Some(80))
        );
        assert_eq!(
            parse_node_key("[::1]:8080").unwrap(),
            ("::1".into(), Some(8080))
        );
        assert_eq!(
            parse_node_key("svc.local").unwrap(),
            ("svc.local".into(), None)
        );
        assert_eq!(parse_node_key("10.0.0.1:80x").unwrap_err(), "invalid port");
        assert_eq!(parse_node_key("10.0.0.1:0").unwrap_err(), "invalid port");
        assert!(parse_node_key("bad host:80").is_err());
    }
}
