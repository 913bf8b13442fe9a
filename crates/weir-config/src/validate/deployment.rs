//! `deployment:`: the configuration provider and the Admin API settings.
//! Messages about keys never quote a key.

use crate::error::Errors;
use crate::model::{ConfigProvider, DeploymentConfig, PUBLISHED_SAMPLE_KEY};
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
        errors.add(
            "deployment.role_traditional.config_provider",
            "etcd is not available yet in weir: use yaml (the Admin API then keeps what it writes in deployment.admin.state_file)",
        );
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
