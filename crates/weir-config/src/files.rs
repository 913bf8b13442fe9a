//! File-system checks that validation proper does not do (it stays pure):
//! the files a configuration names must be there and usable, or `weir run`
//! would refuse what `weir validate` accepted. Both commands call
//! [`check_files`] after loading.
//!
//! Relative paths are relative to the working directory, as when serving.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

use crate::discovery_resolve::{self, ApiServer, IN_CLUSTER_CA_FILE};
use crate::error::{Errors, FieldErrors};
use crate::model::{Config, Scheme, Upstream};
use crate::path;
use crate::validate::upstream::{check_cert_pem, check_key_pem};

/// Checks every file the configuration reads or writes:
/// - `gateway.access_log.path` (a file): can be opened for appending, or
///   created in an existing directory (a file created by the check is
///   removed again);
/// - `tls.ca_file` of every `scheme: https` upstream that verifies (in
///   `upstreams`, routes and services): readable, with PEM certificates;
/// - `ssls[].cert_file` / `key_file`: readable PEM certificate / key;
/// - `discovery.kubernetes` `client.ca_file` (when verifying) and
///   `client.kubeconfig`: readable;
/// - `gateway.state_dir`: a writable directory when it exists (it is
///   created at start otherwise).
///
/// Every problem is returned at once, with its field path.
pub fn check_files(config: &Config) -> Result<(), FieldErrors> {
    let mut errors = Errors::default();
    let log = &config.gateway.access_log;
    if log.enabled && !matches!(log.path.as_str(), "stdout" | "stderr" | "off" | "") {
        if let Err(e) = check_appendable(Path::new(&log.path)) {
            errors.add("gateway.access_log.path", e);
        }
    }
    for (i, up) in config.upstreams.iter().enumerate() {
        check_upstream(up, &path::index("upstreams", i), &mut errors);
    }
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(up) = &r.upstream {
            check_upstream(
                up,
                &path::field(&path::index("routes", i), "upstream"),
                &mut errors,
            );
        }
    }
    for (i, s) in config.services.iter().enumerate() {
        if let Some(up) = &s.upstream {
            check_upstream(
                up,
                &path::field(&path::index("services", i), "upstream"),
                &mut errors,
            );
        }
    }
    for (i, ssl) in config.ssls.iter().enumerate() {
        let at = path::index("ssls", i);
        if let Some(f) = &ssl.cert_file {
            if let Err(e) =
                read(f).and_then(|pem| check_cert_pem(&pem).map_err(|e| format!("{f}: {e}")))
            {
                errors.add(path::field(&at, "cert_file"), e);
            }
        }
        if let Some(f) = &ssl.key_file {
            if let Err(e) =
                read(f).and_then(|pem| check_key_pem(&pem).map_err(|e| format!("{f}: {e}")))
            {
                errors.add(path::field(&at, "key_file"), e);
            }
        }
    }
    check_discovery(config, &mut errors);
    if let Some(dir) = config.gateway.state_dir.as_deref() {
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                errors.add("gateway.state_dir", format!("{dir} is not a directory"));
            }
            Ok(m) if m.permissions().readonly() => {
                errors.add("gateway.state_dir", format!("{dir} is read-only"));
            }
            // Missing: created at start (its parent must allow it).
            _ => {}
        }
    }
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(FieldErrors(errors.0))
    }
}

fn check_upstream(up: &Upstream, at: &str, errors: &mut Errors) {
    let Some(tls) = &up.tls else { return };
    if up.scheme != Scheme::Https || !tls.verify {
        return;
    }
    if let Some(f) = &tls.ca_file {
        let checked = read(f).and_then(|pem| check_cert_pem(&pem).map_err(|e| format!("{f}: {e}")));
        if let Err(e) = checked {
            errors.add(path::field(&path::field(at, "tls"), "ca_file"), e);
        }
    }
}

fn check_discovery(config: &Config, errors: &mut Errors) {
    let Some(k8s) = config
        .discovery
        .as_ref()
        .and_then(|d| d.kubernetes.as_ref())
    else {
        return;
    };
    // Mistakes in the section itself are validation's to report.
    let Ok(clusters) = discovery_resolve::resolve(k8s) else {
        return;
    };
    let multi = matches!(k8s, crate::discovery::KubernetesDiscovery::Multi(_));
    for (i, c) in clusters.iter().enumerate() {
        let at = if multi {
            path::index("discovery.kubernetes", i)
        } else {
            "discovery.kubernetes".to_owned()
        };
        let client = path::field(&at, "client");
        match &c.api_server {
            ApiServer::Direct {
                ca_file: Some(f), ..
            } if c.ssl_verify && f != Path::new(IN_CLUSTER_CA_FILE) => {
                if let Err(e) = read(&f.to_string_lossy()) {
                    errors.add(path::field(&client, "ca_file"), e);
                }
            }
            ApiServer::Kubeconfig(f) => {
                if let Err(e) = read(&f.to_string_lossy()) {
                    errors.add(path::field(&client, "kubeconfig"), e);
                }
            }
            _ => {}
        }
    }
}

fn read(file: &str) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))
}

/// Whether `path` can be appended to, or created.
fn check_appendable(path: &Path) -> Result<(), String> {
    // Special files (a FIFO, /dev/stdout) are not opened here: opening a
    // FIFO blocks until a reader comes, and that is the gateway's business
    // once it runs (with its signal handlers installed).
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        if !meta.is_file() {
            return Ok(());
        }
    }
    match OpenOptions::new().append(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "cannot create {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
            match OpenOptions::new().append(true).create_new(true).open(path) {
                Ok(file) => {
                    drop(file);
                    // Created only to check: leave no trace.
                    let _ = std::fs::remove_file(path);
                    Ok(())
                }
                Err(e) => Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(e) => Err(format!("cannot open {} for appending: {e}", path.display())),
    }
}
