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

/// The consistent-hash input of a request for `upstream`. `consumer`: the
/// consumer an authentication plugin recognised (for `hash_on: consumer`).
pub fn chash_input(
    upstream: &Upstream,
    req: &(impl RequestView + ?Sized),
    conn: &weir_plugin::Conn,
    consumer: Option<&str>,
) -> u64 {
    let hashed = match upstream.hash_kind {
        weir_config::HashKind::Consumer => consumer.map(|c| hash_bytes(c.as_bytes())),
        weir_config::HashKind::VarsCombinations => upstream.hash_template.as_ref().and_then(|t| {
            let view: &dyn RequestView = &Viewed(req);
            let key = t.render(&crate::snapshot::RequestVars { view, conn });
            (!key.is_empty()).then(|| hash_bytes(key.as_bytes()))
        }),
        _ => return hash_for(upstream.hash_on, &upstream.hash_key, req, conn.remote),
    };
    hashed.unwrap_or_else(|| client_hash(conn.remote))
}

/// A `?Sized` view passed on as a trait object.
struct Viewed<'a, V: RequestView + ?Sized>(&'a V);

impl<V: RequestView + ?Sized> RequestView for Viewed<'_, V> {
    fn method(&self) -> &str {
        self.0.method()
    }
    fn path(&self) -> &str {
        self.0.path()
    }
    fn query(&self) -> Option<&str> {
        self.0.query()
    }
    fn path_and_query(&self) -> &str {
        self.0.path_and_query()
    }
    fn host(&self) -> Option<&[u8]> {
        self.0.host()
    }
    fn header_values<'a, 'n>(&'a self, name: &'n str) -> weir_http::HeaderValues<'a, 'n> {
        self.0.header_values(name)
    }
    fn fields(&self) -> weir_http::view::Fields<'_> {
        self.0.fields()
    }
}

/// What a request hashes to without a key value: its client address.
fn client_hash(remote: SocketAddr) -> u64 {
    match remote.ip() {
        IpAddr::V4(ip) => hash_bytes(&ip.octets()),
        IpAddr::V6(ip) => hash_bytes(&ip.octets()),
    }
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
            "query_string" | "args" => req.query().map(|q| hash_bytes(q.as_bytes())),
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
    hashed.unwrap_or_else(|| client_hash(remote))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddr};

    use weir_config::HashOn::{Cookie, Header, Vars};

    use super::*;

    /// The client of most cases.
    const CLIENT: &str = "10.0.0.9:5555";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    /// A request head for `target` with these fields, in order.
    fn head(target: &str, fields: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get(target);
        for (name, value) in fields {
            b = b.header(*name, *value);
        }
        b.body(()).expect("request").into_parts().0
    }

    /// What a request from `client` hashes to when the key has no value.
    fn fallback(client: &str) -> u64 {
        match addr(client).ip() {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }
    }

    #[test]
    fn vars_remote_addr_hashes_the_client_ip_whatever_its_port_and_the_request() {
        let req = head("/p?user=alice", &[("host", "shop.test"), ("x-user", "bob")]);
        let h = |client: &str| hash_for(Vars, "remote_addr", &req, addr(client));
        assert_eq!(h(CLIENT), hash_bytes(&[10, 0, 0, 9]));
        assert_eq!(h(CLIENT), h("10.0.0.9:6000"), "another port, same IP");
        assert_ne!(h(CLIENT), h("10.0.0.10:5555"), "another IP");
        let other = head("/q", &[]);
        assert_eq!(
            h(CLIENT),
            hash_for(Vars, "remote_addr", &other, addr(CLIENT)),
            "the request does not matter"
        );
        let v6 = "[2001:db8::1]:443";
        let ip: Ipv6Addr = "2001:db8::1".parse().expect("IPv6");
        assert_eq!(h(v6), hash_bytes(&ip.octets()));
    }

    #[test]
    fn vars_arg_hashes_the_value_of_the_named_query_argument() {
        let h = |target: &str| hash_for(Vars, "arg_user", &head(target, &[]), addr(CLIENT));
        assert_eq!(h("/p?user=alice"), hash_bytes(b"alice"));
        assert_eq!(
            h("/p?user=alice"),
            h("/elsewhere?x=1&user=alice&y=2"),
            "the path and other arguments do not matter"
        );
        assert_ne!(h("/p?user=alice"), h("/p?user=bob"));
        assert_eq!(
            h("/p?user=alice&user=bob"),
            hash_bytes(b"alice"),
            "the first occurrence"
        );
        // Only an argument of exactly that name counts.
        assert_eq!(h("/p?username=alice&xuser=alice"), fallback(CLIENT));
        assert_eq!(h("/p"), fallback(CLIENT), "no query at all");
    }

    #[test]
    fn vars_uri_hashes_the_path_and_request_uri_the_path_with_its_query() {
        let h = |key: &str, target: &str| hash_for(Vars, key, &head(target, &[]), addr(CLIENT));
        assert_eq!(h("uri", "/p?a=1"), hash_bytes(b"/p"));
        assert_eq!(
            h("uri", "/p?a=1"),
            h("uri", "/p?a=2"),
            "the query is not part of uri"
        );
        assert_ne!(h("uri", "/p"), h("uri", "/q"));
        assert_eq!(h("request_uri", "/p?a=1"), hash_bytes(b"/p?a=1"));
        assert_ne!(h("request_uri", "/p?a=1"), h("request_uri", "/p?a=2"));
    }

    #[test]
    fn vars_host_and_server_name_hash_the_host_field_as_sent() {
        let req = head("/p", &[("host", "shop.test:8080")]);
        for key in ["host", "server_name"] {
            assert_eq!(
                hash_for(Vars, key, &req, addr(CLIENT)),
                hash_bytes(b"shop.test:8080"),
                "{key}"
            );
        }
        let absolute = head("http://other.test/p", &[]);
        assert_eq!(
            hash_for(Vars, "host", &absolute, addr(CLIENT)),
            hash_bytes(b"other.test"),
            "without a Host field, the target's host"
        );
    }

    #[test]
    fn header_hashes_the_first_value_of_the_named_field() {
        let req = head(
            "/p",
            &[("x-other", "x"), ("x-user", "alice"), ("x-user", "bob")],
        );
        assert_eq!(
            hash_for(Header, "x-user", &req, addr(CLIENT)),
            hash_bytes(b"alice")
        );
        assert_eq!(
            hash_for(Vars, "http_x_user", &req, addr(CLIENT)),
            hash_bytes(b"alice"),
            "vars http_NAME: `_` stands for `-`"
        );
        let bob = head("/q?user=alice", &[("x-user", "bob")]);
        assert_eq!(
            hash_for(Header, "x-user", &bob, addr(CLIENT)),
            hash_bytes(b"bob")
        );
        assert_eq!(
            hash_for(Header, "x-user", &req, addr(CLIENT)),
            hash_for(Header, "x-user", &req, addr("10.9.9.9:1")),
            "a present key does not depend on the client"
        );
    }

    #[test]
    fn cookie_hashes_the_named_cookie_in_any_cookie_field() {
        let req = head(
            "/p",
            &[("cookie", "a=1; sid=xyz"), ("cookie", "t=2; sidx=no")],
        );
        let h = |on, key: &str| hash_for(on, key, &req, addr(CLIENT));
        assert_eq!(h(Cookie, "sid"), hash_bytes(b"xyz"));
        assert_eq!(
            h(Cookie, "t"),
            hash_bytes(b"2"),
            "in the second Cookie field"
        );
        assert_eq!(
            h(Vars, "cookie_sid"),
            hash_bytes(b"xyz"),
            "vars cookie_NAME"
        );
        assert_eq!(h(Cookie, "x"), fallback(CLIENT), "an absent cookie");
        assert_eq!(
            h(Cookie, "sidx"),
            hash_bytes(b"no"),
            "names match exactly: sid is not sidx"
        );
    }

    #[test]
    fn a_key_with_no_value_in_the_request_hashes_the_client_address() {
        let req = head("/p?a=1", &[("cookie", "a=1"), ("x-user", "alice")]);
        for (on, key) in [
            (Header, "x-absent"),
            (Cookie, "absent"),
            (Vars, "arg_absent"),
            (Vars, "http_x_absent"),
            (Vars, "cookie_absent"),
        ] {
            for client in [CLIENT, "192.168.1.2:80", "[::1]:8080"] {
                assert_eq!(
                    hash_for(on, key, &req, addr(client)),
                    fallback(client),
                    "{on:?} {key} from {client}"
                );
                assert_eq!(
                    hash_for(on, key, &req, addr(client)),
                    hash_for(Vars, "remote_addr", &req, addr(client)),
                    "{on:?} {key} hashes like remote_addr"
                );
            }
        }
        let no_host = head("/p", &[]);
        assert_eq!(
            hash_for(Vars, "host", &no_host, addr(CLIENT)),
            fallback(CLIENT),
            "no Host field and no authority"
        );
    }
}
