//! Checks of one upstream (in `upstreams`, inline in a route or a service).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{
    check_host, check_labels, check_text, non_negative, parse_node_key, positive, METHODS,
};
use crate::error::Errors;
use crate::model::{
    unbracket, Config, HashKind, HealthChecks, LbType, Nodes, PassHost, Scheme, Upstream,
    UpstreamTls,
};
use crate::path;
use crate::vars::VarsTemplate;

pub(super) fn validate_upstream(config: &Config, up: &Upstream, at: &str, errors: &mut Errors) {
    check_text(up.name.as_deref(), up.desc.as_deref(), at, errors);
    check_labels(&up.labels, at, errors);
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
            check_nodes(nodes, &path::field(at, "nodes"), errors);
            if up.service_name.is_some() {
                errors.add(
                    path::field(at, "service_name"),
                    "service_name needs discovery_type",
                );
            }
        }
        (None, Some(kind)) => check_discovery(config, up, kind, at, errors),
    }
    if up.lb_type == LbType::Chash {
        check_hash_key(up, at, errors);
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
        let pat = path::field(at, "keepalive_pool");
        if p.size == 0 {
            errors.add(path::field(&pat, "size"), "must be at least 1");
        }
        positive(p.idle_timeout, &path::field(&pat, "idle_timeout"), errors);
        if p.requests == 0 {
            errors.add(path::field(&pat, "requests"), "must be at least 1");
        }
    }
    if let Some(tls) = &up.tls {
        if up.scheme != Scheme::Https {
            errors.add(path::field(at, "tls"), "only used with scheme: https");
        }
        check_tls(tls, &path::field(at, "tls"), errors);
    }
    if let Some(checks) = &up.checks {
        validate_checks(checks, &path::field(at, "checks"), errors);
    }
}

fn check_nodes(nodes: &Nodes, nat: &str, errors: &mut Errors) {
    match nodes {
        Nodes::Map(m) => {
            for (k, _) in m {
                if let Err(e) = parse_node_key(k) {
                    errors.add(path::key(nat, k), e);
                }
            }
        }
        Nodes::List(l) => {
            for (j, n) in l.iter().enumerate() {
                let at = path::index(nat, j);
                if let Err(e) = check_host(unbracket(&n.host)) {
                    errors.add(path::field(&at, "host"), format!("{:?}: {e}", n.host));
                }
                if n.port == Some(0) {
                    errors.add(path::field(&at, "port"), "invalid port 0");
                }
                if n.metadata.as_ref().is_some_and(|m| !m.is_object()) {
                    errors.add(path::field(&at, "metadata"), "must be an object");
                }
            }
        }
    }
}

fn check_discovery(config: &Config, up: &Upstream, kind: &str, at: &str, errors: &mut Errors) {
    if kind != "kubernetes" {
        errors.add(
            path::field(at, "discovery_type"),
            format!("unknown discovery type {kind:?}, expected kubernetes"),
        );
        return;
    }
    let Some(name) = &up.service_name else {
        errors.add(
            path::field(at, "service_name"),
            "required with discovery_type",
        );
        return;
    };
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
            if let Err(e) = crate::discovery_resolve::check_service_name(k, name) {
                errors.add(path::field(at, "service_name"), format!("{name:?}: {e}"));
            }
        }
    }
}

/// `vars` keys: APISIX's list plus weir's `http_NAME` / `cookie_NAME`.
const HASH_VARS: &[&str] = &[
    "uri",
    "server_name",
    "server_addr",
    "request_uri",
    "remote_port",
    "remote_addr",
    "query_string",
    "host",
    "hostname",
];

fn valid_hash_var(k: &str) -> bool {
    HASH_VARS.contains(&k)
        || ["arg_", "http_", "cookie_"].iter().any(|p| {
            k.strip_prefix(p).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
        })
}

fn check_hash_key(up: &Upstream, at: &str, errors: &mut Errors) {
    let kat = path::field(at, "key");
    let key = up.key.as_deref().filter(|k| !k.is_empty());
    let key = match (up.hash_on_kind, key) {
        (HashKind::Consumer, _) => return,
        (_, None) => return errors.add(kat, "type chash needs a key"),
        (_, Some(k)) => k,
    };
    match up.hash_on_kind {
        HashKind::Vars if !valid_hash_var(key) => errors.add(
            kat,
            format!(
                "{key:?} is not a supported variable ({}, arg_NAME, http_NAME, cookie_NAME)",
                HASH_VARS.join(", ")
            ),
        ),
        HashKind::Header | HashKind::Cookie
            if !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            errors.add(
                kat,
                format!("{key:?}: a header or cookie name has only letters, digits, - and _"),
            )
        }
        HashKind::VarsCombinations => {
            if let Err(e) = VarsTemplate::parse(key) {
                errors.add(kat, e);
            }
        }
        _ => {}
    }
}

fn check_tls(tls: &UpstreamTls, at: &str, errors: &mut Errors) {
    if let Some(f) = &tls.ca_file {
        if f.trim().is_empty() {
            errors.add(path::field(at, "ca_file"), "must be a file path");
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(_), None) => errors.add(path::field(at, "client_key"), "required with client_cert"),
        (None, Some(_)) => errors.add(path::field(at, "client_cert"), "required with client_key"),
        _ => {}
    }
    if let Some(cert) = &tls.client_cert {
        if let Err(e) = check_cert_pem(cert.as_bytes()) {
            errors.add(path::field(at, "client_cert"), e);
        }
    }
    if let Some(key) = &tls.client_key {
        if let Err(e) = check_key_pem(key.as_bytes()) {
            errors.add(path::field(at, "client_key"), e);
        }
    }
}

/// At least one PEM certificate, and nothing unreadable.
pub(crate) fn check_cert_pem(pem: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("not a valid PEM certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(())
}

/// One PEM private key. The message never quotes the input: it is a secret.
pub(crate) fn check_key_pem(pem: &[u8]) -> Result<(), String> {
    PrivateKeyDer::from_pem_slice(pem).map(|_| ()).map_err(|_| {
        "not a PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)".to_owned()
    })
}

fn validate_checks(c: &HealthChecks, at: &str, errors: &mut Errors) {
    match (&c.active, &c.passive) {
        (None, None) => errors.add(at, "give active (and optionally passive)"),
        (None, Some(_)) => errors.add(
            path::field(at, "passive"),
            "passive checks need active checks too (as in APISIX): a node that live traffic marked unhealthy gets no more traffic, so only active probes can bring it back; add checks.active",
        ),
        _ => {}
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
        if a.concurrency == 0 {
            errors.add(path::field(&at, "concurrency"), "must be at least 1");
        }
        if !METHODS.contains(&a.http_method.as_str()) {
            errors.add(
                path::field(&at, "http_method"),
                format!(
                    "unknown method {:?}, expected one of {}",
                    a.http_method,
                    METHODS.join(", ")
                ),
            );
        }
        if let Some(headers) = &a.req_headers {
            let hat = path::field(&at, "req_headers");
            if headers.is_empty() {
                errors.add(&hat, "must not be empty");
            }
            for (i, h) in headers.iter().enumerate() {
                let valid = h.split_once(':').is_some_and(|(name, _)| {
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
                });
                if !valid {
                    errors.add(
                        path::index(&hat, i),
                        format!("{h:?} is not a header line \"Name: value\""),
                    );
                }
            }
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
