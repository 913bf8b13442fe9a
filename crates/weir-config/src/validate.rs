//! Semantic checks on a decoded [`Config`]: everything serde cannot express.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::error::Errors;
use crate::model::{Config, HashOn, LbType, Nodes, PassHost, Route, Upstream};
use crate::path;

/// Plugins weir knows. The catalogue grows with the plugin issue.
pub const KNOWN_PLUGINS: &[&str] = &["echo"];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

/// Where each decoded list element stood in the document (elements that
/// failed to decode are missing from the lists, so indices shift).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    pub routes: Vec<usize>,
    pub upstreams: Vec<usize>,
    pub ssls: Vec<usize>,
    /// Some upstream failed to decode: `upstream_id` references cannot be checked.
    pub upstreams_incomplete: bool,
}

fn position(positions: &[usize], i: usize) -> usize {
    positions.get(i).copied().unwrap_or(i)
}

pub(crate) fn validate(config: &Config, positions: &Positions, errors: &mut Errors) {
    validate_gateway(config, errors);
    let upstream_ids = validate_upstreams(config, positions, errors);
    let mut route_ids = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = path::index("routes", position(&positions.routes, i));
        if let Some(id) = &route.id {
            if !route_ids.insert(id.0.clone()) {
                errors.add(
                    path::field(&at, "id"),
                    format!("duplicate route id {:?}", id.0),
                );
            }
        }
        let known = (!positions.upstreams_incomplete).then_some(&upstream_ids);
        validate_route(config, route, &at, known, errors);
    }
    for (i, ssl) in config.ssls.iter().enumerate() {
        let at = path::index("ssls", position(&positions.ssls, i));
        let snis = ssl.snis.iter().flatten().chain(ssl.sni.iter());
        let mut any = false;
        for sni in snis {
            any = true;
            if let Err(e) = check_host_pattern(sni) {
                errors.add(path::field(&at, "snis"), format!("{sni:?}: {e}"));
            }
        }
        if !any {
            errors.add(
                path::field(&at, "snis"),
                "at least one of sni / snis is required",
            );
        }
        match (&ssl.cert, &ssl.cert_file) {
            (None, None) => errors.add(path::field(&at, "cert"), "cert or cert_file is required"),
            (Some(_), Some(_)) => errors.add(
                path::field(&at, "cert_file"),
                "give cert or cert_file, not both",
            ),
            _ => {}
        }
        match (&ssl.key, &ssl.key_file) {
            (None, None) => errors.add(path::field(&at, "key"), "key or key_file is required"),
            (Some(_), Some(_)) => errors.add(
                path::field(&at, "key_file"),
                "give key or key_file, not both",
            ),
            _ => {}
        }
        if ssl.status > 1 {
            errors.add(path::field(&at, "status"), "must be 0 or 1");
        }
    }
    if let Some(d) = &config.discovery {
        crate::discovery_resolve::validate(d, errors);
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
}

fn validate_upstreams(
    config: &Config,
    positions: &Positions,
    errors: &mut Errors,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    for (i, up) in config.upstreams.iter().enumerate() {
        let at = path::index("upstreams", position(&positions.upstreams, i));
        match &up.id {
            None => errors.add(
                path::field(&at, "id"),
                "an upstream in the upstreams list needs an id",
            ),
            Some(id) => {
                if !ids.insert(id.0.clone()) {
                    errors.add(
                        path::field(&at, "id"),
                        format!("duplicate upstream id {:?}", id.0),
                    );
                }
            }
        }
        validate_upstream(config, up, &at, errors);
    }
    ids
}

fn validate_route(
    config: &Config,
    route: &Route,
    at: &str,
    upstream_ids: Option<&HashSet<String>>,
    errors: &mut Errors,
) {
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
    for (name, conf) in &route.plugins {
        let p = path::key(&path::field(at, "plugins"), name);
        if !KNOWN_PLUGINS.contains(&name.as_str()) {
            errors.add(
                p,
                format!("unknown plugin, available: {}", KNOWN_PLUGINS.join(", ")),
            );
        } else if !conf.is_object() {
            errors.add(p, "plugin configuration must be an object");
        } else if name == "echo" {
            if let Some(obj) = conf.as_object() {
                for k in obj.keys() {
                    if k != "status" && k != "disable" {
                        errors.add(
                            path::key(&p, k),
                            "unknown field, expected status or disable",
                        );
                    }
                }
                if let Some(s) = obj.get("status") {
                    if !s.as_u64().is_some_and(|s| (100..=599).contains(&s)) {
                        errors.add(path::key(&p, "status"), "must be an HTTP status 100..599");
                    }
                }
            }
        }
    }
    let answers_itself = route.plugins.contains_key("echo");
    match (&route.upstream, &route.upstream_id) {
        (Some(_), Some(_)) => errors.add(
            path::field(at, "upstream_id"),
            "give upstream or upstream_id, not both",
        ),
        (Some(up), None) => {
            let up_at = path::field(at, "upstream");
            validate_upstream(config, up, &up_at, errors);
        }
        (None, Some(id)) => {
            if upstream_ids.is_some_and(|ids| !ids.contains(&id.0)) {
                errors.add(
                    path::field(at, "upstream_id"),
                    format!("no upstream with id {:?}", id.0),
                );
            }
        }
        (None, None) if !answers_itself => errors.add(
            path::field(at, "upstream"),
            "upstream or upstream_id is required",
        ),
        (None, None) => {}
    }
}

fn validate_upstream(config: &Config, up: &Upstream, at: &str, errors: &mut Errors) {
    match (&up.nodes, &up.discovery_type) {
        (Some(_), Some(_)) => errors.add(
            path::field(at, "discovery_type"),
            "give nodes or discovery_type, not both",
        ),
        (None, None) => errors.add(
            path::field(at, "nodes"),
            "nodes or discovery_type + service_name is required",
        ),
        (Some(nodes), None) => {
            let nat = path::field(at, "nodes");
            match nodes {
                Nodes::Map(m) => {
                    for (k, _) in m {
                        if let Err(e) = parse_node_key(k) {
                            errors.add(path::key(&nat, k), e);
                        }
                    }
                }
                Nodes::List(l) => {
                    for (j, n) in l.iter().enumerate() {
                        if let Err(e) = check_host(&n.host) {
                            errors.add(
                                path::field(&path::index(&nat, j), "host"),
                                format!("{:?}: {e}", n.host),
                            );
                        }
                        if n.port == Some(0) {
                            errors
                                .add(path::field(&path::index(&nat, j), "port"), "invalid port 0");
                        }
                    }
                }
            }
            if up.service_name.is_some() {
                errors.add(
                    path::field(at, "service_name"),
                    "service_name needs discovery_type",
                );
            }
        }
        (None, Some(kind)) => {
            if kind != "kubernetes" {
                errors.add(
                    path::field(at, "discovery_type"),
                    format!("unknown discovery type {kind:?}, expected kubernetes"),
                );
            } else {
                match &up.service_name {
                    None => errors.add(
                        path::field(at, "service_name"),
                        "required with discovery_type",
                    ),
                    Some(name) => {
                        let k8s = config
                            .discovery
                            .as_ref()
                            .and_then(|d| d.kubernetes.as_ref());
                        match k8s {
                            None => errors.add(
                                path::field(at, "discovery_type"),
                                "discovery.kubernetes is not configured",
                            ),
                            Some(k) => {
                                if let Err(e) =
                                    crate::discovery_resolve::check_service_name(k, name)
                                {
                                    errors.add(
                                        path::field(at, "service_name"),
                                        format!("{name:?}: {e}"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if up.lb_type == LbType::Chash {
        match up.key.as_deref() {
            None | Some("") => errors.add(path::field(at, "key"), "type chash needs a key"),
            Some(k) if up.hash_on == HashOn::Vars && !valid_hash_var(k) => errors.add(
                path::field(at, "key"),
                format!("{k:?} is not a supported variable (remote_addr, uri, request_uri, host, server_name, arg_NAME, http_NAME, cookie_NAME)"),
            ),
            _ => {}
        }
    }
    if let Some(t) = &up.timeout {
        let tat = path::field(at, "timeout");
        positive(t.connect, &path::field(&tat, "connect"), errors);
        positive(t.send, &path::field(&tat, "send"), errors);
        positive(t.read, &path::field(&tat, "read"), errors);
    }
    if let Some(rt) = up.retry_timeout {
        non_negative(rt, &path::field(at, "retry_timeout"), errors);
    }
    if up.pass_host == PassHost::Rewrite && up.upstream_host.as_deref().is_none_or(str::is_empty) {
        errors.add(
            path::field(at, "upstream_host"),
            "required when pass_host is rewrite",
        );
    }
    if let Some(p) = &up.keepalive_pool {
        positive(
            p.idle_timeout,
            &path::field(&path::field(at, "keepalive_pool"), "idle_timeout"),
            errors,
        );
        if p.requests == 0 {
            errors.add(
                path::field(&path::field(at, "keepalive_pool"), "requests"),
                "must be at least 1",
            );
        }
    }
    if let Some(tls) = &up.tls {
        if up.scheme != crate::model::Scheme::Https {
            errors.add(path::field(at, "tls"), "only used with scheme: https");
        }
        if let Some(f) = &tls.ca_file {
            if f.trim().is_empty() {
                errors.add(
                    path::field(&path::field(at, "tls"), "ca_file"),
                    "must be a file path",
                );
            }
        }
    }
    if let Some(checks) = &up.checks {
        validate_checks(checks, &path::field(at, "checks"), errors);
    }
}

fn validate_checks(c: &crate::model::HealthChecks, at: &str, errors: &mut Errors) {
    if c.active.is_none() && c.passive.is_none() {
        errors.add(at, "give active and/or passive");
    }
    fn statuses(list: &[u16], at: &str, errors: &mut Errors) {
        for (i, s) in list.iter().enumerate() {
            if !(200..=599).contains(s) {
                errors.add(
                    path::index(at, i),
                    format!("{s} is not an HTTP status 200..599"),
                );
            }
        }
    }
    fn counter(v: u32, at: &str, errors: &mut Errors) {
        if !(1..=254).contains(&v) {
            errors.add(at, format!("must be 1..254, got {v}"));
        }
    }
    if let Some(a) = &c.active {
        let at = path::field(at, "active");
        positive(a.timeout, &path::field(&at, "timeout"), errors);
        if !a.http_path.starts_with('/') {
            errors.add(
                path::field(&at, "http_path"),
                format!("{:?} must start with /", a.http_path),
            );
        }
        if a.port == Some(0) {
            errors.add(path::field(&at, "port"), "invalid port 0");
        }
        let h = path::field(&at, "healthy");
        positive(a.healthy.interval, &path::field(&h, "interval"), errors);
        statuses(
            &a.healthy.http_statuses,
            &path::field(&h, "http_statuses"),
            errors,
        );
        counter(a.healthy.successes, &path::field(&h, "successes"), errors);
        let u = path::field(&at, "unhealthy");
        positive(a.unhealthy.interval, &path::field(&u, "interval"), errors);
        statuses(
            &a.unhealthy.http_statuses,
            &path::field(&u, "http_statuses"),
            errors,
        );
        counter(
            a.unhealthy.http_failures,
            &path::field(&u, "http_failures"),
            errors,
        );
        counter(
            a.unhealthy.tcp_failures,
            &path::field(&u, "tcp_failures"),
            errors,
        );
        counter(a.unhealthy.timeouts, &path::field(&u, "timeouts"), errors);
    }
    if let Some(p) = &c.passive {
        let at = path::field(at, "passive");
        let h = path::field(&at, "healthy");
        statuses(
            &p.healthy.http_statuses,
            &path::field(&h, "http_statuses"),
            errors,
        );
        counter(p.healthy.successes, &path::field(&h, "successes"), errors);
        let u = path::field(&at, "unhealthy");
        statuses(
            &p.unhealthy.http_statuses,
            &path::field(&u, "http_statuses"),
            errors,
        );
        counter(
            p.unhealthy.http_failures,
            &path::field(&u, "http_failures"),
            errors,
        );
        counter(
            p.unhealthy.tcp_failures,
            &path::field(&u, "tcp_failures"),
            errors,
        );
        counter(p.unhealthy.timeouts, &path::field(&u, "timeouts"), errors);
    }
}

fn valid_hash_var(k: &str) -> bool {
    matches!(
        k,
        "remote_addr" | "uri" | "request_uri" | "host" | "server_name"
    ) || ["arg_", "http_", "cookie_"]
        .iter()
        .any(|p| k.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

fn check_uri(u: &str, at: &str, errors: &mut Errors) {
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

fn positive(v: f64, at: &str, errors: &mut Errors) {
    if !(v.is_finite() && v > 0.0) {
        errors.add(at, format!("must be a positive number of seconds, got {v}"));
    } else if v > MAX_SECONDS {
        errors.add(at, too_long(v));
    }
}

fn non_negative(v: f64, at: &str, errors: &mut Errors) {
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
