//! `deployment:`: the configuration provider and the Admin API settings.
//! Messages about keys never quote a key.

use crate::error::Errors;
use crate::model::{ConfigProvider, DeploymentConfig, EtcdSettings, PUBLISHED_SAMPLE_KEY};
use crate::path;

pub(super) fn validate_deployment(d: &DeploymentConfig, errors: &mut Errors) {
    if let Some(role) = &d.role {
        if role != "traditional" {
            errors.add(
                "deployment.role",
                format!(
                    "{role:?}: weir runs only as traditional (proxy and Admin API in one process)"
                ),
            );
        }
    }
    if d.role_traditional.config_provider == ConfigProvider::Etcd {
        validate_etcd(&d.etcd, errors);
        if d.admin.state_file.is_some() {
            errors.add(
                "deployment.admin.state_file",
                "is for config_provider: yaml; with etcd the Admin API writes to etcd: remove it",
            );
        }
    }
    let admin = &d.admin;
    if admin.admin_listen.ip.parse::<std::net::IpAddr>().is_err() {
        errors.add(
            "deployment.admin.admin_listen.ip",
            format!("{:?} is not an IP address", admin.admin_listen.ip),
        );
    }
    for (i, k) in admin.admin_key.iter().enumerate() {
        let at = path::index("deployment.admin.admin_key", i);
        let key = k.key.expose();
        if key.is_empty() {
            errors.add(path::field(&at, "key"), "must not be empty");
        } else if key == PUBLISHED_SAMPLE_KEY {
            errors.add(
                path::field(&at, "key"),
                "this is the sample key APISIX once published in its default configuration, known to anyone: choose another",
            );
        } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.add(
                path::field(&at, "key"),
                "must not contain spaces or control characters",
            );
        }
        let same = admin.admin_key[..i]
            .iter()
            .position(|other| other.key.expose() == key);
        if let Some(j) = same {
            errors.add(
                path::field(&at, "key"),
                format!("the same key as deployment.admin.admin_key[{j}]"),
            );
        }
    }
    if admin.allow_admin.is_empty() {
        errors.add(
            "deployment.admin.allow_admin",
            "must not be empty: list the client addresses or CIDR blocks allowed (0.0.0.0/0 and ::/0 allow every client)",
        );
    }
    if admin
        .state_file
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        errors.add(
            "deployment.admin.state_file",
            "must be a file path (leave it out for a read-only Admin API)",
        );
    }
}

fn validate_etcd(e: &EtcdSettings, errors: &mut Errors) {
    if e.host.is_empty() {
        errors.add("deployment.etcd.host", "must list at least one etcd URL");
    }
    for (i, h) in e.host.iter().enumerate() {
        let at = path::index("deployment.etcd.host", i);
        let rest = h
            .strip_prefix("http://")
            .or_else(|| h.strip_prefix("https://"))
            .map(|r| r.trim_end_matches('/'));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#', '@', ' '])) {
            errors.add(
                at,
                format!("{h:?} is not an http:// or https:// URL of host:port"),
            );
        }
    }
    if !e.prefix.starts_with('/') || e.prefix.ends_with('/') {
        errors.add(
            "deployment.etcd.prefix",
            format!(
                "{:?} must start with / and not end with / (default /apisix)",
                e.prefix
            ),
        );
    }
    if !(e.timeout.is_finite() && e.timeout > 0.0 && e.timeout <= 3600.0) {
        errors.add(
            "deployment.etcd.timeout",
            "must be a number of seconds above 0 and at most 3600",
        );
    }
    match (&e.user, &e.password) {
        (Some(u), _) if u.is_empty() => errors.add("deployment.etcd.user", "must not be empty"),
        (None, Some(_)) => errors.add(
            "deployment.etcd.password",
            "is set but deployment.etcd.user is not",
        ),
        (Some(_), None) => errors.add(
            "deployment.etcd.password",
            "is required with deployment.etcd.user",
        ),
        _ => {}
    }
    if let Some(tls) = &e.tls {
        if tls.cert.is_some() != tls.key.is_some() {
            errors.add(
                "deployment.etcd.tls",
                "cert and key go together (a client certificate and its private key)",
            );
        }
        if let Some(sni) = &tls.sni {
            if sni.is_empty() || sni.contains(|c: char| c.is_whitespace() || c == '/') {
                errors.add(
                    "deployment.etcd.tls.sni",
                    format!(
                        "{sni:?} is not a host name (the name etcd's certificate is issued to)"
                    ),
                );
            }
        }
    }
    seconds(
        e.watch_timeout,
        0.1,
        "deployment.etcd.watch_timeout",
        errors,
    );
    seconds(e.resync_delay, 0.01, "deployment.etcd.resync_delay", errors);
    seconds(
        e.health_check_timeout,
        0.05,
        "deployment.etcd.health_check_timeout",
        errors,
    );
    if e.startup_retry == Some(0) {
        errors.add(
            "deployment.etcd.startup_retry",
            "must be at least 1 (leave it out to keep trying until etcd answers)",
        );
    }
}

/// A number of seconds in `[min, 3600]`.
fn seconds(v: f64, min: f64, at: &str, errors: &mut Errors) {
    if !(v.is_finite() && (min..=3600.0).contains(&v)) {
        errors.add(
            at,
            format!("{v} must be a number of seconds from {min} to 3600"),
        );
    }
}
