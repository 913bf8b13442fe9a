//! `jwt-auth`: a consumer is recognised by a signed JSON Web Token (JWS
//! compact form) whose claim `key_claim_name` (default `key`) names the
//! consumer's `key`. As APISIX's `jwt-auth` (priority 2510, rewrite phase).
//!
//! The token is taken from the `header` field (a `Bearer ` prefix is
//! stripped), else the `query` argument, else the `cookie`. Only the
//! consumer's configured `algorithm` is accepted: a token whose header names
//! another algorithm (`none`, or `HS256` against an RSA public key) is
//! rejected before any signature check. `exp` and `nbf` are checked when
//! present (or required, with `claims_to_verify`), with the consumer's
//! `lifetime_grace_period` as leeway.
//!
//! Keys are parsed when the configuration is loaded: an asymmetric
//! algorithm without a usable `public_key`, or an HS algorithm without a
//! `secret`, is a configuration error. Signatures are verified by the
//! `jsonwebtoken` crate (HMAC compared in constant time).
//!
//! Not supported: `ES512` (the crate has no P-521), a configuration error.
//! `store_in_ctx` is accepted but has no effect (weir has no per-request
//! store shared between plugins).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::COOKIE;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use weir_plugin::{
    parse_config, percent_decode, BuildCtx, ConfigError, Consumer, Flow, Phase, Phases, Plugin,
    PluginSpec, RequestCtx,
};

use crate::auth::{self, Failure};
use crate::key_auth::without_query_arg;

/// Catalogue entry.
pub static SPEC: PluginSpec = PluginSpec {
    name: "jwt-auth",
    priority: 2510,
    phases: Phases::of(&[Phase::Rewrite]),
    needs_body: false,
    build,
    consumer_check: Some(check_consumer),
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Conf {
    header: String,
    query: String,
    cookie: String,
    hide_credentials: bool,
    key_claim_name: String,
    #[allow(dead_code)]
    store_in_ctx: bool,
    realm: String,
    anonymous_consumer: Option<String>,
    claims_to_verify: Vec<Claim>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Claim {
    Exp,
    Nbf,
}

impl Default for Conf {
    fn default() -> Conf {
        Conf {
            header: "authorization".into(),
            query: "jwt".into(),
            cookie: "jwt".into(),
            hide_credentials: false,
            key_claim_name: "key".into(),
            store_in_ctx: false,
            realm: "jwt".into(),
            anonymous_consumer: None,
            claims_to_verify: Vec::new(),
        }
    }
}

impl Default for ConsumerConf {
    fn default() -> ConsumerConf {
        ConsumerConf {
            key: String::new(),
            secret: None,
            algorithm: "HS256".into(),
            exp: 86400,
            base64_secret: false,
            lifetime_grace_period: 0,
            public_key: None,
        }
    }
}

/// A consumer's (or credential's) `jwt-auth` block. `exp` is accepted as
/// APISIX's schema has it (it was the lifetime of tokens APISIX signed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConsumerConf {
    key: String,
    secret: Option<String>,
    algorithm: String,
    exp: u64,
    base64_secret: bool,
    lifetime_grace_period: u64,
    public_key: Option<String>,
}

const ALGORITHMS: &str = "must be one of HS256, HS384, HS512, RS256, RS384, RS512, \
                          ES256, ES384, PS256, PS384, PS512, EdDSA";

/// What verifies one consumer's tokens.
struct Verifier {
    algorithm: Algorithm,
    /// The algorithm's name, compared with the token's `alg`.
    name: String,
    key: DecodingKey,
    grace: u64,
}

/// Checks a consumer configuration and prepares its key. Errors never
/// quote the secret or the key.
fn verifier(conf: &ConsumerConf) -> Result<Verifier, ConfigError> {
    if conf.key.is_empty() {
        return Err(ConfigError::at("key", "must not be empty"));
    }
    if conf.exp == 0 {
        return Err(ConfigError::at("exp", "must be at least 1"));
    }
    let algorithm = match conf.algorithm.parse::<Algorithm>() {
        Ok(a) => a,
        Err(_) if conf.algorithm == "ES512" => {
            return Err(ConfigError::at(
                "algorithm",
                "ES512 is not supported by weir",
            ))
        }
        Err(_) => return Err(ConfigError::at("algorithm", ALGORITHMS)),
    };
    let name = conf.algorithm.as_str();
    let key = match algorithm.family() {
        AlgorithmFamily::Hmac => {
            let secret = match conf.secret.as_deref() {
                None => {
                    return Err(ConfigError::at(
                        "secret",
                        "property \"secret\" is required when using HS based algorithms",
                    ))
                }
                Some("") => return Err(ConfigError::at("secret", "must not be empty")),
                Some(s) => s,
            };
            let bytes = if conf.base64_secret {
                auth::decode_base64(secret.as_bytes()).ok_or_else(|| {
                    ConfigError::at(
                        "secret",
                        "base64_secret required but the secret is not in base64 format",
                    )
                })?
            } else {
                secret.as_bytes().to_vec()
            };
            DecodingKey::from_secret(&bytes)
                .map_err(|_| ConfigError::at("secret", "must not be an empty key"))?
        }
        family => {
            let pem = match conf.public_key.as_deref() {
                None | Some("") => {
                    return Err(ConfigError::at("public_key", "missing valid public key"))
                }
                Some(p) => p.as_bytes(),
            };
            let key = match family {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
                _ => DecodingKey::from_ed_pem(pem),
            };
            let usable = key.as_ref().ok().is_some_and(|k| {
                CryptoProvider::try_get_default()
                    .is_some_and(|p| (p.verifier_factory)(&algorithm, k).is_ok())
            });
            match key {
                Ok(k) if usable => k,
                _ => {
                    return Err(ConfigError::at(
                        "public_key",
                        format!("not a usable {name} public key (PEM)"),
                    ))
                }
            }
        }
    };
    Ok(Verifier {
        algorithm,
        name: conf.algorithm.clone(),
        key,
        grace: conf.lifetime_grace_period,
    })
}

fn check_consumer(conf: &Value) -> Result<(), ConfigError> {
    verifier(&parse_config(conf)?).map(|_| ())
}

/// Every consumer's verifier, by `key`.
struct KeyIndex {
    by_key: HashMap<String, (Verifier, Arc<Consumer>)>,
}

fn index(ctx: &BuildCtx<'_>) -> Result<KeyIndex, ConfigError> {
    let mut by_key = HashMap::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    for c in ctx.consumers_of(SPEC.name) {
        let at =
            |e: ConfigError| ConfigError::absolute(format!("{}.{}", c.path, e.path), e.message);
        let conf: ConsumerConf = parse_config(c.conf).map_err(at)?;
        let v = verifier(&conf).map_err(at)?;
        if let Some(first) = owner.get(&conf.key) {
            return Err(ConfigError::absolute(
                format!("{}.key", c.path),
                format!("the same key is already used by {first}.key"),
            ));
        }
        owner.insert(conf.key.clone(), c.path.clone());
        by_key.insert(conf.key, (v, c.consumer.clone()));
    }
    Ok(KeyIndex { by_key })
}

struct JwtAuth {
    header: HeaderName,
    query: String,
    cookie: String,
    hide_credentials: bool,
    key_claim_name: String,
    claims: Vec<Claim>,
    failure: Failure,
    keys: Arc<KeyIndex>,
}

fn build(conf: &Value, ctx: &BuildCtx<'_>) -> Result<Arc<dyn Plugin>, ConfigError> {
    let conf: Conf = parse_config(conf)?;
    let header = HeaderName::from_bytes(conf.header.as_bytes())
        .map_err(|_| ConfigError::at("header", "not a valid header field name"))?;
    if conf.key_claim_name.is_empty() {
        return Err(ConfigError::at("key_claim_name", "must not be empty"));
    }
    let claims = &conf.claims_to_verify;
    if (0..claims.len()).any(|i| claims[..i].contains(&claims[i])) {
        return Err(ConfigError::at("claims_to_verify", "items must be unique"));
    }
    let failure = Failure::new(
        "Bearer",
        &conf.realm,
        conf.anonymous_consumer.as_deref(),
        ctx,
    )?;
    let keys = ctx.shared("jwt-auth/keys", index)?;
    Ok(Arc::new(JwtAuth {
        header,
        query: conf.query,
        cookie: conf.cookie,
        hide_credentials: conf.hide_credentials,
        key_claim_name: conf.key_claim_name,
        claims: conf.claims_to_verify,
        failure,
        keys,
    }))
}

/// A token split and decoded, its signature not yet checked.
struct Token {
    alg: Option<String>,
    payload: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    signed: String,
    signature: String,
}

/// Splits and decodes a compact JWS as lua-resty-jwt does: three parts,
/// base64url (padding optional) JSON objects.
fn parse(token: &[u8]) -> Option<Token> {
    let token = std::str::from_utf8(token).ok()?;
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = |part: &str| -> Option<Map<String, Value>> {
        let standard: String = part
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        match serde_json::from_slice(&auth::decode_base64(standard.as_bytes())?) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    };
    let header = json(h)?;
    let payload = json(p)?;
    Some(Token {
        alg: header.get("alg").and_then(Value::as_str).map(str::to_owned),
        payload,
        signed: format!("{h}.{p}"),
        signature: s.to_owned(),
    })
}

/// Cookie pairs as APISIX's `hide_credentials` rewrites the `Cookie` field.
static COOKIE_PAIR: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"([a-zA-Z0-9\-_]*)=([a-zA-Z0-9\-._]*)").ok());

/// The `Cookie` value without cookie `name` (APISIX keeps only the pairs
/// its pattern recognises, joined by `; `).
fn without_cookie(cookie: &str, name: &str) -> String {
    let Some(re) = COOKIE_PAIR.as_ref() else {
        return cookie.to_owned();
    };
    let kept: Vec<&str> = re
        .captures_iter(cookie)
        .filter(|c| c.get(1).map(|m| m.as_str()) != Some(name))
        .filter_map(|c| c.get(0).map(|m| m.as_str()))
        .collect();
    kept.join("; ")
}

impl JwtAuth {
    /// The token, hiding it from the upstream when configured.
    fn fetch(&self, req: &mut RequestCtx<'_>) -> Option<Vec<u8>> {
        if let Some(value) = req.header(self.header.as_str()) {
            let token = match value.get(..7) {
                Some(b"Bearer " | b"bearer ") => value[7..].to_vec(),
                _ => value.to_vec(),
            };
            if self.hide_credentials {
                req.remove_header(self.header.clone());
            }
            return Some(token);
        }
        if let Some(arg) = req.query_arg(&self.query) {
            let token = percent_decode(arg).into_owned().into_bytes();
            if self.hide_credentials {
                let target = without_query_arg(req.upstream_target(), &self.query);
                req.set_upstream_target(target);
            }
            return Some(token);
        }
        let token = req.cookie(&self.cookie)?.to_vec();
        if self.hide_credentials {
            let cookie = req.header("cookie").map(String::from_utf8_lossy);
            let rest = cookie.map(|c| without_cookie(&c, &self.cookie));
            match rest.as_deref().map(HeaderValue::from_str) {
                Some(Ok(v)) if !v.is_empty() => req.set_header(COOKIE, v),
                _ => req.remove_header(COOKIE),
            }
        }
        Some(token)
    }

    fn find(&self, req: &mut RequestCtx<'_>) -> Result<Arc<Consumer>, &'static str> {
        let raw = self.fetch(req).ok_or("Missing JWT token in request")?;
        let token = parse(&raw).ok_or("JWT token invalid")?;
        let user_key = token
            .payload
            .get(&self.key_claim_name)
            .ok_or("missing user key in JWT token")?;
        let (v, consumer) = user_key
            .as_str()
            .and_then(|k| self.keys.by_key.get(k))
            .ok_or("Invalid user key in JWT token")?;
        if token.alg.as_deref() != Some(v.name.as_str()) {
            return Err("failed to verify jwt");
        }
        let verified = jsonwebtoken::crypto::verify(
            &token.signature,
            token.signed.as_bytes(),
            &v.key,
            v.algorithm,
        );
        if !matches!(verified, Ok(true)) {
            return Err("failed to verify jwt");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if !claims_hold(&token.payload, &self.claims, now, v.grace) {
            return Err("failed to verify jwt");
        }
        Ok(consumer.clone())
    }
}

/// APISIX's claim checks: without `claims_to_verify`, `exp` and `nbf` are
/// checked when present; with it, the listed claims must be present. Each
/// must be a number; `exp` later than now less the grace period, `nbf`
/// earlier than now plus it.
fn claims_hold(payload: &Map<String, Value>, listed: &[Claim], now: u64, grace: u64) -> bool {
    let (required, claims): (bool, &[Claim]) = if listed.is_empty() {
        (false, &[Claim::Nbf, Claim::Exp])
    } else {
        (true, listed)
    };
    let (now, grace) = (now as f64, grace as f64);
    claims.iter().all(|claim| {
        let name = match claim {
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
        };
        match payload.get(name) {
            None => !required,
            Some(v) => match (claim, v.as_f64()) {
                (_, None) => false,
                (Claim::Exp, Some(exp)) => exp > now - grace,
                (Claim::Nbf, Some(nbf)) => nbf < now + grace,
            },
        }
    })
}

impl Plugin for JwtAuth {
    fn secret_query_args(&self) -> Vec<String> {
        vec![self.query.clone()]
    }

    fn rewrite(&self, req: &mut RequestCtx<'_>) -> Flow {
        let consumer = match self.find(req) {
            Ok(c) => Ok(c),
            Err(message) => self.failure.fallback(message),
        };
        auth::attach(req, consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_error, build_with, TestReq};
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    // Test-only keys, generated for these tests.
    const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("testdata/ec-private.pem");
    const EC_PUBLIC: &str = include_str!("testdata/ec-public.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("testdata/ed-private.pem");
    const ED_PUBLIC: &str = include_str!("testdata/ed-public.pem");

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn consumers() -> Vec<(&'static str, Value)> {
        let asym =
            |k: &str, alg: &str, pem: &str| json!({"key": k, "algorithm": alg, "public_key": pem});
        vec![
            ("jack", json!({"key": "jack-key", "secret": "jack-secret"})),
            (
                "b64",
                json!({"key": "b64-key", "secret": "c2VjcmV0", "base64_secret": true,
                           "algorithm": "HS512", "lifetime_grace_period": 100}),
            ),
            ("rsa", asym("rsa-key", "RS256", RSA_PUBLIC)),
            ("pss", asym("pss-key", "PS256", RSA_PUBLIC)),
            ("ec", asym("ec-key", "ES256", EC_PUBLIC)),
            ("ed", asym("ed-key", "EdDSA", ED_PUBLIC)),
        ]
    }

    fn plugin(conf: Value) -> Arc<dyn Plugin> {
        build_with(&SPEC, conf, &consumers(), &["guest"]).unwrap()
    }

    fn sign(alg: Algorithm, key: EncodingKey, claims: Value) -> String {
        encode(&Header::new(alg), &claims, &key).unwrap()
    }

    fn hs(alg: Algorithm, secret: &[u8], claims: Value) -> String {
        sign(alg, EncodingKey::from_secret(secret).unwrap(), claims)
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
    }

    fn b64url(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn bearer(token: &str) -> TestReq {
        TestReq::get("/").header("Authorization", &format!("Bearer {token}"))
    }

    fn assert_401(out: &crate::testing::Outcome, message: &str) {
        assert_eq!(out.status(), 401);
        assert_eq!(out.body(), format!("{{\"message\":\"{message}\"}}\n"));
        assert_eq!(
            out.reply_header("www-authenticate").unwrap(),
            "Bearer realm=\"jwt\""
        );
        assert_eq!(out.consumer(), None);
    }

    #[test]
    fn every_algorithm_verifies() {
        let p = plugin(json!({}));
        let claims = |k: &str| json!({"key": k, "exp": now() + 60});
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
        let tokens = [
            (
                "jack",
                hs(Algorithm::HS256, b"jack-secret", claims("jack-key")),
            ),
            ("b64", hs(Algorithm::HS512, b"secret", claims("b64-key"))),
            ("rsa", sign(Algorithm::RS256, rsa(), claims("rsa-key"))),
            ("pss", sign(Algorithm::PS256, rsa(), claims("pss-key"))),
            ("ec", sign(Algorithm::ES256, ec, claims("ec-key"))),
            ("ed", sign(Algorithm::EdDSA, ed, claims("ed-key"))),
        ];
        for (who, token) in &tokens {
            let out = bearer(token).rewrite(&p);
            assert!(out.continued(), "{who}: {:?}", out.reply);
            assert_eq!(out.consumer(), Some(*who));
            assert_eq!(
                out.upstream("x-consumer-username"),
                Some(Some(who.to_string()))
            );
            assert_eq!(
                out.upstream("authorization"),
                None,
                "kept without hide_credentials"
            );
        }
        // Without the prefix, and with a lower-case one.
        let out = TestReq::get("/")
            .header("Authorization", &tokens[0].1)
            .rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
        let v = format!("bearer {}", tokens[0].1);
        let out = TestReq::get("/").header("Authorization", &v).rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
    }

    #[test]
    fn failures_answer_as_apisix() {
        let p = plugin(json!({}));
        assert_401(
            &TestReq::get("/").rewrite(&p),
            "Missing JWT token in request",
        );
        assert_401(&bearer("abc").rewrite(&p), "JWT token invalid");
        assert_401(&bearer("a.b.c.d").rewrite(&p), "JWT token invalid");
        let no_key = hs(Algorithm::HS256, b"jack-secret", json!({"sub": "x"}));
        assert_401(
            &bearer(&no_key).rewrite(&p),
            "missing user key in JWT token",
        );
        let unknown = hs(Algorithm::HS256, b"jack-secret", json!({"key": "nobody"}));
        assert_401(
            &bearer(&unknown).rewrite(&p),
            "Invalid user key in JWT token",
        );
        let numeric = hs(Algorithm::HS256, b"jack-secret", json!({"key": 5}));
        assert_401(
            &bearer(&numeric).rewrite(&p),
            "Invalid user key in JWT token",
        );
        let forged = hs(Algorithm::HS256, b"guess", json!({"key": "jack-key"}));
        assert_401(&bearer(&forged).rewrite(&p), "failed to verify jwt");
        // Another HS algorithm with the right secret: not the consumer's.
        let other = hs(Algorithm::HS384, b"jack-secret", json!({"key": "jack-key"}));
        assert_401(&bearer(&other).rewrite(&p), "failed to verify jwt");
        // alg none, with or without a signature.
        let none = b64url(&json!({"alg": "none", "typ": "JWT"}));
        let body = b64url(&json!({"key": "jack-key"}));
        assert_401(
            &bearer(&format!("{none}.{body}.")).rewrite(&p),
            "failed to verify jwt",
        );
        let real = hs(Algorithm::HS256, b"jack-secret", json!({"key": "jack-key"}));
        let sig = real.rsplit('.').next().unwrap();
        assert_401(
            &bearer(&format!("{none}.{body}.{sig}")).rewrite(&p),
            "failed to verify jwt",
        );
    }

    /// An HS256 token keyed with the RSA public key (the classic confusion
    /// attack) is refused: the consumer's algorithm is RS256.
    #[test]
    fn algorithm_confusion_is_refused() {
        let p = plugin(json!({}));
        let token = hs(
            Algorithm::HS256,
            RSA_PUBLIC.as_bytes(),
            json!({"key": "rsa-key"}),
        );
        assert_401(&bearer(&token).rewrite(&p), "failed to verify jwt");
        // An RS256 token for an HS256 consumer, likewise.
        let token = sign(Algorithm::RS256, rsa(), json!({"key": "jack-key"}));
        assert_401(&bearer(&token).rewrite(&p), "failed to verify jwt");
    }

    #[test]
    fn exp_and_nbf() {
        let p = plugin(json!({}));
        let t = |claims: Value| hs(Algorithm::HS256, b"jack-secret", claims);
        let expired = t(json!({"key": "jack-key", "exp": now() - 10}));
        assert_401(&bearer(&expired).rewrite(&p), "failed to verify jwt");
        let early = t(json!({"key": "jack-key", "nbf": now() + 60}));
        assert_401(&bearer(&early).rewrite(&p), "failed to verify jwt");
        let text = t(json!({"key": "jack-key", "exp": "tomorrow"}));
        assert_401(&bearer(&text).rewrite(&p), "failed to verify jwt");
        let no_exp = t(json!({"key": "jack-key"}));
        assert!(
            bearer(&no_exp).rewrite(&p).continued(),
            "exp checked only when present"
        );
        // The consumer's grace period (100 s for b64).
        let graced = hs(
            Algorithm::HS512,
            b"secret",
            json!({"key": "b64-key", "exp": now() - 50}),
        );
        assert!(bearer(&graced).rewrite(&p).continued());
        // claims_to_verify makes the listed claims required.
        let strict = plugin(json!({"claims_to_verify": ["exp"]}));
        assert_401(&bearer(&no_exp).rewrite(&strict), "failed to verify jwt");
        let fresh = t(json!({"key": "jack-key", "exp": now() + 60}));
        assert!(bearer(&fresh).rewrite(&strict).continued());
    }

    #[test]
    fn query_cookie_and_hide_credentials() {
        let token = hs(Algorithm::HS256, b"jack-secret", json!({"key": "jack-key"}));
        let hide = plugin(json!({"hide_credentials": true}));
        let out = bearer(&token).rewrite(&hide);
        assert_eq!(out.upstream("authorization"), Some(None));

        let req = TestReq::get(&format!("/p?a=1&jwt={token}&b=2"));
        let out = req.rewrite(&plugin(json!({})));
        assert_eq!(out.consumer(), Some("jack"));
        assert_eq!(out.state.upstream_target, None);
        let out = req.rewrite(&hide);
        assert_eq!(out.consumer(), Some("jack"));
        assert_eq!(out.state.upstream_target.as_deref(), Some("/p?a=1&b=2"));

        let req = TestReq::get("/").header("Cookie", &format!("a=1; jwt={token}; b=x.y"));
        let out = req.rewrite(&plugin(json!({})));
        assert_eq!(out.consumer(), Some("jack"));
        assert_eq!(out.upstream("cookie"), None);
        let out = req.rewrite(&hide);
        assert_eq!(out.upstream("cookie"), Some(Some("a=1; b=x.y".into())));
        let out = TestReq::get("/")
            .header("Cookie", &format!("jwt={token}"))
            .rewrite(&hide);
        assert_eq!(out.upstream("cookie"), Some(None));

        // Other names.
        let p = plugin(json!({"header": "x-jwt", "query": "t", "cookie": "c",
                              "key_claim_name": "iss"}));
        let iss = hs(Algorithm::HS256, b"jack-secret", json!({"iss": "jack-key"}));
        let out = TestReq::get("/").header("X-JWT", &iss).rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
        let out = TestReq::get(&format!("/?t={iss}")).rewrite(&p);
        assert_eq!(out.consumer(), Some("jack"));
        let out = bearer(&iss).rewrite(&p);
        assert_eq!(out.status(), 401, "the authorization header is not read");
    }

    #[test]
    fn anonymous_consumer() {
        let p = plugin(json!({"anonymous_consumer": "guest"}));
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(out.consumer(), Some("guest"));
        let p = plugin(json!({"anonymous_consumer": "ghost", "realm": "api"}));
        let out = TestReq::get("/").rewrite(&p);
        assert_eq!(out.body(), "{\"message\":\"Invalid user authorization\"}\n");
        assert_eq!(
            out.reply_header("www-authenticate").unwrap(),
            "Bearer realm=\"api\""
        );
    }

    #[test]
    fn consumer_configuration_is_checked() {
        let cases = [
            (
                json!({"key": "k"}),
                "secret: property \"secret\" is required when using HS based algorithms",
            ),
            (json!({"key": "", "secret": "s"}), "key: must not be empty"),
            (
                json!({"key": "k", "secret": "sec ret!", "base64_secret": true}),
                "secret: base64_secret required but the secret is not in base64 format",
            ),
            (
                json!({"key": "k", "algorithm": "RS256"}),
                "public_key: missing valid public key",
            ),
            (
                json!({"key": "k", "algorithm": "RS256", "public_key": "garbage"}),
                "public_key: not a usable RS256 public key (PEM)",
            ),
            (
                json!({"key": "k", "algorithm": "ES256", "public_key": RSA_PUBLIC}),
                "public_key: not a usable ES256 public key (PEM)",
            ),
            (
                json!({"key": "k", "algorithm": "EdDSA", "public_key": EC_PUBLIC}),
                "public_key: not a usable EdDSA public key (PEM)",
            ),
            (
                json!({"key": "k", "algorithm": "ES512", "public_key": EC_PUBLIC}),
                "algorithm: ES512 is not supported by weir",
            ),
            (
                json!({"key": "k", "secret": "s", "exp": 0}),
                "exp: must be at least 1",
            ),
        ];
        for (conf, message) in cases {
            assert_eq!(
                check_consumer(&conf).unwrap_err().to_string(),
                message,
                "{conf}"
            );
        }
        assert!(check_consumer(&json!({"key": "k", "algorithm": "HS9", "secret": "s"})).is_err());
        assert!(check_consumer(
            &json!({"key": "k", "algorithm": "RS256", "public_key": RSA_PUBLIC})
        )
        .is_ok());
        // At build: the consumer's path, never the secret.
        let bad = [(
            "x",
            json!({"key": "k", "secret": "hunter2", "algorithm": "RS256"}),
        )];
        let e = build_error(build_with(&SPEC, json!({}), &bad, &[]));
        assert_eq!(
            e,
            "consumers[0].plugins.jwt-auth.public_key: missing valid public key"
        );
        let dup = [
            ("a", json!({"key": "k", "secret": "s1"})),
            ("b", json!({"key": "k", "secret": "s2"})),
        ];
        let e = build_error(build_with(&SPEC, json!({}), &dup, &[]));
        assert!(e.contains("consumers[1].plugins.jwt-auth.key"), "{e}");
        let e = build_error(build_with(
            &SPEC,
            json!({"claims_to_verify": ["iat"]}),
            &[],
            &[],
        ));
        assert!(e.starts_with("claims_to_verify[0]"), "{e}");
        let e = build_error(build_with(
            &SPEC,
            json!({"claims_to_verify": ["exp", "exp"]}),
            &[],
            &[],
        ));
        assert!(e.starts_with("claims_to_verify"), "{e}");
    }
}
