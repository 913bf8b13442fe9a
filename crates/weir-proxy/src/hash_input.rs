//! What `chash` hashes for a request: `hash_on` + `key` as APISIX defines
//! them (`vars`, `header`, `cookie`), falling back to the client address.
//!
//! Works on any [`RequestView`]: hyper's `Parts` on the general path, the
//! raw parsed head on the HTTP/1.1 fast path.

use std::net::{IpAddr, SocketAddr};

use weir_config::HashOn;
use weir_http::view::{cookie, query_arg};
use weir_http::RequestView;

use crate::balance::hash_bytes;
use crate::upstream::Upstream;

/// The consistent-hash input of a request for `upstream`.
pub fn chash_input(
    upstream: &Upstream,
    req: &(impl RequestView + ?Sized),
    remote: SocketAddr,
) -> u64 {
    hash_for(upstream.hash_on, &upstream.hash_key, req, remote)
}

/// The consistent-hash input of a request for `hash_on` + `key`.
pub fn hash_for(
    hash_on: HashOn,
    key: &str,
    req: &(impl RequestView + ?Sized),
    remote: SocketAddr,
) -> u64 {
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
                    query_arg(req.query(), name).map(|v| hash_bytes(v.as_bytes()))
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
