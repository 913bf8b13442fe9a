//! `request-id`: gives each request an identifier in a header field
//! (default `X-Request-Id`), as APISIX's `request-id` (priority 12015,
//! rewrite and header_filter phases).
//!
//! A request that already carries a non-empty value keeps it; otherwise one
//! is made and sent upstream. With `include_in_response` (the default) the
//! response carries it too, weir's own answers included.
//!
//! Algorithms: `uuid` (random, version 4), `uuidv7` (time-ordered), `nanoid`
//! (21 characters of `A-Za-z0-9_-` from the OS-seeded CSPRNG) and
//! `range_id` (`length` characters drawn from `char_set`, which must be
//! printable ASCII here). `ksuid` is a configuration error: not supported
//! by weir.
//!
//! Difference from APISIX: when the node's response already has the field,
//! APISIX keeps the node's value; weir sets the request's (the id is decided
//! in the rewrite phase and the response phase cannot see it).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Flow, Phase, Phases, Plugin, PluginSpec, RequestCtx,
};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "request-id",
    priority: 12015,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: None,
};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
enum Algorithm {
    #[default]
    Uuid,
    Nanoid,
    RangeId,
    Ksuid,
    Uuidv7,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Conf {
    header_name: String,
    include_in_response: bool,
    algorithm: Algorithm,
    range_id: RangeConf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RangeConf {
    length: u64,
    char_set: String,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            header_name: "X-Request-Id".into(),
            include_in_response: true,
            algorithm: Algorithm::Uuid,
            range_id: RangeConf::default(),
        }
    }
}

impl Default for RangeConf {
    fn default() -> RangeConf {
        // APISIX's default, "HIGK" included.
        RangeConf {
            length: 16,
            char_set: "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789".into(),
        }
    }
}

/// How identifiers are made.
enum Generator {
    Uuid,
    Uuidv7,
    Nanoid,
    Range { chars: Vec<u8>, length: usize },
}

/// nanoid's alphabet: 64 characters, so 6 random bits pick one without bias.
const NANOID: &[u8; 64] = b"-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Generator {
    /// A new identifier (None: not a valid field value, which no
    /// generator makes).
    fn make(&self) -> Option<HeaderValue> {
        let text: String = match self {
            // From the thread's CSPRNG (rand's, reseeded from the OS): the
            // uuid crate's own v4 asks the kernel (getrandom) every time.
            Generator::Uuid => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let id = uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .hyphenated()
                    .encode_lower(&mut buf);
                return HeaderValue::from_str(id).ok();
            }
            Generator::Uuidv7 => uuid::Uuid::now_v7().to_string(),
            Generator::Nanoid => {
                let bytes: [u8; 21] = rand::random();
                bytes
                    .iter()
                    .map(|b| char::from(NANOID[usize::from(b & 63)]))
                    .collect()
            }
            Generator::Range { chars, length } => {
                let mut rng = rand::rng();
                (0..*length)
                    .map(|_| char::from(chars[rng.random_range(0..chars.len())]))
                    .collect()
            }
        };
        HeaderValue::from_str(&text).ok()
    }
}

struct RequestId {
    name: HeaderName,
    include_in_response: bool,
    generator: Generator,
}

/// The longest `range_id.length` weir accepts (APISIX has no bound).
const MAX_LENGTH: u64 = 4096;

fn build(conf: &Value, _: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let name = HeaderName::from_bytes(conf.header_name.as_bytes())
        .map_err(|_| ConfigError::at("header_name", "not a valid header field name"))?;
    let generator = match conf.algorithm {
        Algorithm::Uuid => Generator::Uuid,
        Algorithm::Uuidv7 => Generator::Uuidv7,
        Algorithm::Nanoid => Generator::Nanoid,
        Algorithm::Ksuid => {
            return Err(ConfigError::at(
                "algorithm",
                "ksuid is not supported by weir (use uuid, uuidv7, nanoid or range_id)",
            ))
        }
        Algorithm::RangeId => {
            let r = &conf.range_id;
            if !(6..=MAX_LENGTH).contains(&r.length) {
                return Err(ConfigError::at(
                    "range_id.length",
                    format!("must be between 6 and {MAX_LENGTH}"),
                ));
            }
            if r.char_set.len() < 6 || !r.char_set.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(ConfigError::at(
                    "range_id.char_set",
                    "must be at least 6 printable ASCII characters",
                ));
            }
            Generator::Range {
                chars: r.char_set.as_bytes().to_vec(),
                length: r.length as usize,
            }
        }
    };
    Ok(Arc::new(RequestId {
        name,
        include_in_response: conf.include_in_response,
        generator,
    }))
}

impl Plugin for RequestId {
    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let kept = req
            .header(self.name.as_str())
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        let id = match kept {
            Some(id) => id,
            None => {
                let Some(id) = self.generator.make() else {
                    return Flow::Continue;
                };
                req.set_header(self.name.clone(), id.clone());
                id
            }
        };
        req.set_request_id(id.clone());
        if self.include_in_response {
            req.set_response_header(self.name.clone(), id);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_error, TestReq};
    use serde_json::json;

    fn plugin(conf: Value) -> Arc<dyn Plugin> {
        crate::testing::build(&SPEC, conf).unwrap()
    }

    /// The id sent upstream (and checks the response has the same).
    fn id_of(p: &Arc<dyn Plugin>, req: &TestReq, name: &str) -> String {
        let out = req.run_parts(|ctx| p.rewrite(ctx));
        assert!(out.continued());
        let id = out.upstream(name).unwrap().unwrap();
        assert_eq!(out.response_header(name).as_deref(), Some(id.as_str()));
        id
    }

    #[test]
    fn uuids_by_default() {
        let p = plugin(json!({}));
        let id = id_of(&p, &TestReq::get("/"), "x-request-id");
        let u = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(id, id.to_lowercase());
        assert_ne!(id, id_of(&p, &TestReq::get("/"), "x-request-id"));
        let p = plugin(json!({"algorithm": "uuidv7", "header_name": "X-Trace"}));
        let id = id_of(&p, &TestReq::get("/"), "x-trace");
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    }

    #[test]
    fn incoming_ids_are_kept() {
        let p = plugin(json!({}));
        let req = TestReq::get("/").header("X-Request-Id", "abc-123");
        let out = req.rewrite(&p);
        assert_eq!(out.upstream("x-request-id"), None, "left as it is");
        assert_eq!(
            out.response_header("x-request-id").as_deref(),
            Some("abc-123")
        );
        let empty = TestReq::get("/").header("X-Request-Id", "");
        assert_eq!(id_of(&p, &empty, "x-request-id").len(), 36);

        let p = plugin(json!({"include_in_response": false}));
        let out = TestReq::get("/").run_parts(|ctx| p.rewrite(ctx));
        assert!(out.upstream("x-request-id").is_some());
        assert!(out.response().is_empty());
    }

    #[test]
    fn nanoid_and_range_id() {
        let p = plugin(json!({"algorithm": "nanoid"}));
        let id = id_of(&p, &TestReq::get("/"), "x-request-id");
        assert_eq!(id.len(), 21);
        assert!(id.bytes().all(|b| NANOID.contains(&b)), "{id}");

        let p = plugin(json!({"algorithm": "range_id"}));
        let id = id_of(&p, &TestReq::get("/"), "x-request-id");
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        let p = plugin(
            json!({"algorithm": "range_id", "range_id": {"length": 8, "char_set": "abcdef"}}),
        );
        let id = id_of(&p, &TestReq::get("/"), "x-request-id");
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b"abcdef".contains(&b)), "{id}");
    }

    #[test]
    fn configuration_is_checked() {
        let cases = [
            (
                json!({"algorithm": "ksuid"}),
                "algorithm: ksuid is not supported by weir (use uuid, uuidv7, nanoid or range_id)",
            ),
            (
                json!({"header_name": "bad name"}),
                "header_name: not a valid header field name",
            ),
            (
                json!({"algorithm": "range_id", "range_id": {"length": 5}}),
                "range_id.length: must be between 6 and 4096",
            ),
            (
                json!({"algorithm": "range_id", "range_id": {"char_set": "abcde"}}),
                "range_id.char_set: must be at least 6 printable ASCII characters",
            ),
            (
                json!({"algorithm": "range_id", "range_id": {"char_set": "abcdeé"}}),
                "range_id.char_set: must be at least 6 printable ASCII characters",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(build_error(crate::testing::build(&SPEC, conf)), message);
        }
        let e = build_error(crate::testing::build(
            &SPEC,
            json!({"algorithm": "snowflake"}),
        ));
        assert!(e.starts_with("algorithm: "), "{e}");
    }
}
