//! `traffic-split`: sends a share of a route's requests to other upstreams,
//! as APISIX's `traffic-split` (priority 966, access phase): canary
//! releases by weight, by header, by cookie, or any `vars` condition.
//!
//! `rules` are tried in order; the first whose `match` holds (any of its
//! items, each a `vars` expression list; no `match`: every request) picks an
//! entry of its `weighted_upstreams` by smooth weighted round robin (nginx's:
//! with weights 1 and 4, the sequence is b b a b b, never five in a row of
//! one). An entry with `upstream_id` sends to that item of `upstreams`, one
//! with `upstream` to that inline upstream (built, health-checked and
//! discovered like any other), one with neither to the route's own
//! upstream. A request no rule matches goes to the route's upstream.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use weir_config::vars::Vars;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, PluginUpstream,
    PluginUpstreamSource, RequestCtx, UpstreamChoice,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "traffic-split",
    priority: 966,
    phases: Phases::of(&[Phase::Access]),
    needs_body: false,
    build,
    consumer_check: None,
};

/// APISIX's limit of entries per rule.
const MAX_WEIGHTED: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    rules: Vec<RuleConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConf {
    #[serde(default, rename = "match")]
    matches: Vec<MatchConf>,
    weighted_upstreams: Vec<WeightedConf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchConf {
    #[serde(default)]
    vars: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedConf {
    upstream_id: Option<Value>,
    upstream: Option<Value>,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// The name of a rule entry's inline upstream (and its path).
fn entry_name(rule: usize, entry: usize) -> String {
    format!("rules[{rule}].weighted_upstreams[{entry}]")
}

/// An `upstream_id` as APISIX writes it: a string or an integer.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The upstreams the configuration names, for the engine to build and check
/// (see `weir_plugins::plugin_upstreams`).
pub fn upstreams(conf: &Value) -> Vec<PluginUpstream> {
    let Ok(c) = parse_config::<Conf>(conf) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, rule) in c.rules.iter().enumerate() {
        for (j, w) in rule.weighted_upstreams.iter().enumerate() {
            let name = entry_name(i, j);
            let source = match (&w.upstream_id, &w.upstream) {
                (Some(id), _) => match id_text(id) {
                    Some(id) => PluginUpstreamSource::Id(id),
                    None => continue,
                },
                (None, Some(inline)) => PluginUpstreamSource::Inline(inline.clone()),
                (None, None) => continue,
            };
            out.push(PluginUpstream {
                at: name.clone(),
                name,
                source,
            });
        }
    }
    out
}

struct Rule {
    matches: Vec<Vars>,
    picker: SmoothWeighted,
}

/// nginx's smooth weighted round robin over a rule's entries.
struct SmoothWeighted {
    choices: Vec<Option<UpstreamChoice>>,
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    fn next(&self) -> Option<UpstreamChoice> {
        let total: i64 = self.weights.iter().sum();
        let best = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let mut best = 0;
            for (i, w) in self.weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best
        };
        self.choices[best].clone()
    }
}

struct TrafficSplit {
    rules: Vec<Rule>,
}

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let c: Conf = parse_config(conf)?;
    let mut rules = Vec::with_capacity(c.rules.len());
    for (i, r) in c.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        let mut matches = Vec::new();
        for (m, item) in r.matches.iter().enumerate() {
            let Some(v) = &item.vars else { continue };
            let vars = Vars::from_value(v).map_err(|e| {
                ConfigError::at(format!("{at}.match[{m}].vars{}", e.path), e.message)
            })?;
            matches.push(vars);
        }
        if r.weighted_upstreams.is_empty() {
            return Err(ConfigError::at(
                format!("{at}.weighted_upstreams"),
                "must not be empty",
            ));
        }
        if r.weighted_upstreams.len() > MAX_WEIGHTED {
            return Err(ConfigError::at(
                format!("{at}.weighted_upstreams"),
                format!("at most {MAX_WEIGHTED} entries"),
            ));
        }
        let mut choices = Vec::new();
        let mut weights = Vec::new();
        for (j, w) in r.weighted_upstreams.iter().enumerate() {
            let name = entry_name(i, j);
            let choice = match (&w.upstream_id, &w.upstream) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        name,
                        "either `upstream_id` or `upstream`, not both",
                    ))
                }
                (Some(id), None) => Some(UpstreamChoice::Id(Arc::from(
                    id_text(id)
                        .ok_or_else(|| {
                            ConfigError::at(
                                format!("{name}.upstream_id"),
                                "must be a non-empty string or an integer",
                            )
                        })?
                        .as_str(),
                ))),
                (None, Some(_)) => Some(UpstreamChoice::Inline(Arc::from(name.as_str()))),
                (None, None) => None,
            };
            if w.weight > 0 {
                choices.push(choice);
                weights.push(i64::from(w.weight));
            }
        }
        if weights.is_empty() {
            return Err(ConfigError::at(
                format!("{at}.weighted_upstreams"),
                "every weight is 0: no request could go anywhere",
            ));
        }
        rules.push(Rule {
            matches,
            picker: SmoothWeighted {
                current: Mutex::new(vec![0; weights.len()]),
                choices,
                weights,
            },
        });
    }
    Ok(Arc::new(TrafficSplit { rules }))
}

impl Plugin for TrafficSplit {
    fn access(&self, ctx: &mut RequestCtx<'_>) -> Flow {
        let rule = self.rules.iter().find(|r| {
            r.matches.is_empty() || r.matches.iter().any(|m| m.eval(&crate::CtxVars(ctx)))
        });
        if let Some(choice) = rule.and_then(|r| r.picker.next()) {
            ctx.choose_upstream(choice);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config_error;
    use serde_json::json;

    #[test]
    fn smooth_weights_interleave() {
        let p = SmoothWeighted {
            choices: vec![Some(UpstreamChoice::Id("a".into())), None],
            weights: vec![1, 4],
            current: Mutex::new(vec![0, 0]),
        };
        let seq: Vec<bool> = (0..10).map(|_| p.next().is_some()).collect();
        assert_eq!(
            seq,
            [false, false, true, false, false, false, false, true, false, false]
        );
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let e = config_error(&SPEC, json!({"rules": [{"weighted_upstreams": []}]}));
        assert_eq!(e.path, "rules[0].weighted_upstreams");
        let e = config_error(
            &SPEC,
            json!({"rules": [{"weighted_upstreams": [{"weight": 0}]}]}),
        );
        assert_eq!(e.path, "rules[0].weighted_upstreams");
        let e = config_error(
            &SPEC,
            json!({"rules": [{"weighted_upstreams": [
            {"upstream_id": "a", "upstream": {"nodes": {"127.0.0.1:1": 1}}}]}]}),
        );
        assert_eq!(e.path, "rules[0].weighted_upstreams[0]");
        let e = config_error(
            &SPEC,
            json!({"rules": [{"match": [{"vars": [["http_x", "=~", "1"]]}],
                                      "weighted_upstreams": [{"weight": 1}]}]}),
        );
        assert!(e.path.starts_with("rules[0].match[0].vars"), "{e}");
        let e = config_error(
            &SPEC,
            json!({"rules": [{"weighted_upstreams": [{"upstream_id": ""}]}]}),
        );
        assert_eq!(e.path, "rules[0].weighted_upstreams[0].upstream_id");
    }

    #[test]
    fn the_named_upstreams_are_listed() {
        let u = upstreams(&json!({"rules": [{"weighted_upstreams": [
            {"upstream_id": 7, "weight": 1},
            {"upstream": {"nodes": {"127.0.0.1:1": 1}}, "weight": 1},
            {"weight": 3}]}]}));
        assert_eq!(u.len(), 2);
        assert!(matches!(&u[0].source, PluginUpstreamSource::Id(id) if id == "7"));
        assert_eq!(u[1].name, "rules[0].weighted_upstreams[1]");
    }
}
