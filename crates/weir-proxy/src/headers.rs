//! Proxy header hygiene: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! X-Forwarded-* / X-Real-IP / Via headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::forward::ConnInfo;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The value of `Via` weir adds when `gateway.via` is on.
pub static VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 weir");

/// True when the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Removes hop-by-hop headers, including those named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass to see whether there is anything to do: most messages carry
    // no hop-by-hop header but `Connection`, and name comparisons of
    // standard headers are cheap, where each `remove` would hash.
    let mut has_connection = false;
    let mut others = false;
    for name in headers.keys() {
        if name == header::CONNECTION {
            has_connection = true;
        } else if is_hop_by_hop(name) {
            others = true;
        }
    }
    if has_connection {
        // Headers named by Connection are hop-by-hop too. The common case
        // (just keep-alive/close) allocates nothing.
        let mut named: Option<Vec<HeaderName>> = None;
        for v in headers.get_all(header::CONNECTION) {
            let Ok(s) = v.to_str() else { continue };
            for token in weir_http::fields::connection_tokens(s) {
                if weir_http::fields::is_connection_option(token) {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.get_or_insert_with(Vec::new).push(name);
                }
            }
        }
        for name in named.into_iter().flatten() {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if has_connection {
        headers.remove(header::CONNECTION);
    }
    if others {
        if !keep_upgrade {
            headers.remove(header::UPGRADE);
        }
        headers.remove(&KEEP_ALIVE);
        headers.remove(&PROXY_CONNECTION);
        headers.remove(header::TE);
        headers.remove(header::TRAILER);
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::PROXY_AUTHORIZATION);
    }
}

/// Hop-by-hop apart from `Connection` itself, by the one field policy
/// both transports use ([`weir_http::fields`]).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name != header::CONNECTION && weir_http::fields::is_hop_by_hop(name.as_str())
}

/// Adds X-Forwarded-For (appended), -Proto, -Host, -Port and X-Real-IP.
/// The common case (no incoming X-Forwarded-For) allocates nothing: the
/// values were prepared once per connection.
pub fn add_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<&HeaderValue>) {
    // Every X-Forwarded-For field the client sent, joined into one list
    // (as nginx's $proxy_add_x_forwarded_for), then the client.
    let mut prev = String::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(v) = v.to_str() else { continue };
        let v = v.trim();
        if !v.is_empty() {
            if !prev.is_empty() {
                prev.push_str(", ");
            }
            prev.push_str(v);
        }
    }
    let xff = if prev.is_empty() {
        Some(conn.remote_ip.clone())
    } else {
        let ip = conn.remote_ip.to_str().unwrap_or("unknown");
        HeaderValue::from_str(&format!("{prev}, {ip}")).ok()
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_REAL_IP.clone(), conn.remote_ip.clone());
    let proto = if conn.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
    }
    headers.insert(X_FORWARDED_PORT.clone(), conn.local_port.clone());
}

/// HTTP/2 splits `cookie` into several fields (RFC 9113 §8.2.3); an
/// HTTP/1.1 upstream must get them as one `Cookie` line, joined with `; `.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Methods weir refuses with 405, whatever the route (nginx refuses both):
/// `CONNECT` (weir does not tunnel; forwarded, a node would take it for a
/// request and the client would wait for a tunnel) and `TRACE` (it echoes
/// the request, credentials included, back to whoever sent it).
pub fn refused_method(method: &str) -> Option<&'static str> {
    match method {
        "CONNECT" => Some("405 Method Not Allowed: weir does not tunnel CONNECT"),
        "TRACE" => Some("405 Method Not Allowed: TRACE is not allowed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::TE).is_none());
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn upgrade_and_transfer_encoding_go_unless_upgrading() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let conn = ConnInfo::new(
            "10.0.0.9:5555".parse().unwrap(),
            "127.0.0.1:9080".parse().unwrap(),
            false,
        );
        add_forwarded(&mut h, &conn, None);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(h.get("x-real-ip").unwrap(), "10.0.0.9");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "9080");
    }
}
