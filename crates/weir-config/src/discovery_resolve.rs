//! Validation and resolution of `discovery.kubernetes`: defaults (single-cluster
//! mode only, as APISIX), `${ENV}` expansion, selectors, and the shape of
//! `service_name`s.
//!
//! [`resolve`] turns the raw model into [`ResolvedCluster`]s that discovery can
//! use as they are; [`validate`] reports every mistake with its field path.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::discovery::{
    ApiServerClient, ApiServerService, DiscoveryConfig, KubernetesCluster, KubernetesDiscovery,
    NamespaceSelector, PortValue,
};
use crate::error::{Errors, FieldErrors};
use crate::path;

mod label_selector;
pub use label_selector::normalize_label_selector;

#[cfg(test)]
mod tests;

/// In-cluster service-account token, the single-cluster default `token_file`.
pub const IN_CLUSTER_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// In-cluster CA bundle, the default `ca_file` for an https API server.
pub const IN_CLUSTER_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// Default weight of a discovered endpoint.
pub const DEFAULT_WEIGHT: u32 = 50;
/// Default `watch_idle_timeout` in seconds.
pub const DEFAULT_WATCH_IDLE_TIMEOUT_SECS: f64 = 60.0;
/// What a redacted secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// A secret string (bearer token) whose `Debug`/`Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Read from a string; a number is taken as its decimal text, so that a
/// mistyped value never reaches an error message (serde's would quote it).
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl serde::de::Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a key must be a string (quote it)"))
            }
        }
        d.deserialize_any(SecretVisitor)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// How discovery authenticates to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// `client.token` (after `${ENV}` expansion).
    Token(Secret),
    /// `client.token_file`, re-read when it changes and after a 401.
    TokenFile(PathBuf),
    /// No bearer token (plain-http test servers, or kubeconfig auth).
    None,
}

/// Where the API server is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiServer {
    /// `service.{schema,host,port}` + `client.{token,token_file,ca_file,ssl_verify}`.
    Direct {
        /// `https://host:port` (IPv6 hosts bracketed).
        url: String,
        /// Bearer token source.
        credentials: Credentials,
        /// CA bundle verifying the server; `None` uses the system roots.
        ca_file: Option<PathBuf>,
    },
    /// A kubeconfig file (`client.kubeconfig` or `$KUBECONFIG`), current context.
    Kubeconfig(PathBuf),
}

/// `namespace_selector`, compiled. Regexes match the whole namespace.
#[derive(Debug, Clone)]
pub enum NamespaceFilter {
    /// Every namespace.
    All,
    /// Only this namespace.
    Equal(String),
    /// Every namespace but this one.
    NotEqual(String),
    /// Namespaces matching one of these.
    Match(Vec<Regex>),
    /// Namespaces matching none of these.
    NotMatch(Vec<Regex>),
}

impl NamespaceFilter {
    /// Whether objects of `namespace` are kept.
    pub fn accepts(&self, namespace: &str) -> bool {
        match self {
            NamespaceFilter::All => true,
            NamespaceFilter::Equal(n) => n == namespace,
            NamespaceFilter::NotEqual(n) => n != namespace,
            NamespaceFilter::Match(res) => res.iter().any(|r| r.is_match(namespace)),
            NamespaceFilter::NotMatch(res) => !res.iter().any(|r| r.is_match(namespace)),
        }
    }
}

/// One cluster, fully defaulted and `${ENV}`-expanded, ready to watch.
#[derive(Debug, Clone)]
pub struct ResolvedCluster {
    /// Cluster id (multi-cluster mode); `None` in single-cluster mode.
    pub id: Option<String>,
    /// How to reach the API server.
    pub api_server: ApiServer,
    /// Verify the API server's certificate: `false` only if
    /// `service.ssl_verify: false` (APISIX) or `client.ssl_verify: false`
    /// (weir) was written.
    pub ssl_verify: bool,
    /// Weight of each discovered endpoint.
    pub default_weight: u32,
    /// Which namespaces are kept.
    pub namespace_filter: NamespaceFilter,
    /// Label selector sent to the API server (quotes around values removed).
    pub label_selector: Option<String>,
    /// Watch EndpointSlices instead of Endpoints.
    pub watch_endpoint_slices: bool,
    /// A watch silent for this long is considered dead and re-established.
    pub watch_idle_timeout: Duration,
    /// The cluster's configuration as shown by the dump: defaults filled,
    /// `${ENV}` left as written, `client.token` replaced by `<redacted>`.
    pub config: KubernetesCluster,
}

/// A parsed `service_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Cluster id (multi-cluster mode only).
    pub cluster: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Endpoints / Service name.
    pub name: String,
    /// Port name, or number for an unnamed port.
    pub port: String,
}

impl ServiceRef {
    /// `namespace/name`, the registry key of the service.
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Splits `ns/name:port` (single) or `id/ns/name:port` (multi).
pub fn parse_service_name(name: &str, multi_cluster: bool) -> Result<ServiceRef, String> {
    let expected = if multi_cluster {
        "expected id/namespace/name:port in multi-cluster mode"
    } else {
        "expected namespace/name:port in single-cluster mode"
    };
    let (path, port) = name.rsplit_once(':').ok_or(expected)?;
    let parts: Vec<&str> = path.split('/').collect();
    let (cluster, ns, svc) = match (multi_cluster, parts.as_slice()) {
        (false, [ns, svc]) => (None, *ns, *svc),
        (true, [id, ns, svc]) => (Some(*id), *ns, *svc),
        _ => return Err(expected.to_owned()),
    };
    if ns.is_empty() || svc.is_empty() || port.is_empty() || cluster == Some("") {
        return Err(format!("{expected}; a part is empty"));
    }
    Ok(ServiceRef {
        cluster: cluster.map(str::to_owned),
        namespace: ns.to_owned(),
        name: svc.to_owned(),
        port: port.to_owned(),
    })
}

/// Checks a `service_name` against the discovery mode (and, in multi-cluster
/// mode, that the cluster id is configured).
pub fn check_service_name(k: &KubernetesDiscovery, name: &str) -> Result<(), String> {
    let multi = matches!(k, KubernetesDiscovery::Multi(_));
    let r = parse_service_name(name, multi)?;
    if let (KubernetesDiscovery::Multi(clusters), Some(id)) = (k, &r.cluster) {
        if !clusters
            .iter()
            .any(|c| c.id.as_deref() == Some(id.as_str()))
        {
            return Err(format!("unknown cluster id {id:?}"));
        }
    }
    Ok(())
}

/// Reports every mistake of `discovery:` (reading `${ENV}` from the process).
pub(crate) fn validate(d: &DiscoveryConfig, errors: &mut Errors) {
    if let Some(k) = &d.kubernetes {
        if let Err(e) = resolve_with(k, &|v| std::env::var(v).ok()) {
            errors.0.extend(e.0);
        }
    }
}

/// Resolves `discovery.kubernetes` against the process environment.
pub fn resolve(k: &KubernetesDiscovery) -> Result<Vec<ResolvedCluster>, FieldErrors> {
    resolve_with(k, &|v| std::env::var(v).ok())
}

/// Resolves with `env` looking up `${VAR}`s (tests pass a map, not the process env).
pub fn resolve_with(
    k: &KubernetesDiscovery,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ResolvedCluster>, FieldErrors> {
    let mut errors = Errors::default();
    let mut out = Vec::new();
    match k {
        KubernetesDiscovery::Single(c) => {
            if let Some(r) = resolve_cluster(c, None, "discovery.kubernetes", env, &mut errors) {
                out.push(r);
            }
        }
        KubernetesDiscovery::Multi(clusters) => {
            if clusters.is_empty() {
                errors.add(
                    "discovery.kubernetes",
                    "the list of clusters must not be empty",
                );
            }
            let ids = Regex::new("^[a-z0-9]{1,64}$").ok();
            let mut seen = std::collections::HashSet::new();
            for (i, c) in clusters.iter().enumerate() {
                let at = path::index("discovery.kubernetes", i);
                let id_at = path::field(&at, "id");
                let id = match c.id.as_deref() {
                    None => {
                        errors.add(&id_at, "required in multi-cluster mode");
                        continue;
                    }
                    Some(id) => id,
                };
                if !ids.as_ref().is_some_and(|re| re.is_match(id)) {
                    errors.add(&id_at, format!("{id:?} must match ^[a-z0-9]{{1,64}}$"));
                } else if !seen.insert(id) {
                    errors.add(&id_at, format!("duplicate cluster id {id:?}"));
                }
                if let Some(r) = resolve_cluster(c, Some(id), &at, env, &mut errors) {
                    out.push(r);
                }
            }
        }
    }
    if errors.0.is_empty() {
        Ok(out)
    } else {
        Err(FieldErrors(errors.0))
    }
}

/// Expands `${VAR}` anywhere in `s`; the error names the unset variable.
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let var = &after[..end];
        let valid = !var.is_empty()
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !var.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!("invalid variable name {var:?}"));
        }
        let value = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills the single-cluster defaults APISIX fills (multi-cluster gets none
/// for `service`/`client`; both get `schema`, `default_weight`, `shared_size`).
fn with_defaults(c: &KubernetesCluster, single: bool) -> KubernetesCluster {
    let mut c = c.clone();
    if single {
        let service = c.service.get_or_insert_with(ApiServerService::default);
        service
            .host
            .get_or_insert_with(|| "${KUBERNETES_SERVICE_HOST}".to_owned());
        service
            .port
            .get_or_insert_with(|| PortValue("${KUBERNETES_SERVICE_PORT}".to_owned()));
        let client = c.client.get_or_insert_with(ApiServerClient::default);
        if client.token.is_none() && client.token_file.is_none() && client.kubeconfig.is_none() {
            client.token_file = Some(IN_CLUSTER_TOKEN_FILE.to_owned());
        }
    }
    if let Some(service) = c.service.as_mut() {
        service.schema.get_or_insert_with(|| "https".to_owned());
    }
    c.default_weight.get_or_insert(DEFAULT_WEIGHT);
    c.shared_size
        .get_or_insert_with(|| serde_json::Value::String("64m".to_owned()));
    c.watch_endpoint_slices.get_or_insert(false);
    c.watch_idle_timeout
        .get_or_insert(DEFAULT_WATCH_IDLE_TIMEOUT_SECS);
    c
}

fn resolve_cluster(
    raw: &KubernetesCluster,
    id: Option<&str>,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<ResolvedCluster> {
    let before = errors.0.len();
    let single = id.is_none();
    let c = with_defaults(raw, single);
    let ssl_verify = resolve_ssl_verify(&c, at, errors);
    let api_server = resolve_api_server(raw, &c, single, ssl_verify, at, env, errors);

    let namespace_filter = c
        .namespace_selector
        .as_ref()
        .map(|s| resolve_namespace_selector(s, &path::field(at, "namespace_selector"), errors))
        .unwrap_or(NamespaceFilter::All);

    let label_selector = match c.label_selector.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(sel) => match normalize_label_selector(sel) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.add(path::field(at, "label_selector"), format!("{sel:?}: {e}"));
                None
            }
        },
    };

    let idle = c
        .watch_idle_timeout
        .unwrap_or(DEFAULT_WATCH_IDLE_TIMEOUT_SECS);
    if !(idle.is_finite() && idle > 0.0 && idle <= 86_400.0) {
        errors.add(
            path::field(at, "watch_idle_timeout"),
            "must be a number of seconds > 0 (and at most 86400)",
        );
    }

    if errors.0.len() > before {
        return None;
    }
    let mut config = c.clone();
    if let Some(cl) = config.client.as_mut() {
        if cl.token.is_some() {
            cl.token = Some(REDACTED.to_owned());
        }
    }
    Some(ResolvedCluster {
        id: id.map(str::to_owned),
        api_server: api_server?,
        ssl_verify,
        default_weight: c.default_weight.unwrap_or(DEFAULT_WEIGHT),
        namespace_filter,
        label_selector,
        watch_endpoint_slices: c.watch_endpoint_slices.unwrap_or(false),
        watch_idle_timeout: Duration::from_secs_f64(idle),
        config,
    })
}

/// `service.ssl_verify` (APISIX) or `client.ssl_verify` (weir); verifying
/// unless one is explicitly `false`. Both given and different is an error.
fn resolve_ssl_verify(c: &KubernetesCluster, at: &str, errors: &mut Errors) -> bool {
    let service = c.service.as_ref().and_then(|s| s.ssl_verify);
    let client = c.client.as_ref().and_then(|c| c.ssl_verify);
    if let (Some(a), Some(b)) = (service, client) {
        if a != b {
            errors.add(
                path::field(&path::field(at, "client"), "ssl_verify"),
                format!("{b} contradicts service.ssl_verify: {a}; give one of them"),
            );
        }
    }
    service.or(client) != Some(false)
}

fn resolve_api_server(
    raw: &KubernetesCluster,
    c: &KubernetesCluster,
    single: bool,
    ssl_verify: bool,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<ApiServer> {
    let client = c.client.clone().unwrap_or_default();
    let client_at = path::field(at, "client");
    let service_at = path::field(at, "service");
    let expand = |value: &str, field: &str, errors: &mut Errors| match expand_env(value, env) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.add(field, e);
            None
        }
    };

    // kubeconfig: written explicitly, or single-cluster defaults with
    // `$KUBERNETES_SERVICE_HOST` unset but `$KUBECONFIG` set (out of cluster).
    let raw_service_given = raw.service.as_ref().is_some_and(|s| s.host.is_some());
    let raw_client = raw.client.clone().unwrap_or_default();
    let raw_credentials_given = raw_client.token.is_some() || raw_client.token_file.is_some();
    let kubeconfig = match &client.kubeconfig {
        Some(p) => Some(expand(p, &path::field(&client_at, "kubeconfig"), errors)?),
        None if single
            && !raw_service_given
            && !raw_credentials_given
            && env("KUBERNETES_SERVICE_HOST").is_none() =>
        {
            env("KUBECONFIG").filter(|p| !p.is_empty())
        }
        None => None,
    };
    if let Some(kc) = kubeconfig {
        let explicit = raw_service_given || raw_credentials_given || raw_client.ca_file.is_some();
        if explicit && client.kubeconfig.is_some() {
            errors.add(
                path::field(&client_at, "kubeconfig"),
                "give kubeconfig or service/token/token_file/ca_file, not both",
            );
            return None;
        }
        // The first context's path may hold several files (KUBECONFIG=a:b); use the first.
        let first = kc.split(':').next().unwrap_or_default().to_owned();
        return Some(ApiServer::Kubeconfig(PathBuf::from(first)));
    }

    let Some(service) = c.service.as_ref() else {
        errors.add(
            &service_at,
            "required in multi-cluster mode (host and port)",
        );
        return None;
    };
    let schema = service.schema.as_deref().unwrap_or("https");
    if schema != "http" && schema != "https" {
        errors.add(
            path::field(&service_at, "schema"),
            format!("{schema:?} must be http or https"),
        );
    }
    let host_at = path::field(&service_at, "host");
    let host = match service.host.as_deref() {
        None => {
            errors.add(&host_at, "required");
            None
        }
        Some(h) => expand(h, &host_at, errors),
    };
    let host = host.and_then(|h| {
        let h = h.trim().to_owned();
        if h.is_empty() || h.contains(['/', ' ', '?', '#', '@']) {
            errors.add(&host_at, format!("{h:?} is not a host name or IP address"));
            None
        } else {
            Some(h)
        }
    });
    let port_at = path::field(&service_at, "port");
    let port = match service.port.as_ref() {
        None => {
            errors.add(&port_at, "required");
            None
        }
        Some(p) => expand(&p.0, &port_at, errors),
    };
    let port = port.and_then(|p| match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            errors.add(&port_at, format!("{p:?} is not a port number 1..65535"));
            None
        }
    });

    let credentials = match (&client.token, &client.token_file) {
        (Some(_), Some(_)) => {
            errors.add(
                path::field(&client_at, "token"),
                "give token or token_file, not both",
            );
            None
        }
        (Some(t), None) => {
            let token_at = path::field(&client_at, "token");
            // The value never goes into a message: only the variable name does.
            expand(t, &token_at, errors).and_then(|t| {
                let t = t.trim().to_owned();
                if t.is_empty() {
                    errors.add(&token_at, "must not be empty");
                    None
                } else {
                    Some(Credentials::Token(Secret::new(t)))
                }
            })
        }
        (None, Some(f)) => {
            let file_at = path::field(&client_at, "token_file");
            expand(f, &file_at, errors).and_then(|f| {
                if f.is_empty() {
                    errors.add(&file_at, "must not be empty");
                    None
                } else {
                    Some(Credentials::TokenFile(PathBuf::from(f)))
                }
            })
        }
        (None, None) if schema == "https" => {
            errors.add(
                &client_at,
                "token or token_file is required in multi-cluster mode",
            );
            None
        }
        (None, None) => Some(Credentials::None),
    };

    let ca_file = match (&client.ca_file, schema) {
        (Some(f), _) => expand(f, &path::field(&client_at, "ca_file"), errors).map(PathBuf::from),
        (None, "https") if single && ssl_verify => Some(PathBuf::from(IN_CLUSTER_CA_FILE)),
        (None, _) => None,
    };
    let host = host?;
    let port = port?;
    let credentials = credentials?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Some(ApiServer::Direct {
        url: format!("{schema}://{host}:{port}"),
        credentials,
        ca_file,
    })
}

fn resolve_namespace_selector(
    s: &NamespaceSelector,
    at: &str,
    errors: &mut Errors,
) -> NamespaceFilter {
    let given = [
        s.equal.is_some(),
        s.not_equal.is_some(),
        s.match_.is_some(),
        s.not_match.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        errors.add(at, "give only one of equal, not_equal, match, not_match");
        return NamespaceFilter::All;
    }
    let namespace = Regex::new(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$").ok();
    let check_ns = |n: &str, field: &str, errors: &mut Errors| {
        if !namespace.as_ref().is_some_and(|re| re.is_match(n)) {
            errors.add(
                path::field(at, field),
                format!("{n:?} is not a namespace name"),
            );
        }
    };
    let compile = |list: &[String], field: &str, errors: &mut Errors| -> Vec<Regex> {
        let fat = path::field(at, field);
        if list.is_empty() {
            errors.add(&fat, "must list at least one regex");
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, re)| match Regex::new(&format!("^(?:{re})$")) {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.add(path::index(&fat, i), format!("{re:?}: invalid regex: {e}"));
                    None
                }
            })
            .collect()
    };
    if let Some(n) = &s.equal {
        check_ns(n, "equal", errors);
        NamespaceFilter::Equal(n.clone())
    } else if let Some(n) = &s.not_equal {
        check_ns(n, "not_equal", errors);
        NamespaceFilter::NotEqual(n.clone())
    } else if let Some(list) = &s.match_ {
        NamespaceFilter::Match(compile(list, "match", errors))
    } else if let Some(list) = &s.not_match {
        NamespaceFilter::NotMatch(compile(list, "not_match", errors))
    } else {
        NamespaceFilter::All
    }
}
