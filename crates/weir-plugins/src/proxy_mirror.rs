//! `proxy-mirror`: sends a copy of requests to another server and ignores
//! its answers, as APISIX's `proxy-mirror` (priority 1010): `host` (where),
//! `path` with `path_concat_mode` (`replace`: the path is `path`; `prefix`:
//! `path` then the request's path), `sample_ratio` (the share of requests
//! copied).
//!
//! Fire and forget: the copy leaves in a task of its own once the request
//! phases are over (a request a plugin answered is not copied), on its own
//! connection, and the main request never waits for it. A mirror that is
//! slow or down costs the main requests nothing: at most
//! [`MAX_IN_FLIGHT`] copies are in flight at once (beyond, copies are
//! dropped and counted), each bounded by [`MIRROR_TIMEOUT`].
//!
//! The copy is the request as the upstream gets it (after `proxy-rewrite`):
//! method, path and query, header fields, Host, and the body. The route's
//! request bodies are read whole first to copy them (`needs_body`: up to
//! 1 MiB, 413 beyond), as nginx's mirror reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Phase, Phases, Plugin, PluginSpec, RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "proxy-mirror",
    priority: 1010,
    phases: Phases::of(&[Phase::BeforeProxy]),
    needs_body: true,
    build,
    consumer_check: None,
};

/// Copies in flight at once, over every route; beyond, copies are dropped.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The most a copy may take, from connecting to the end of the mirror's
/// answer (APISIX's default mirror timeouts are 60 s each).
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(60);

static IN_FLIGHT: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT)));

static SENT: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Copies by result since start: answered by the mirror (any status),
/// failed (refused, timed out, broken), dropped (too many in flight).
pub fn stats() -> [(&'static str, u64); 3] {
    [
        ("answered", SENT.load(Ordering::Relaxed)),
        ("failed", FAILED.load(Ordering::Relaxed)),
        ("dropped", DROPPED.load(Ordering::Relaxed)),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    host: String,
    path: Option<String>,
    #[serde(default)]
    path_concat_mode: ConcatMode,
    sample_ratio: Option<f64>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum ConcatMode {
    #[default]
    Replace,
    Prefix,
}

/// Where copies go.
#[derive(Debug, Clone)]
struct Target {
    tls: bool,
    /// Host name or address, without brackets.
    host: String,
    port: u16,
}

struct ProxyMirror {
    target: Arc<Target>,
    path: Option<String>,
    mode: ConcatMode,
    ratio: f64,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    let target = parse_host(&c.host)?;
    if let Some(p) = &c.path {
        if !p.starts_with('/') || p.len() < 2 || p.contains(['?', '&']) {
            return Err(ConfigError::at(
                "path",
                "must start with `/`, not be `/` alone, and have no `?` or `&`",
            ));
        }
    }
    let ratio = c.sample_ratio.unwrap_or(1.0);
    if !(0.00001..=1.0).contains(&ratio) {
        return Err(ConfigError::at(
            "sample_ratio",
            "must be between 0.00001 and 1",
        ));
    }
    Ok(Arc::new(ProxyMirror {
        target: Arc::new(target),
        path: c.path,
        mode: c.path_concat_mode,
        ratio,
    }))
}

/// `scheme://host[:port]`, as APISIX's schema has it.
fn parse_host(text: &str) -> Result<Target, ConfigError> {
    let bad = |why: &str| ConfigError::at("host", format!("{text:?}: {why}"));
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| bad("must be scheme://host[:port] (http or https)"))?;
    let tls = match scheme {
        "http" => false,
        "https" => true,
        "grpc" | "grpcs" => return Err(bad("gRPC mirrors are not supported by weir")),
        _ => return Err(bad("the scheme must be http or https")),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address between the brackets"));
        }
        (addr.to_owned(), after)
    } else {
        match rest.find(':') {
            Some(i) => (rest[..i].to_owned(), &rest[i..]),
            None => (rest.to_owned(), ""),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    {
        return Err(bad("not a host name or address (and no path may follow)"));
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        None => return Err(bad("only a port may follow the host")),
    };
    Ok(Target { tls, host, port })
}

/// Fields not copied: the connection's own, and those the copy sets.
fn copied(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "expect"
    )
}

impl Plugin for ProxyMirror {
    fn before_proxy(&self, req: &mut RequestCtx<'_>) {
        if self.ratio < 1.0 && rand::random::<f64>() >= self.ratio {
            return;
        }
        let Ok(permit) = IN_FLIGHT.clone().try_acquire_owned() else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let target = req.upstream_target();
        let path_and_query = match (&self.path, self.mode) {
            (None, _) => target.to_owned(),
            (Some(p), ConcatMode::Prefix) => format!("{p}{target}"),
            (Some(p), ConcatMode::Replace) => match target.split_once('?') {
                Some((_, query)) => format!("{p}?{query}"),
                None => p.clone(),
            },
        };
        let mut builder = http::Request::builder()
            .method(req.upstream_method())
            .uri(path_and_query);
        let host = req
            .upstream_host()
            .filter(|h| !h.is_empty())
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| self.target.host.clone().into_bytes());
        builder = builder.header(http::header::HOST, host);
        let mut fields = Vec::new();
        req.for_each_upstream_field(|name, value| {
            if copied(name) {
                fields.push((name.to_owned(), value.to_vec()));
            }
        });
        for (name, value) in fields {
            builder = builder.header(name, value);
        }
        let body = Bytes::copy_from_slice(req.body().unwrap_or_default());
        let Ok(request) = builder.body(Full::new(body)) else {
            FAILED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let target = self.target.clone();
        runtime.spawn(async move {
            let result = tokio::time::timeout(MIRROR_TIMEOUT, send(&target, request)).await;
            drop(permit);
            match result {
                Ok(Ok(())) => {
                    SENT.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    FAILED.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(mirror = %target.host, port = target.port, error = %e, "mirror request failed");
                }
                Err(_) => {
                    FAILED.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(mirror = %target.host, port = target.port, "mirror request timed out");
                }
            }
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one copy on a connection of its own and reads the answer to its
/// end (so the mirror sees a complete exchange).
async fn send(target: &Target, request: http::Request<Full<Bytes>>) -> Result<(), BoxError> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
    let _ = tcp.set_nodelay(true);
    if target.tls {
        let name = rustls_pki_types::ServerName::try_from(target.host.clone())?;
        let tls = tls_connector().connect(name, tcp).await?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}

async fn exchange<S>(io: S, request: http::Request<Full<Bytes>>) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    response.into_body().collect().await?;
    drop(sender);
    conn.abort();
    Ok(())
}

/// TLS to mirrors: the web PKI's roots, the host name verified.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        match config {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(error = %e, "mirror TLS configuration failed");
                Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        }
    });
    tokio_rustls::TlsConnector::from(CONFIG.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn hosts_parse_as_apisix_writes_them() {
        let t = parse_host("http://127.0.0.1:9797").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 9797));
        let t = parse_host("https://mirror.example").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (true, "mirror.example", 443)
        );
        let t = parse_host("http://[::1]:81").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
    }

    #[test]
    fn bad_configurations_name_the_field() {
        for (conf, path) in [
            (json!({"host": "127.0.0.1:80"}), "host"),
            (json!({"host": "ftp://a"}), "host"),
            (json!({"host": "grpc://a:1"}), "host"),
            (json!({"host": "http://a/path"}), "host"),
            (json!({"host": "http://a:0"}), "host"),
            (json!({"host": "http://a", "path": "x"}), "path"),
            (json!({"host": "http://a", "path": "/a?b"}), "path"),
            (
                json!({"host": "http://a", "sample_ratio": 0}),
                "sample_ratio",
            ),
            (
                json!({"host": "http://a", "path_concat_mode": "append"}),
                "path_concat_mode",
            ),
            (json!({"host": "http://a", "timeout": 1}), "timeout"),
        ] {
            let e = config_error(&SPEC, conf.clone());
            assert!(e.path.starts_with(path), "{conf}: {e}");
        }
        let e = config_error(&SPEC, json!({}));
        assert!(e.to_string().contains("missing field `host`"), "{e}");
    }
}
