//! `ip-restriction`: allows or refuses requests by client address, as
//! APISIX's `ip-restriction` (priority 3000, access phase). The address is
//! the one `real-ip` established, else the connection's peer.
//!
//! Exactly one of `whitelist` (only these may pass) or `blacklist` (these
//! may not) is configured: addresses or CIDR ranges, IPv4 or IPv6. A refused
//! request gets `response_code` (403 or 404) and `{"message":<message>}`.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

use crate::ipmatch::IpList;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "ip-restriction",
    priority: 3000,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default = "default_message")]
    message: String,
    #[serde(default = "default_code")]
    response_code: u16,
    #[serde(default)]
    whitelist: Option<Vec<String>>,
    #[serde(default)]
    blacklist: Option<Vec<String>>,
}

fn default_message() -> String {
    "Your IP address is not allowed".into()
}

fn default_code() -> u16 {
    403
}

struct IpRestriction {
    list: IpList,
    /// True for a whitelist.
    allow: bool,
    status: StatusCode,
    message: String,
}

/// Checks a `message` as APISIX's restriction plugins do: 1 to 1024
/// characters.
pub(crate) fn check_message(message: &str) -> Result<(), ConfigError> {
    if message.is_empty() || message.chars().count() > 1024 {
        return Err(ConfigError::at("message", "must be 1 to 1024 characters"));
    }
    Ok(())
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    check_message(&conf.message)?;
    let status = match conf.response_code {
        403 => StatusCode::FORBIDDEN,
        404 => StatusCode::NOT_FOUND,
        _ => return Err(ConfigError::at("response_code", "must be 403 or 404")),
    };
    let (list, allow) = match (&conf.whitelist, &conf.blacklist) {
        (Some(w), None) => (IpList::parse("whitelist", w)?, true),
        (None, Some(b)) => (IpList::parse("blacklist", b)?, false),
        _ => {
            return Err(ConfigError::whole(
                "exactly one of whitelist and blacklist is required",
            ))
        }
    };
    Ok(Arc::new(IpRestriction {
        list,
        allow,
        status,
        message: conf.message,
    }))
}

impl Plugin for IpRestriction {
    fn access(&self, req: &mut RequestCtx<'_>) -> Flow {
        if self.list.contains(req.remote_ip()) == self.allow {
            return Flow::Continue;
        }
        Flow::Reply(LocalReply::message(self.status, &self.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, TestReq};
    use serde_json::json;

    #[test]
    fn whitelists_and_blacklists() {
        let w = build(&SPEC, json!({"whitelist": ["192.0.2.0/24", "2001:db8::1"]})).unwrap();
        assert!(TestReq::get("/")
            .remote("192.0.2.77")
            .access(&w)
            .continued());
        assert!(TestReq::get("/")
            .remote("2001:db8::1")
            .access(&w)
            .continued());
        let out = TestReq::get("/").remote("198.51.100.1").access(&w);
        assert_eq!(out.status(), 403);
        assert_eq!(
            out.body(),
            "{\"message\":\"Your IP address is not allowed\"}\n"
        );

        let b = build(
            &SPEC,
            json!({"blacklist": ["198.51.100.1"], "message": "go away", "response_code": 404}),
        )
        .unwrap();
        assert!(TestReq::get("/")
            .remote("198.51.100.2")
            .access(&b)
            .continued());
        let out = TestReq::get("/").remote("198.51.100.1").access(&b);
        assert_eq!(out.status(), 404);
        assert_eq!(out.body(), "{\"message\":\"go away\"}\n");
    }

    /// The address real-ip established counts, not the peer's.
    #[test]
    fn real_ip_is_honoured() {
        let w = build(&SPEC, json!({"whitelist": ["203.0.113.5"]})).unwrap();
        let out = TestReq::get("/").remote("10.0.0.1").run(|ctx| {
            ctx.set_real_ip("203.0.113.5".parse().unwrap());
            w.access(ctx)
        });
        assert!(out.continued());
    }

    #[test]
    fn configuration_is_checked() {
        let cases = [
            (
                json!({}),
                "exactly one of whitelist and blacklist is required",
            ),
            (
                json!({"whitelist": ["1.2.3.4"], "blacklist": ["1.2.3.4"]}),
                "exactly one of whitelist and blacklist is required",
            ),
            (json!({"whitelist": []}), "whitelist: must not be empty"),
            (
                json!({"whitelist": ["1.2.3.4", "300.1.1.1"]}),
                "whitelist[1]: invalid ip address: 300.1.1.1",
            ),
            (
                json!({"blacklist": ["1.2.3.4"], "response_code": 401}),
                "response_code: must be 403 or 404",
            ),
            (
                json!({"blacklist": ["1.2.3.4"], "message": ""}),
                "message: must be 1 to 1024 characters",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
    }
}
