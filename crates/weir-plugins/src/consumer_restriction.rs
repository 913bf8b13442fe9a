//! `consumer-restriction`: allows or refuses requests by who or what they
//! are for, as APISIX's `consumer-restriction` (priority 2400, access
//! phase). `type` picks the value compared: `consumer_name` (the consumer
//! an authentication plugin recognised, the default), `consumer_group_id`
//! (its group) or `route_id`.
//!
//! `blacklist` refuses the listed values; `whitelist` lets only the listed
//! values through; `allowed_by_methods` limits a value (`user`) to some
//! methods unless the whitelist lists it. A request without the value
//! (no consumer, say) gets 401; a refused one gets `rejected_code` (403)
//! and `rejected_msg` or `The <type> is forbidden.`.
//!
//! Not supported: `type: service_id` is a configuration error, since the
//! request context does not carry the route's service. (Lead: a
//! `RequestCtx::service_id()` would make it a one-line addition.)

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, LocalReply, Phase, Phases, Plugin, PluginSpec,
    RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "consumer-restriction",
    priority: 2400,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum Kind {
    #[default]
    ConsumerName,
    ServiceId,
    RouteId,
    ConsumerGroupId,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ConsumerName => "consumer_name",
            Kind::ServiceId => "service_id",
            Kind::RouteId => "route_id",
            Kind::ConsumerGroupId => "consumer_group_id",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default, rename = "type")]
    kind: Kind,
    #[serde(default)]
    blacklist: Option<Vec<String>>,
    #[serde(default)]
    whitelist: Option<Vec<String>>,
    #[serde(default)]
    allowed_by_methods: Option<Vec<MethodRule>>,
    #[serde(default = "default_code")]
    rejected_code: u16,
    #[serde(default)]
    rejected_msg: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodRule {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
}

fn default_code() -> u16 {
    403
}

/// APISIX's `method_schema`.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

struct ConsumerRestriction {
    kind: Kind,
    blacklist: Vec<String>,
    whitelist: Vec<String>,
    by_methods: Vec<MethodRule>,
    status: StatusCode,
    rejection: String,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    if conf.kind == Kind::ServiceId {
        return Err(ConfigError::at(
            "type",
            "service_id is not supported by weir (use route_id)",
        ));
    }
    for (field, list) in [
        ("blacklist", &conf.blacklist),
        ("whitelist", &conf.whitelist),
    ] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::at(field, "must not be empty"));
        }
    }
    if conf.blacklist.is_none() && conf.whitelist.is_none() && conf.allowed_by_methods.is_none() {
        return Err(ConfigError::whole(
            "one of blacklist, whitelist and allowed_by_methods is required",
        ));
    }
    let by_methods = conf.allowed_by_methods.unwrap_or_default();
    for (i, rule) in by_methods.iter().enumerate() {
        let Some(methods) = &rule.methods else {
            continue;
        };
        if methods.is_empty() {
            return Err(ConfigError::at(
                format!("allowed_by_methods[{i}].methods"),
                "must not be empty",
            ));
        }
        if let Some(j) = methods.iter().position(|m| !METHODS.contains(&m.as_str())) {
            return Err(ConfigError::at(
                format!("allowed_by_methods[{i}].methods[{j}]"),
                format!("must be one of {}", METHODS.join(", ")),
            ));
        }
    }
    let status = Some(conf.rejected_code)
        .filter(|c| (200..=999).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ConfigError::at("rejected_code", "must be between 200 and 999"))?;
    let rejection = conf
        .rejected_msg
        .unwrap_or_else(|| format!("The {} is forbidden.", conf.kind.name()));
    Ok(Arc::new(ConsumerRestriction {
        kind: conf.kind,
        blacklist: conf.blacklist.unwrap_or_default(),
        whitelist: conf.whitelist.unwrap_or_default(),
        by_methods,
        status,
        rejection,
    }))
}

impl ConsumerRestriction {
    /// APISIX's `is_method_allowed`: the first rule for `value` decides; a
    /// value without a rule may use any method.
    fn method_allowed(&self, value: &str, method: &str) -> bool {
        match self
            .by_methods
            .iter()
            .find(|r| r.user.as_deref() == Some(value))
        {
            None => true,
            Some(rule) => rule
                .methods
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m == method)),
        }
    }
}

impl Plugin for ConsumerRestriction {
    fn access(&self, req: &mut RequestCtx<'_>) -> Flow {
        let value = match self.kind {
            Kind::ConsumerName => req.consumer().map(|c| c.username.to_string()),
            Kind::ConsumerGroupId => req
                .consumer()
                .and_then(|c| c.group_id.as_ref())
                .map(|g| g.to_string()),
            Kind::RouteId => Some(req.route_id().to_owned()),
            Kind::ServiceId => None,
        };
        let Some(value) = value else {
            let message = format!(
                "The request is rejected, please check the {} for this request",
                self.kind.name()
            );
            return Flow::Reply(LocalReply::message(StatusCode::UNAUTHORIZED, &message));
        };
        let reject = || Flow::Reply(LocalReply::message(self.status, &self.rejection));
        if self.blacklist.contains(&value) {
            return reject();
        }
        let whitelisted = self.whitelist.contains(&value);
        let mut block = !self.whitelist.is_empty() && !whitelisted;
        if !self.by_methods.is_empty() && !whitelisted && !self.method_allowed(&value, req.method())
        {
            block = true;
        }
        if block {
            return reject();
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build, build_error, TestReq};
    use serde_json::json;
    use weir_plugin::Consumer;

    fn as_user(name: &str) -> TestReq {
        TestReq::get("/").consumer(Consumer::named(name))
    }

    #[test]
    fn consumer_names() {
        let w = build(&SPEC, json!({"whitelist": ["jack"]})).unwrap();
        assert!(as_user("jack").access(&w).continued());
        let out = as_user("rose").access(&w);
        assert_eq!(out.status(), 403);
        assert_eq!(
            out.body(),
            "{\"message\":\"The consumer_name is forbidden.\"}\n"
        );
        let out = TestReq::get("/").access(&w);
        assert_eq!(out.status(), 401);
        assert_eq!(
            out.body(),
            "{\"message\":\"The request is rejected, please check the consumer_name for this request\"}\n"
        );

        let b = build(
            &SPEC,
            json!({"blacklist": ["rose"], "rejected_code": 429, "rejected_msg": "no"}),
        )
        .unwrap();
        assert!(as_user("jack").access(&b).continued());
        let out = as_user("rose").access(&b);
        assert_eq!(out.status(), 429);
        assert_eq!(out.body(), "{\"message\":\"no\"}\n");
    }

    #[test]
    fn methods() {
        let conf = json!({"allowed_by_methods": [
            {"user": "jack", "methods": ["GET"]},
            {"user": "rose", "methods": ["POST", "PUT"]},
        ]});
        let p = build(&SPEC, conf.clone()).unwrap();
        assert!(as_user("jack").access(&p).continued());
        assert_eq!(as_user("jack").method("POST").access(&p).status(), 403);
        assert!(as_user("rose").method("PUT").access(&p).continued());
        assert_eq!(as_user("rose").access(&p).status(), 403);
        assert!(
            as_user("tom").method("DELETE").access(&p).continued(),
            "no rule"
        );
        // A whitelisted consumer skips the method rules.
        let mut conf = conf;
        conf["whitelist"] = json!(["jack", "tom"]);
        let p = build(&SPEC, conf).unwrap();
        assert!(as_user("jack").method("POST").access(&p).continued());
        assert_eq!(as_user("rose").method("POST").access(&p).status(), 403);
    }

    #[test]
    fn groups_and_routes() {
        let p = build(
            &SPEC,
            json!({"type": "consumer_group_id", "whitelist": ["gold"]}),
        )
        .unwrap();
        let mut c = Consumer::named("jack");
        c.group_id = Some(Arc::from("gold"));
        assert!(TestReq::get("/").consumer(c.clone()).access(&p).continued());
        c.group_id = Some(Arc::from("tin"));
        let out = TestReq::get("/").consumer(c).access(&p);
        assert_eq!(
            out.body(),
            "{\"message\":\"The consumer_group_id is forbidden.\"}\n"
        );
        let out = as_user("jack").access(&p);
        assert_eq!(out.status(), 401, "a consumer without a group");

        let p = build(&SPEC, json!({"type": "route_id", "blacklist": ["r2"]})).unwrap();
        assert!(TestReq::get("/").route("r1").access(&p).continued());
        let out = TestReq::get("/").route("r2").access(&p);
        assert_eq!(out.body(), "{\"message\":\"The route_id is forbidden.\"}\n");
    }

    #[test]
    fn configuration_is_checked() {
        let cases = [
            (
                json!({}),
                "one of blacklist, whitelist and allowed_by_methods is required",
            ),
            (json!({"whitelist": []}), "whitelist: must not be empty"),
            (
                json!({"type": "service_id", "whitelist": ["1"]}),
                "type: service_id is not supported by weir (use route_id)",
            ),
            (
                json!({"whitelist": ["a"], "rejected_code": 199}),
                "rejected_code: must be between 200 and 999",
            ),
            (
                json!({"allowed_by_methods": [{"user": "a", "methods": ["GET", "FETCH"]}]}),
                "allowed_by_methods[0].methods[1]: must be one of GET, POST, PUT, DELETE, \
                 PATCH, HEAD, OPTIONS, CONNECT, TRACE, PURGE",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(build(&SPEC, conf)), message);
        }
        let e = build_error(build(&SPEC, json!({"type": "user", "whitelist": ["a"]})));
        assert!(e.starts_with("type: "), "{e}");
    }
}
