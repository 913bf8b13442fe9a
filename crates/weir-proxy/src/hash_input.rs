//! What `chash` hashes for a request: `hash_on` + `key` as APISIX defines
//! them (`vars`, `header`, `cookie`), falling back to the client address.
//!
//! Works on any view of a request head: hyper's [`Parts`] on the general
//! path, the raw parsed head on the HTTP/1.1 fast path.

use std::net::{IpAddr, SocketAddr};

use http::request::Parts;
use http::{header, HeaderValue};
use weir_config::HashOn;

use crate::balance::hash_bytes;
use crate::upstream::Upstream;

/// The parts of a request head `chash` may hash.
pub trait RequestView {
    /// The request path (no query).
    fn path(&self) -> &str;
    /// The query string, without `?`.
    fn query(&self) -> Option<&str>;
    /// Path and query as sent.
    fn path_and_query(&self) -> &str;
    /// The Host field (or the target's authority).
    fn host(&self) -> Option<&[u8]>;
    /// Every value of the header field `name` (lower case), in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl RequestView for Parts {
    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn host(&self) -> Option<&[u8]> {
        self.headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| self.uri.host().map(str::as_bytes))
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.get_all(name).iter().map(HeaderValue::as_bytes)
    }
}

/// The consistent-hash input of a request for `upstream`.
pub fn chash_input(upstream: &Upstream, req: &impl RequestView, remote: SocketAddr) -> u64 {
    hash_for(upstream.hash_on, &upstream.hash_key, req, remote)
}

/// The consistent-hash input of a request for `hash_on` + `key`.
pub fn hash_for(hash_on: HashOn, key: &str, req: &impl RequestView, remote: SocketAddr) -> u64 {
    let hashed: Option<u64> = match hash_on {
        HashOn::Header => req.header_values(key).next().map(hash_bytes),
        HashOn::Cookie => cookie(req, key).map(hash_bytes),
        HashOn::Vars => match key {
            "uri" => Some(hash_bytes(req.path().as_bytes())),
            "request_uri" => Some(hash_bytes(req.path_and_query().as_bytes())),
            "host" | "server_name" => req.host().map(hash_bytes),
            "remote_addr" => None,
            k => {
                if let Some(name) = k.strip_prefix("http_") {
                    let name = name.replace('_', "-");
                    let hashed = req.header_values(&name).next().map(hash_bytes);
                    hashed
                } else if let Some(name) = k.strip_prefix("arg_") {
                    query_arg(req.query(), name).map(hash_bytes)
                } else if let Some(name) = k.strip_prefix("cookie_") {
                    cookie(req, name).map(hash_bytes)
                } else {
                    None
                }
            }
        },
    };
    // As APISIX: with no key value, hash the client address.
    hashed.unwrap_or_else(|| match remote.ip() {
        IpAddr::V4(ip) => hash_bytes(&ip.octets()),
        IpAddr::V6(ip) => hash_bytes(&ip.octets()),
    })
}

fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Option<&'a [u8]> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}

fn cookie<'a>(req: &'a impl RequestView, name: &str) -> Option<&'a [u8]> {
    req.header_values("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}
