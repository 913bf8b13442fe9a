//! `real-ip`: takes the client address from a forwarding field or another
//! request variable, as APISIX's `real-ip` (priority 23000, rewrite phase).
//! Later plugins (`ip-restriction`, `limit-*` keys) and the log then see it
//! as the client's address.
//!
//! `source` is an APISIX variable: `http_x_forwarded_for` (the last address
//! of the last `X-Forwarded-For` field, or with `recursive` the rightmost
//! address that is not in `trusted_addresses`), `http_<field>`,
//! `arg_<name>`, `cookie_<name>`, `remote_addr`, ... The value may carry a
//! port (`192.0.2.1:8080`, `[2001:db8::1]:8080`). With `trusted_addresses`,
//! only requests whose peer is in the list are believed; without it, every
//! request is (as APISIX). A missing or malformed value leaves the address
//! as it was.
//!
//! Difference from APISIX: only the address is replaced; the client port
//! (`remote_port`) stays the connection's.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, RequestCtx,
};

use crate::ipmatch::IpList;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "real-ip",
    priority: 23000,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    source: String,
    #[serde(default)]
    trusted_addresses: Option<Vec<String>>,
    #[serde(default)]
    recursive: bool,
}

struct RealIp {
    source: String,
    trusted: Option<IpList>,
    recursive: bool,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    if conf.source.is_empty() {
        return Err(ConfigError::at("source", "must not be empty"));
    }
    let trusted = match &conf.trusted_addresses {
        Some(t) => Some(IpList::parse("trusted_addresses", t)?),
        None => None,
    };
    Ok(Arc::new(RealIp {
        source: conf.source,
        trusted,
        recursive: conf.recursive,
    }))
}

/// An address with an optional port, as APISIX's `parse_addr` splits it and
/// `set_real_ip` accepts it: `None` when malformed or the port is out of
/// range.
fn parse_addr(addr: &str) -> Option<IpAddr> {
    // APISIX's `rfind_char(addr, ":", #addr - 1)`: a colon in last place
    // does not count.
    // Bytes, not chars: the value may end in a multi-byte character.
    let split = |s: &'_ str| -> Option<(usize, usize)> {
        let b = s.as_bytes();
        let i = b[..b.len().saturating_sub(1)]
            .iter()
            .rposition(|&c| c == b':')?;
        Some((i, i + 1))
    };
    let (host, port) = if addr.starts_with('[') {
        if addr.ends_with(']') && addr.len() > 1 {
            (&addr[1..addr.len() - 1], None)
        } else {
            let (colon, rest) = split(addr)?;
            let host = addr[..colon].strip_suffix(']')?;
            (&host[1..], Some(&addr[rest..]))
        }
    } else {
        // A dot before a second colon: IPv4 or a name, maybe with a port;
        // two colons first: IPv6 without a port.
        let two_colons = addr.match_indices(':').nth(1).map(|(i, _)| i);
        let v6 = match (addr.find('.'), two_colons) {
            (Some(dot), Some(colon)) => colon < dot,
            (None, Some(_)) => true,
            _ => false,
        };
        match split(addr) {
            Some((colon, rest)) if !v6 => (&addr[..colon], Some(&addr[rest..])),
            _ => (addr, None),
        }
    };
    // `tonumber(port)`: a port that is not a number is ignored.
    if let Some(port) = port.and_then(|p| p.parse::<i64>().ok()) {
        if !(1..=65535).contains(&port) {
            return None;
        }
    }
    host.parse().ok()
}

impl RealIp {
    /// APISIX's `get_addr`.
    fn address(&self, req: &RequestCtx<'_>) -> Option<String> {
        if self.source != "http_x_forwarded_for" {
            return req.var(&self.source).map(|v| v.into_owned());
        }
        let last = req.view().header_values("x-forwarded-for").last()?;
        let addrs = String::from_utf8_lossy(last);
        let Some(comma) = addrs.rfind(',') else {
            return Some(addrs.into_owned());
        };
        if let (true, Some(trusted)) = (self.recursive, &self.trusted) {
            let parts = split_comma_space(&addrs);
            let untrusted = parts[1..]
                .iter()
                .rev()
                .find(|a| !a.parse::<IpAddr>().is_ok_and(|ip| trusted.contains(ip)));
            return Some(untrusted.unwrap_or(&parts[0]).to_string());
        }
        Some(addrs[comma + 1..].trim_start_matches(' ').to_owned())
    }
}

/// Splits at `,\s*` (ngx.re.split).
fn split_comma_space(s: &str) -> Vec<&str> {
    s.split(',')
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                p
            } else {
                p.trim_start_matches(is_pcre_space)
            }
        })
        .collect()
}

fn is_pcre_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

impl Plugin for RealIp {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        if let Some(trusted) = &self.trusted {
            if !trusted.contains(req.remote_ip()) {
                return Flow::Continue;
            }
        }
        if let Some(ip) = self.address(req).as_deref().and_then(parse_addr) {
            req.set_real_ip(ip);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, TestReq};
    use serde_json::json;

    fn real(p: &Arc<dyn Plugin>, req: TestReq) -> String {
        let out = req.rewrite(p);
        assert!(out.continued());
        assert!(out.state.upstream_headers.is_empty());
        out.state
            .real_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn addresses_are_parsed_as_apisix() {
        let cases = [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("192.0.2.1:http", Some("192.0.2.1")),
            ("192.0.2.1:0", None),
            ("192.0.2.1:70000", None),
            ("2001:db8::1", Some("2001:db8::1")),
            ("::ffff:192.0.2.1", Some("::ffff:192.0.2.1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1", None),
            ("192.0.2.1:", None),
            ("[::1]:", None),
            ("example.com", None),
            ("unknown", None),
            ("", None),
        ];
        for (addr, ip) in cases {
            assert_eq!(
                parse_addr(addr).map(|i| i.to_string()).as_deref(),
                ip,
                "{addr}"
            );
        }
    }

    #[test]
    fn x_forwarded_for() {
        let p = build(&SPEC, json!({"source": "http_x_forwarded_for"})).unwrap();
        let xff = |v: &str| TestReq::get("/").header("X-Forwarded-For", v);
        assert_eq!(real(&p, xff("203.0.113.7")), "203.0.113.7");
        assert_eq!(real(&p, xff("198.51.100.1,  203.0.113.7")), "203.0.113.7");
        let two = xff("1.1.1.1").header("X-Forwarded-For", "198.51.100.1, 203.0.113.8");
        assert_eq!(real(&p, two), "203.0.113.8", "the last field");
        assert_eq!(real(&p, xff("garbage")), "");
        assert_eq!(real(&p, TestReq::get("/")), "");

        let p = build(
            &SPEC,
            json!({"source": "http_x_forwarded_for", "recursive": true,
                   "trusted_addresses": ["192.0.2.0/24", "10.0.0.0/8"]}),
        )
        .unwrap();
        let chain = |v: &str| xff(v).remote("192.0.2.10");
        assert_eq!(
            real(&p, chain("203.0.113.1, 198.51.100.2, 10.0.0.1")),
            "198.51.100.2"
        );
        assert_eq!(
            real(&p, chain("203.0.113.1, 10.0.0.2, 10.0.0.1")),
            "203.0.113.1"
        );
        assert_eq!(
            real(&p, chain("10.9.9.9, 10.0.0.1")),
            "10.9.9.9",
            "all trusted: the first"
        );
        // An untrusted peer is not believed.
        let direct = xff("203.0.113.1").remote("198.51.100.99");
        assert_eq!(real(&p, direct), "");
    }

    #[test]
    fn other_sources() {
        let p = build(&SPEC, json!({"source": "arg_realip"})).unwrap();
        assert_eq!(
            real(&p, TestReq::get("/?realip=203.0.113.4")),
            "203.0.113.4"
        );
        let p = build(
            &SPEC,
            json!({"source": "http_x_real_ip", "trusted_addresses": ["::1"]}),
        )
        .unwrap();
        let req = TestReq::get("/")
            .header("X-Real-IP", "[2001:db8::7]:80")
            .remote("::1");
        assert_eq!(real(&p, req), "2001:db8::7");
        let req = TestReq::get("/")
            .header("X-Real-IP", "2001:db8::7")
            .remote("::2");
        assert_eq!(real(&p, req), "");
        let p = build(&SPEC, json!({"source": "remote_addr"})).unwrap();
        assert_eq!(real(&p, TestReq::get("/")), "192.0.2.10");
    }

    #[test]
    fn configuration_is_checked() {
        assert!(build_error(build(&SPEC, json!({}))).contains("missing field `source`"));
        assert_eq!(
            build_error(build(&SPEC, json!({"source": ""}))),
            "source: must not be empty"
        );
        assert_eq!(
            build_error(build(
                &SPEC,
                json!({"source": "remote_addr", "trusted_addresses": ["x"]})
            )),
            "trusted_addresses[0]: invalid ip address: x"
        );
    }
}
