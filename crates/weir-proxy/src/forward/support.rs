//! Small pieces of the general request path: the set of nodes tried, log
//! rate limiting, request-head copies for replays, Host handling.

use std::time::Instant;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri, Version};
use weir_config::PassHost;

use crate::body::ProxyBody;
use crate::upstream::Upstream;

/// Node indices already tried for this request. Inline for the usual few
/// attempts: no allocation on the request path.
#[derive(Default)]
pub(crate) struct Tried {
    inline: [usize; 4],
    len: usize,
    spill: Vec<usize>,
}

impl Tried {
    pub(crate) fn push(&mut self, i: usize) {
        if self.len < self.inline.len() {
            self.inline[self.len] = i;
        } else {
            self.spill.push(i);
        }
        self.len += 1;
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.inline[..self.len.min(self.inline.len())].contains(&i) || self.spill.contains(&i)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The request head, copied for replays.
pub(super) struct RequestHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl RequestHead {
    pub(super) fn copy(parts: &Parts) -> RequestHead {
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    pub(super) fn to_parts(&self) -> Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = self.uri.clone();
        parts.headers = self.headers.clone();
        parts.version = Version::HTTP_11;
        parts
    }
}

/// When the first attempt started, for `retry_timeout`; no clock read for
/// upstreams without one.
pub(crate) fn retry_clock(upstream: &Upstream) -> Option<Instant> {
    upstream.retry_timeout.map(|_| Instant::now())
}

pub(crate) fn retry_deadline_passed(upstream: &Upstream, started: Option<Instant>) -> bool {
    match (upstream.retry_timeout, started) {
        (Some(limit), Some(started)) => started.elapsed() >= limit,
        _ => false,
    }
}

pub(super) fn set_host(
    headers: &mut HeaderMap,
    upstream: &Upstream,
    node_key: &str,
    original: Option<&HeaderValue>,
) {
    match upstream.pass_host {
        PassHost::Pass => match original {
            Some(h) => {
                headers.insert(header::HOST, h.clone());
            }
            // An HTTP/1.0 client may send no Host; HTTP/1.1 to the node
            // requires one (RFC 9112 §3.2): name the node.
            None => {
                if let Ok(v) = HeaderValue::from_str(node_key) {
                    headers.insert(header::HOST, v);
                }
            }
        },
        PassHost::Node => {
            if let Ok(v) = HeaderValue::from_str(node_key) {
                headers.insert(header::HOST, v);
            }
        }
        PassHost::Rewrite => {
            if let Some(h) = &upstream.upstream_host {
                headers.insert(header::HOST, h.clone());
            }
        }
    }
}

pub(super) fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

pub(super) fn body_is_empty(b: &ProxyBody) -> bool {
    use http_body::Body;
    b.is_end_stream() || b.size_hint().exact() == Some(0)
}

pub(super) fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    let raw = uri
        .host()
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    crate::router::strip_port(raw)
}

pub(super) fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/0.9",
    }
}

/// The names a request's `Trailer` fields announce, without those that
/// must not be sent in trailers (RFC 9110 §6.5.1), as one field value;
/// None when none is left.
pub(super) fn announced_trailers(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut names = String::new();
    for value in headers.get_all(header::TRAILER) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',').map(str::trim) {
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if valid && !weir_http::reframe::forbidden_in_trailers(name.as_bytes()) {
                if !names.is_empty() {
                    names.push_str(", ");
                }
                names.push_str(name);
            }
        }
    }
    HeaderValue::from_str(&names)
        .ok()
        .filter(|_| !names.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_become_origin_form() {
        let u: Uri = "http://a.example/x?y=1".parse().unwrap();
        assert_eq!(origin_form(&u).to_string(), "/x?y=1");
    }
}
