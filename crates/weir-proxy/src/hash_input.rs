//! What `chash` hashes for a request: `hash_on` + `key` as APISIX defines
//! them (`vars`, `header`, `cookie`), falling back to the client address.

use http::request::Parts;
use http::{header, HeaderMap, HeaderValue};
use weir_config::HashOn;

use crate::balance::hash_bytes;
use crate::forward::ConnInfo;
use crate::upstream::Upstream;

/// The consistent-hash input of a request for `upstream`.
pub fn chash_input(upstream: &Upstream, parts: &Parts, conn: &ConnInfo) -> u64 {
    let key = upstream.hash_key.as_str();
    let value: Option<&[u8]> = match upstream.hash_on {
        HashOn::Header => parts.headers.get(key).map(HeaderValue::as_bytes),
        HashOn::Cookie => cookie(&parts.headers, key),
        HashOn::Vars => match key {
            "uri" => Some(parts.uri.path().as_bytes()),
            "request_uri" => parts.uri.path_and_query().map(|p| p.as_str().as_bytes()),
            "host" | "server_name" => parts
                .headers
                .get(header::HOST)
                .map(HeaderValue::as_bytes)
                .or_else(|| parts.uri.host().map(str::as_bytes)),
            "remote_addr" => None,
            k => {
                if let Some(name) = k.strip_prefix("http_") {
                    let name = name.replace('_', "-");
                    parts.headers.get(name.as_str()).map(HeaderValue::as_bytes)
                } else if let Some(name) = k.strip_prefix("arg_") {
                    query_arg(parts.uri.query(), name)
                } else if let Some(name) = k.strip_prefix("cookie_") {
                    cookie(&parts.headers, name)
                } else {
                    None
                }
            }
        },
    };
    match value {
        Some(v) => hash_bytes(v),
        // As APISIX: with no key value, hash the client address.
        None => match conn.remote.ip() {
            std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        },
    }
}

fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Option<&'a [u8]> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}
