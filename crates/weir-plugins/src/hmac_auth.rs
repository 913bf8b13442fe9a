//! `hmac-auth`: a consumer is recognised by an HMAC signature over parts of
//! the request, APISIX 3.x's scheme (priority 2530, rewrite phase):
//!
//! ```text
//! Authorization: Signature keyId="<key_id>",algorithm="hmac-sha256",
//!                headers="@request-target date",signature="<base64>"
//! ```
//!
//! The signed string is the keyId, then one `name: value` line per listed
//! header field (`@request-target` is `METHOD request-uri`; a listed field
//! the request lacks is skipped), joined by `\n` with a trailing `\n`. The
//! `Date` field must be within `clock_skew` seconds of now, and every
//! `signed_headers` entry must be listed. With `validate_request_body`, the
//! `Digest` field must be `SHA-256=<base64 of the body's SHA-256>`.
//!
//! Secrets are kept only as keyed HMAC states; signatures are compared in
//! constant time.
//!
//! The body: routes with `hmac-auth` buffer request bodies only when
//! `validate_request_body` is set (the plugin declares `needs_body`, and
//! [`Plugin::reads_body`] says whether this configuration reads it); other
//! routes stream them. Should a validating route run it without a buffered
//! body, a request that announces a body (`Content-Length` above 0 or
//! `Transfer-Encoding`) cannot be validated and is refused with 401.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use http::header::AUTHORIZATION;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use weir_plugin::{
    parse_config, BuildCtx, ConfigError, Consumer, Flow, LocalReply, Phase, Phases, Plugin,
    PluginSpec, RequestCtx,
};

use crate::auth::{self, Failure};

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "hmac-auth",
    priority: 2530,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: true,
    build,
    consumer_check: Some(check_consumer),
};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    #[serde(rename = "hmac-sha1")]
    Sha1,
    #[serde(rename = "hmac-sha256")]
    Sha256,
    #[serde(rename = "hmac-sha512")]
    Sha512,
}

impl Algorithm {
    fn named(name: &str) -> Option<Algorithm> {
        match name {
            "hmac-sha1" => Some(Algorithm::Sha1),
            "hmac-sha256" => Some(Algorithm::Sha256),
            "hmac-sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Conf {
    allowed_algorithms: Vec<Algorithm>,
    clock_skew: u64,
    signed_headers: Vec<String>,
    validate_request_body: bool,
    max_req_body_size: u64,
    hide_credentials: bool,
    realm: String,
    anonymous_consumer: Option<String>,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            allowed_algorithms: vec![Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512],
            clock_skew: 300,
            signed_headers: vec!["date".into()],
            validate_request_body: false,
            max_req_body_size: 64 * 1024 * 1024,
            hide_credentials: false,
            realm: "hmac".into(),
            anonymous_consumer: None,
        }
    }
}

/// A consumer's (or credential's) `hmac-auth` block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerConf {
    key_id: String,
    secret_key: String,
}

fn parse_consumer(conf: &Value) -> Result<ConsumerConf, ConfigError> {
    let c: ConsumerConf = parse_config(conf)?;
    for (field, v) in [("key_id", &c.key_id), ("secret_key", &c.secret_key)] {
        if v.is_empty() || v.chars().count() > 256 {
            return Err(ConfigError::at(field, "must be 1 to 256 characters"));
        }
    }
    Ok(c)
}

fn check_consumer(conf: &Value) -> Result<(), ConfigError> {
    parse_consumer(conf).map(|_| ())
}

/// One consumer's secret as keyed HMAC states (the secret itself is not
/// kept).
struct Keys {
    sha1: Hmac<Sha1>,
    sha256: Hmac<Sha256>,
    sha512: Hmac<Sha512>,
    consumer: Arc<Consumer>,
}

impl Keys {
    fn new(secret: &[u8], consumer: Arc<Consumer>) -> Option<Keys> {
        Some(Keys {
            sha1: Hmac::new_from_slice(secret).ok()?,
            sha256: Hmac::new_from_slice(secret).ok()?,
            sha512: Hmac::new_from_slice(secret).ok()?,
            consumer,
        })
    }

    /// Constant-time check of `signature` over `message`.
    fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(mac: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = mac.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        match algorithm {
            Algorithm::Sha1 => check(&self.sha1, message, signature),
            Algorithm::Sha256 => check(&self.sha256, message, signature),
            Algorithm::Sha512 => check(&self.sha512, message, signature),
        }
    }
}

/// Every consumer's keys, by `key_id`.
struct KeyIndex {
    by_id: HashMap<String, Keys>,
}

fn index(ctx: &BuildCtx<'_>) -> Result<KeyIndex, ConfigError> {
    let mut by_id = HashMap::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    for c in ctx.consumers_of(SPEC.name) {
        let at =
            |e: ConfigError| ConfigError::absolute(format!("{}.{}", c.path, e.path), e.message);
        let conf = parse_consumer(c.conf).map_err(at)?;
        if let Some(first) = owner.get(&conf.key_id) {
            return Err(ConfigError::absolute(
                format!("{}.key_id", c.path),
                format!("the same key_id is already used by {first}.key_id"),
            ));
        }
        let keys = Keys::new(conf.secret_key.as_bytes(), c.consumer.clone()).ok_or_else(|| {
            ConfigError::absolute(format!("{}.secret_key", c.path), "not a usable HMAC key")
        })?;
        owner.insert(conf.key_id.clone(), c.path.clone());
        by_id.insert(conf.key_id, keys);
    }
    Ok(KeyIndex { by_id })
}

struct HmacAuth {
    allowed: Vec<Algorithm>,
    clock_skew: u64,
    signed_headers: Vec<String>,
    validate_request_body: bool,
    max_req_body_size: u64,
    hide_credentials: bool,
    failure: Failure,
    keys: Arc<KeyIndex>,
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    if conf.allowed_algorithms.is_empty() {
        return Err(ConfigError::at("allowed_algorithms", "must not be empty"));
    }
    if conf.clock_skew == 0 {
        return Err(ConfigError::at("clock_skew", "must be at least 1"));
    }
    if conf.max_req_body_size == 0 {
        return Err(ConfigError::at("max_req_body_size", "must be at least 1"));
    }
    for (i, h) in conf.signed_headers.iter().enumerate() {
        if h.is_empty() || h.chars().count() > 50 {
            return Err(ConfigError::at(
                format!("signed_headers[{i}]"),
                "must be 1 to 50 characters",
            ));
        }
    }
    let failure = Failure::new("hmac", &conf.realm, conf.anonymous_consumer.as_deref(), ctx)?;
    let keys = ctx.shared("hmac-auth/keys", index)?;
    Ok(Arc::new(HmacAuth {
        allowed: conf.allowed_algorithms,
        clock_skew: conf.clock_skew,
        signed_headers: conf.signed_headers,
        validate_request_body: conf.validate_request_body,
        max_req_body_size: conf.max_req_body_size,
        hide_credentials: conf.hide_credentials,
        failure,
        keys,
    }))
}

/// Why a request was not authenticated.
enum Refusal {
    /// The `Authorization` field is missing or not a signature: APISIX
    /// tells why.
    Header(&'static str),
    /// Anything else: APISIX does not tell why.
    Invalid,
    /// The body is over `max_req_body_size`: 413, whatever the anonymous
    /// consumer.
    TooLarge(String),
}

/// The fields of `Signature k="v",...`, as APISIX reads them.
#[derive(Default)]
struct Params<'a> {
    key_id: Option<&'a str>,
    algorithm: Option<&'a str>,
    signature: Option<&'a str>,
    headers: Option<Vec<&'a str>>,
}

/// `name="value"`, found anywhere in a comma-separated item (APISIX's
/// `%s*(%w+)="(.-)"`).
static FIELD: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r#"([0-9A-Za-z]+)="([^"]*)""#).ok());

fn params(fields: &str) -> Params<'_> {
    let mut p = Params::default();
    let Some(re) = FIELD.as_ref() else {
        return p;
    };
    for item in fields.split(',').filter(|s| !s.is_empty()) {
        let Some(c) = re.captures(item) else {
            continue;
        };
        let (Some(k), Some(v)) = (c.get(1), c.get(2)) else {
            continue;
        };
        let v = v.as_str();
        match k.as_str() {
            "keyId" => p.key_id = Some(v),
            "algorithm" => p.algorithm = Some(v),
            "signature" => p.signature = Some(v),
            "headers" => p.headers = Some(v.split(' ').collect()),
            _ => {}
        }
    }
    p
}

impl HmacAuth {
    fn find(&self, req: &RequestCtx<'_>) -> Result<Arc<Consumer>, Refusal> {
        let value = req
            .header("authorization")
            .ok_or(Refusal::Header("missing Authorization header"))?;
        let Some(rest) = value.strip_prefix(b"Signature") else {
            return Err(Refusal::Header(
                "Authorization header does not start with 'Signature'",
            ));
        };
        let rest = String::from_utf8_lossy(rest);
        let p = params(&rest);
        let (Some(key_id), Some(signature)) = (p.key_id, p.signature) else {
            return Err(Refusal::Invalid);
        };
        let algorithm = p.algorithm.ok_or(Refusal::Invalid)?;
        let keys = self.keys.by_id.get(key_id).ok_or(Refusal::Invalid)?;
        let algorithm = Algorithm::named(algorithm)
            .filter(|a| self.allowed.contains(a))
            .ok_or(Refusal::Invalid)?;
        self.check_date(req)?;
        let listed = p.headers.as_deref().unwrap_or_default();
        if !self
            .signed_headers
            .iter()
            .all(|h| listed.contains(&h.as_str()))
        {
            return Err(Refusal::Invalid);
        }
        let signature = auth::decode_base64(signature.as_bytes()).ok_or(Refusal::Invalid)?;
        let message = signing_string(req, key_id, listed);
        if !keys.verify(algorithm, &message, &signature) {
            return Err(Refusal::Invalid);
        }
        if self.validate_request_body {
            self.check_body(req)?;
        }
        Ok(keys.consumer.clone())
    }

    fn check_date(&self, req: &RequestCtx<'_>) -> Result<(), Refusal> {
        let date = req.header("date").ok_or(Refusal::Invalid)?;
        let date = std::str::from_utf8(date)
            .ok()
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .ok_or(Refusal::Invalid)?;
        let now = SystemTime::now();
        let skew = now
            .duration_since(date)
            .or_else(|_| date.duration_since(now))
            .map_or(u64::MAX, |d| d.as_secs());
        if skew > self.clock_skew {
            return Err(Refusal::Invalid);
        }
        Ok(())
    }

    fn check_body(&self, req: &RequestCtx<'_>) -> Result<(), Refusal> {
        let digest = req.header("digest").ok_or(Refusal::Invalid)?;
        let too_large = |size: u64| {
            Refusal::TooLarge(format!(
                "request size {size} is greater than the maximum size {} allowed",
                self.max_req_body_size
            ))
        };
        let length = req
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = length.filter(|&n| n > self.max_req_body_size) {
            return Err(too_large(n));
        }
        let body = match req.body() {
            Some(b) => b,
            None if length.unwrap_or(0) == 0 && req.header("transfer-encoding").is_none() => &[],
            None => return Err(Refusal::Invalid),
        };
        if body.len() as u64 > self.max_req_body_size {
            return Err(too_large(body.len() as u64));
        }
        let expected = format!(
            "SHA-256={}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
        );
        if digest != expected.as_bytes() {
            return Err(Refusal::Invalid);
        }
        Ok(())
    }
}

/// keyId, then `name: value` per listed field (`@request-target`: method
/// and request-uri), each line ended by `\n`.
fn signing_string(req: &RequestCtx<'_>, key_id: &str, listed: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(key_id.as_bytes());
    for h in listed {
        if let Some(v) = req.header(h) {
            out.push(b'\n');
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
        } else if *h == "@request-target" {
            let uri = req.view().path_and_query();
            let uri = if uri.is_empty() { "/" } else { uri };
            out.push(b'\n');
            out.extend_from_slice(req.method().as_bytes());
            out.push(b' ');
            out.extend_from_slice(uri.as_bytes());
        }
    }
    out.push(b'\n');
    out
}

impl Plugin for HmacAuth {
    fn reads_body(&self) -> bool {
        self.validate_request_body
    }

    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let consumer = match self.find(req) {
            Ok(c) => Ok(c),
            Err(Refusal::TooLarge(message)) => {
                return Flow::Reply(LocalReply::message(StatusCode::PAYLOAD_TOO_LARGE, &message))
            }
            Err(Refusal::Header(why)) => self
                .failure
                .fallback(&format!("client request can't be validated: {why}")),
            Err(Refusal::Invalid) => self.failure.fallback("client request can't be validated"),
        };
        if consumer.is_ok() && self.hide_credentials {
            req.remove_header(AUTHORIZATION);
        }
        auth::attach(req, consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{b64, build_error, build_with, Outcome, TestReq};
    use serde_json::json;
    use std::time::Duration;

    fn plugin(conf: Value) -> Arc<dyn Plugin> {
        let consumers = [
            (
                "jack",
                json!({"key_id": "jack-key", "secret_key": "jack-secret"}),
            ),
            (
                "rose",
                json!({"key_id": "rose-key", "secret_key": "rose-secret"}),
            ),
        ];
        build_with(&SPEC, conf, &consumers, &["guest"]).unwrap()
    }

    fn date(offset: i64) -> String {
        let now = SystemTime::now();
        let d = Duration::from_secs(offset.unsigned_abs());
        let t = if offset < 0 { now - d } else { now + d };
        httpdate::fmt_http_date(t)
    }

    fn mac(alg: &str, secret: &[u8], msg: &str) -> String {
        fn run<M: Mac + KeyInit>(secret: &[u8], msg: &str) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(secret).unwrap();
            m.update(msg.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        b64(&match alg {
            "hmac-sha1" => run::<Hmac<Sha1>>(secret, msg),
            "hmac-sha256" => run::<Hmac<Sha256>>(secret, msg),
            _ => run::<Hmac<Sha512>>(secret, msg),
        })
    }

    /// A request signed as the reference describes, over `@request-target`
    /// and `date` (and `x-extra` when present).
    fn signed(alg: &str, key_id: &str, secret: &[u8], target: &str, date: &str) -> TestReq {
        let text = format!("{key_id}\nGET {target}\ndate: {date}\nx-extra: 1\n");
        let auth = format!(
            "Signature keyId=\"{key_id}\",algorithm=\"{alg}\",\
             headers=\"@request-target date x-extra\",signature=\"{}\"",
            mac(alg, secret, &text)
        );
        TestReq::get(target)
            .header("Date", date)
            .header("X-Extra", "1")
            .header("Authorization", &auth)
    }

    fn jack(target: &str) -> TestReq {
        signed("hmac-sha256", "jack-key", b"jack-secret", target, &date(0))
    }

    fn assert_401(out: &Outcome, message: &str) {
        assert_eq!(out.status(), 401);
        assert_eq!(out.body(), format!("{{\"message\":\"{message}\"}}\n"));
        assert_eq!(
            out.reply_header("www-authenticate").unwrap(),
            "hmac realm=\"hmac\""
        );
        assert_eq!(out.consumer(), None);
    }

    #[test]
    fn valid_signatures_attach_the_consumer() {
        let p = plugin(json!({}));
        for alg in ["hmac-sha1", "hmac-sha256", "hmac-sha512"] {
            let out = signed(alg, "rose-key", b"rose-secret", "/a/b?x=1", &date(-100)).rewrite(&p);
            assert!(out.continued(), "{alg}: {:?}", out.reply);
            assert_eq!(out.consumer(), Some("rose"));
            assert_eq!(
                out.upstream("x-consumer-username"),
                Some(Some("rose".into()))
            );
            assert_eq!(out.upstream("authorization"), None);
        }
        let out = jack("/").rewrite(&plugin(json!({"hide_credentials": true})));
        assert_eq!(out.consumer(), Some("jack"));
        assert_eq!(out.upstream("authorization"), Some(None));
    }

    #[test]
    fn refusals_answer_as_apisix() {
        let p = plugin(json!({}));
        let generic = "client request can't be validated";
        assert_401(
            &TestReq::get("/").rewrite(&p),
            "client request can't be validated: missing Authorization header",
        );
        let basic = TestReq::get("/").header("Authorization", "Basic abc");
        assert_401(
            &basic.rewrite(&p),
            "client request can't be validated: Authorization header does not start with 'Signature'",
        );
        let ok = jack("/");
        let auth = ok.field("authorization").unwrap();
        let edits: [(&str, &str); 6] = [
            ("jack-key", "nobody"),
            ("hmac-sha256", "hmac-md5"),
            ("algorithm=\"hmac-sha256\",", ""),
            (" date x-extra", " x-extra"),
            ("signature=\"", "signature=\"AAAA"),
            ("keyId=", "key="),
        ];
        for (from, to) in edits {
            let req = ok.clone().replace("Authorization", &auth.replace(from, to));
            assert_401(&req.rewrite(&p), generic);
        }
        // Date missing, unparsable, too far.
        assert_401(&ok.clone().without("date").rewrite(&p), generic);
        let bad = signed("hmac-sha256", "jack-key", b"jack-secret", "/", "yesterday");
        assert_401(&bad.rewrite(&p), generic);
        let old = signed("hmac-sha256", "jack-key", b"jack-secret", "/", &date(-301));
        assert_401(&old.rewrite(&p), generic);
        let wide = plugin(json!({"clock_skew": 1000}));
        assert!(old.rewrite(&wide).continued());
        // A signed field changed after signing; another target.
        let changed = ok.clone().without("x-extra").header("X-Extra", "2");
        assert_401(&changed.rewrite(&p), generic);
        let moved = ok.clone();
        let moved = TestReq::get("/other")
            .header("Date", &moved.field("date").unwrap())
            .header("X-Extra", "1")
            .header("Authorization", &auth);
        assert_401(&moved.rewrite(&p), generic);
        // Only the allowed algorithms.
        let sha1_only = plugin(json!({"allowed_algorithms": ["hmac-sha1"]}));
        assert_401(&ok.rewrite(&sha1_only), generic);
        // signed_headers must all be listed.
        let strict = plugin(json!({"signed_headers": ["date", "x-other"]}));
        assert_401(&ok.rewrite(&strict), generic);
    }

    #[test]
    fn the_signed_string_is_apisix_s() {
        let req = TestReq::get("/p?q=1")
            .method("POST")
            .header("Date", "Tue, 01 Jan 2030 00:00:00 GMT")
            .header("X-Extra", "v");
        let out = req.run(|ctx| {
            let text = signing_string(ctx, "k", &["@request-target", "date", "absent", "X-Extra"]);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                "k\nPOST /p?q=1\ndate: Tue, 01 Jan 2030 00:00:00 GMT\nX-Extra: v\n"
            );
            Flow::Continue
        });
        assert!(out.continued());
        let p = params(r#" keyId="a b",algorithm="hmac-sha1", headers="x y" ,signature="c=",junk"#);
        assert_eq!(
            (p.key_id, p.algorithm, p.signature),
            (Some("a b"), Some("hmac-sha1"), Some("c="))
        );
        assert_eq!(p.headers, Some(vec!["x", "y"]));
    }

    #[test]
    fn request_bodies_are_checked_against_the_digest() {
        let p = plugin(json!({"validate_request_body": true, "max_req_body_size": 10}));
        let digest = |b: &[u8]| format!("SHA-256={}", b64(&Sha256::digest(b)));
        let ok = jack("/").method("GET");
        let generic = "client request can't be validated";
        let with = |body: &[u8], d: &str| {
            ok.clone()
                .header("Content-Length", &body.len().to_string())
                .header("Digest", d)
                .body(body)
        };
        // GET signatures cover "GET"; the method above is the same.
        assert!(with(b"hello", &digest(b"hello")).rewrite(&p).continued());
        assert_401(&with(b"hello", &digest(b"other")).rewrite(&p), generic);
        assert_401(&ok.clone().body(b"hello").rewrite(&p), generic);
        // No body at all: the digest of nothing.
        assert!(ok
            .clone()
            .header("Digest", &digest(b""))
            .rewrite(&p)
            .continued());
        // A body announced but not buffered cannot be validated.
        let unbuffered = ok
            .clone()
            .header("Content-Length", "5")
            .header("Digest", &digest(b"hello"));
        assert_401(&unbuffered.rewrite(&p), generic);
        // Over max_req_body_size: 413, announced or read.
        let big = with(b"0123456789a", &digest(b"0123456789a"));
        let out = big.rewrite(&p);
        assert_eq!(out.status(), 413);
        assert_eq!(
            out.body(),
            "{\"message\":\"request size 11 is greater than the maximum size 10 allowed\"}\n"
        );
        let out = ok
            .clone()
            .header("Digest", "x")
            .body(b"0123456789ab")
            .rewrite(&p);
        assert_eq!(out.status(), 413);
        // Without validate_request_body, bodies are not looked at.
        assert!(ok
            .clone()
            .body(b"anything")
            .rewrite(&plugin(json!({})))
            .continued());
    }

    #[test]
    fn anonymous_consumer_and_realm() {
        let p = plugin(json!({"anonymous_consumer": "guest", "hide_credentials": true}));
        let out = TestReq::get("/")
            .header("Authorization", "Signature x")
            .rewrite(&p);
        assert_eq!(out.consumer(), Some("guest"));
        assert_eq!(out.upstream("authorization"), Some(None));
        let p = plugin(json!({"anonymous_consumer": "ghost", "realm": "r"}));
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(out.body(), "{\"message\":\"Invalid user authorization\"}\n");
        assert_eq!(
            out.reply_header("www-authenticate").unwrap(),
            "hmac realm=\"r\""
        );
    }

    #[test]
    fn configuration_is_checked() {
        let bad = [
            (
                json!({"allowed_algorithms": []}),
                "allowed_algorithms: must not be empty",
            ),
            (json!({"clock_skew": 0}), "clock_skew: must be at least 1"),
            (
                json!({"signed_headers": [""]}),
                "signed_headers[0]: must be 1 to 50 characters",
            ),
            (
                json!({"max_req_body_size": 0}),
                "max_req_body_size: must be at least 1",
            ),
        ];
        for (conf, message) in bad {
            assert_eq!(build_error(build_with(&SPEC, conf, &[], &[])), message);
        }
        let e = build_error(build_with(
            &SPEC,
            json!({"allowed_algorithms": ["md5"]}),
            &[],
            &[],
        ));
        assert!(e.starts_with("allowed_algorithms[0]"), "{e}");
        assert!(check_consumer(&json!({"key_id": "k", "secret_key": "s"})).is_ok());
        let e = check_consumer(&json!({"key_id": "k", "secret_key": ""})).unwrap_err();
        assert_eq!(e.to_string(), "secret_key: must be 1 to 256 characters");
        assert!(check_consumer(&json!({"key_id": "k"})).is_err());
        let dup = [
            ("a", json!({"key_id": "k", "secret_key": "hunter2"})),
            ("b", json!({"key_id": "k", "secret_key": "hunter3"})),
        ];
        let e = build_error(build_with(&SPEC, json!({}), &dup, &[]));
        assert!(
            e.starts_with("consumers[1].plugins.hmac-auth.key_id"),
            "{e}"
        );
        assert!(!e.contains("hunter"), "{e}");
    }
}
