//! The authentication plugins over real sockets: `key-auth`, `basic-auth`,
//! `jwt-auth`, `hmac-auth`. What a client gets when it is refused (status,
//! exact body, `WWW-Authenticate`, as APISIX answers), and what the node
//! gets when it is let through (`X-Consumer-Username`,
//! `X-Consumer-Custom-ID`, `X-Credential-Identifier` set by weir whatever
//! the client sent; credentials hidden with `hide_credentials`). Every case
//! runs over HTTP/1.1 (fast path, TLS, general path) and HTTP/2 (h2c, h2
//! over TLS): see `plugin_kit/mod.rs`.

mod common;
mod plugin_kit;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::wire::echo_target;
use hmac::{KeyInit, Mac};
use jsonwebtoken::{encode, EncodingKey, Header};
use plugin_kit::*;
use serde_json::{json, Value};

const JACK_KEY: &str = "jack-key-7Qm2";
/// A key with characters a query string must percent-encode.
const ROSE_KEY: &str = "rose+key/=1";
const ROSE_KEY_QUERY: &str = "rose%2Bkey%2F%3D1";

/// Test-only RSA keys (shared with weir-plugins' unit tests).
const RSA_PRIVATE: &[u8] = include_bytes!("../../weir-plugins/src/testdata/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../weir-plugins/src/testdata/rsa-public.pem");

fn key_auth_consumers() -> Value {
    json!([
        {"username": "jack", "labels": {"custom_id": "c-42"},
         "plugins": {"key-auth": {"key": JACK_KEY}}},
        {"username": "rose", "plugins": {"key-auth": {"key": ROSE_KEY}}},
        {"username": "guest"},
    ])
}

/// One route `/*` with `plugins`, the key-auth consumers.
async fn one_route(t: T, node: &str, plugins: Value, consumers: Value) -> Gw {
    start(
        t,
        json!({
            "routes": [{"id": "auth", "uri": "/*", "upstream": upstream(node), "plugins": plugins}],
            "consumers": consumers,
        }),
    )
    .await
}

// ---------------------------------------------------------------------------
// key-auth
// ---------------------------------------------------------------------------

async fn key_auth_refuses_a_missing_or_unknown_key_with_401_and_the_challenge(t: T) {
    let b = echo_target().await;
    let gw = one_route(t, &b.node(), json!({"key-auth": {}}), key_auth_consumers()).await;
    let mut c = gw.client();
    let challenge = Some(r#"apikey realm="key""#);

    let r = c.send(&Req::get("/k")).await;
    assert_rejected(
        &format!("{t:?} no key"),
        &r,
        401,
        "{\"message\":\"Missing API key in request\"}\n",
        challenge,
        &b,
        0,
    );
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{t:?}: APISIX answers plugin rejections as text/plain: {:?}",
        r.headers
    );
    for (what, req, body) in [
        (
            "a wrong key in the header",
            Req::get("/k").header("apikey", "jack-key-7Qm3"),
            "Invalid API key in request",
        ),
        (
            "a wrong key in the query",
            Req::get("/k?apikey=nope"),
            "Invalid API key in request",
        ),
        (
            "a consumer's key in another header",
            Req::get("/k").header("x-apikey", JACK_KEY),
            "Missing API key in request",
        ),
        (
            "a forged X-Consumer-Username",
            Req::get("/k").header("x-consumer-username", "jack"),
            "Missing API key in request",
        ),
    ] {
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} {what}"),
            &r,
            401,
            &message(body),
            challenge,
            &b,
            0,
        );
    }
}

async fn key_auth_header_key_lets_the_consumer_through_and_the_node_learns_who(t: T) {
    let b = echo_target().await;
    let gw = one_route(t, &b.node(), json!({"key-auth": {}}), key_auth_consumers()).await;
    let mut c = gw.client();
    let r = c
        .send(
            &Req::get("/k")
                .header("apikey", JACK_KEY)
                .header("X-Consumer-Username", "admin")
                .header("X-Credential-Identifier", "forged")
                .header("X-Consumer-Custom-ID", "forged"),
        )
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    assert_eq!(r.text(), "/k");
    let seen = last(&b);
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));
    assert_eq!(one(&seen, "x-consumer-custom-id").as_deref(), Some("c-42"));
    assert_eq!(
        one(&seen, "x-credential-identifier"),
        None,
        "{t:?}: a consumer's own key is no credential: the forged value must go"
    );
    assert_eq!(
        one(&seen, "apikey").as_deref(),
        Some(JACK_KEY),
        "{t:?}: without hide_credentials the key is forwarded"
    );

    // Another consumer on the same connection: nothing of jack's is left.
    let r = c.send(&Req::get("/k2").header("apikey", ROSE_KEY)).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("rose"));
    assert_eq!(
        one(&seen, "x-consumer-custom-id"),
        None,
        "{t:?}: rose has no custom_id"
    );

    // And then no key: refused, on the same connection.
    let before = b.seen().len();
    let r = c.send(&Req::get("/k3")).await;
    assert_rejected(
        &format!("{t:?} no key after two good ones"),
        &r,
        401,
        &message("Missing API key in request"),
        Some(r#"apikey realm="key""#),
        &b,
        before,
    );
}

async fn key_auth_query_key_lets_the_consumer_through(t: T) {
    let b = echo_target().await;
    let gw = one_route(t, &b.node(), json!({"key-auth": {}}), key_auth_consumers()).await;
    let mut c = gw.client();
    let target = format!("/q?x=1&apikey={JACK_KEY}&y=2");
    let r = c.send(&Req::get(&target)).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));
    assert_eq!(
        seen.target, target,
        "{t:?}: without hide_credentials the query is forwarded as sent"
    );

    // The argument is percent-decoded before the lookup.
    let target = format!("/q?apikey={ROSE_KEY_QUERY}");
    let r = c.send(&Req::get(&target)).await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    assert_eq!(
        one(&last(&b), "x-consumer-username").as_deref(),
        Some("rose")
    );

    // The header wins over the query argument.
    let r = c
        .send(&Req::get(&format!("/q?apikey={ROSE_KEY_QUERY}")).header("apikey", JACK_KEY))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    assert_eq!(
        one(&last(&b), "x-consumer-username").as_deref(),
        Some("jack")
    );
}

async fn key_auth_hide_credentials_keeps_the_key_from_the_node(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({
            "routes": [
                {"id": "std", "uri": "/std/*", "upstream": upstream(&b.node()),
                 "plugins": {"key-auth": {"hide_credentials": true}}},
                {"id": "custom", "uri": "/custom/*", "upstream": upstream(&b.node()),
                 "plugins": {"key-auth": {"hide_credentials": true, "header": "X-Api-Key", "query": "token"}}},
            ],
            "consumers": key_auth_consumers(),
        }),
    )
    .await;
    let mut c = gw.client();

    let r = c
        .send(
            &Req::get("/std/h")
                .header("apikey", JACK_KEY)
                .header("x-kept", "1"),
        )
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "apikey"), None, "{t:?}: {:?}", seen.head.headers);
    assert_eq!(one(&seen, "x-kept").as_deref(), Some("1"));
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));

    for (sent, forwarded) in [
        (
            format!("/std/q?a=1&apikey={JACK_KEY}&b=2"),
            "/std/q?a=1&b=2",
        ),
        (format!("/std/q?apikey={JACK_KEY}"), "/std/q"),
        (format!("/std/q?apikey={ROSE_KEY_QUERY}&z=9"), "/std/q?z=9"),
    ] {
        let r = c.send(&Req::get(&sent)).await;
        assert_eq!(r.status, 200, "{t:?} {sent}: {}", r.text());
        let seen = last(&b);
        assert_eq!(seen.target, forwarded, "{t:?}: {sent}");
        assert!(one(&seen, "x-consumer-username").is_some(), "{t:?}: {sent}");
    }

    // A configured header name matches whatever its case; the query
    // argument name is the configured one.
    let r = c
        .send(&Req::get("/custom/h").header("X-API-KEY", JACK_KEY))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(
        one(&seen, "x-api-key"),
        None,
        "{t:?}: {:?}",
        seen.head.headers
    );
    let r = c
        .send(&Req::get(&format!("/custom/q?token={JACK_KEY}&apikey=x")))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    assert_eq!(last(&b).target, "/custom/q?apikey=x", "{t:?}");
    let r = c
        .send(&Req::get("/custom/h").header("apikey", JACK_KEY))
        .await;
    assert_eq!(
        r.status, 401,
        "{t:?}: the default header does not count once another is configured"
    );
}

async fn key_auth_anonymous_consumer_takes_requests_without_a_valid_key(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({
            "routes": [
                {"id": "anon", "uri": "/anon/*", "upstream": upstream(&b.node()),
                 "plugins": {"key-auth": {"anonymous_consumer": "guest"}}},
                {"id": "ghost", "uri": "/ghost/*", "upstream": upstream(&b.node()),
                 "plugins": {"key-auth": {"anonymous_consumer": "ghost"}}},
            ],
            "consumers": key_auth_consumers(),
        }),
    )
    .await;
    let mut c = gw.client();
    for (what, req, who) in [
        ("no key", Req::get("/anon/a"), "guest"),
        (
            "a wrong key",
            Req::get("/anon/a").header("apikey", "wrong"),
            "guest",
        ),
        (
            "a forged consumer",
            Req::get("/anon/a").header("x-consumer-username", "jack"),
            "guest",
        ),
        (
            "jack's key",
            Req::get("/anon/a").header("apikey", JACK_KEY),
            "jack",
        ),
    ] {
        let r = c.send(&req).await;
        assert_eq!(r.status, 200, "{t:?} {what}: {}", r.text());
        assert_eq!(
            one(&last(&b), "x-consumer-username").as_deref(),
            Some(who),
            "{t:?} {what}"
        );
    }
    // An anonymous consumer that does not exist: APISIX's 401.
    let before = b.seen().len();
    let r = c.send(&Req::get("/ghost/a")).await;
    assert_rejected(
        &format!("{t:?} missing anonymous consumer"),
        &r,
        401,
        &message("Invalid user authorization"),
        None,
        &b,
        before,
    );
}

// ---------------------------------------------------------------------------
// basic-auth
// ---------------------------------------------------------------------------

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

async fn basic_auth_answers_as_apisix_and_lets_good_credentials_through(t: T) {
    let b = echo_target().await;
    let gw = start(
        t,
        json!({
            "routes": [
                {"id": "basic", "uri": "/b/*", "upstream": upstream(&b.node()),
                 "plugins": {"basic-auth": {}}},
                {"id": "hidden", "uri": "/hidden/*", "upstream": upstream(&b.node()),
                 "plugins": {"basic-auth": {"hide_credentials": true}}},
            ],
            "consumers": [
                {"username": "jack", "labels": {"custom_id": "c-7"},
                 "plugins": {"basic-auth": {"username": "jack-user", "password": "jack-pw-9"}}},
            ],
        }),
    )
    .await;
    let mut c = gw.client();
    let challenge = Some(r#"Basic realm="basic""#);
    for (what, req, body) in [
        (
            "no Authorization",
            Req::get("/b/x"),
            "Missing authorization in request",
        ),
        (
            "another scheme",
            Req::get("/b/x").header("authorization", "Bearer abc"),
            "Invalid authorization in request",
        ),
        (
            "a wrong password",
            Req::get("/b/x").header("authorization", &basic("jack-user:jack-pw-8")),
            "Invalid user authorization",
        ),
        (
            "an unknown user",
            Req::get("/b/x").header("authorization", &basic("nobody:jack-pw-9")),
            "Invalid user authorization",
        ),
    ] {
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} {what}"),
            &r,
            401,
            &message(body),
            challenge,
            &b,
            0,
        );
    }
    let good = basic("jack-user:jack-pw-9");
    let r = c
        .send(
            &Req::get("/b/x")
                .header("authorization", &good)
                .header("x-consumer-username", "admin"),
        )
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));
    assert_eq!(one(&seen, "x-consumer-custom-id").as_deref(), Some("c-7"));
    assert_eq!(one(&seen, "authorization").as_deref(), Some(good.as_str()));

    let r = c
        .send(&Req::get("/hidden/x").header("authorization", &good))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "authorization"), None, "{t:?}: hide_credentials");
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));
}

// ---------------------------------------------------------------------------
// jwt-auth
// ---------------------------------------------------------------------------

const JWT_SECRET: &str = "jack-hs256-secret-5x";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).expect("HMAC key"),
    )
    .expect("sign HS256")
}

fn rs256(claims: &Value) -> String {
    encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA private key"),
    )
    .expect("sign RS256")
}

fn b64url(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn jwt_auth_accepts_valid_hs256_and_rs256_tokens_and_refuses_forged_ones(t: T) {
    let b = echo_target().await;
    let gw = one_route(
        t,
        &b.node(),
        json!({"jwt-auth": {}}),
        json!([
            {"username": "jack", "plugins": {"jwt-auth": {"key": "jack-jwt", "secret": JWT_SECRET}}},
            {"username": "rsa-user", "plugins": {"jwt-auth": {
                "key": "rsa-jwt", "algorithm": "RS256", "public_key": RSA_PUBLIC}}},
        ]),
    )
    .await;
    let mut c = gw.client();
    let exp = now() + 3600;
    let jack = hs256(
        JWT_SECRET.as_bytes(),
        &json!({"key": "jack-jwt", "exp": exp}),
    );
    let rsa = rs256(&json!({"key": "rsa-jwt", "exp": exp}));

    for (what, req, who) in [
        (
            "HS256 in Authorization: Bearer",
            Req::get("/j").header("authorization", &format!("Bearer {jack}")),
            "jack",
        ),
        (
            "HS256 without Bearer",
            Req::get("/j").header("authorization", &jack),
            "jack",
        ),
        (
            "HS256 in ?jwt=",
            Req::get(&format!("/j?jwt={jack}")),
            "jack",
        ),
        (
            "HS256 in the jwt cookie",
            Req::get("/j").header("cookie", &format!("a=1; jwt={jack}")),
            "jack",
        ),
        (
            "RS256",
            Req::get("/j").header("authorization", &format!("Bearer {rsa}")),
            "rsa-user",
        ),
    ] {
        let r = c.send(&req).await;
        assert_eq!(r.status, 200, "{t:?} {what}: {}", r.text());
        assert_eq!(
            one(&last(&b), "x-consumer-username").as_deref(),
            Some(who),
            "{t:?} {what}"
        );
    }

    let seen = b.seen().len();
    let expired = hs256(
        JWT_SECRET.as_bytes(),
        &json!({"key": "jack-jwt", "exp": now() - 3600}),
    );
    let alg_none = format!(
        "{}.{}.",
        b64url(&json!({"alg": "none", "typ": "JWT"})),
        b64url(&json!({"key": "jack-jwt", "exp": exp}))
    );
    // Algorithm confusion: the RSA consumer's public key (which is no
    // secret) used as an HMAC key.
    let confused = hs256(
        RSA_PUBLIC.as_bytes(),
        &json!({"key": "rsa-jwt", "exp": exp}),
    );
    let wrong_secret = hs256(b"not-the-secret", &json!({"key": "jack-jwt", "exp": exp}));
    let unknown = hs256(JWT_SECRET.as_bytes(), &json!({"key": "nobody", "exp": exp}));
    let no_key = hs256(JWT_SECRET.as_bytes(), &json!({"exp": exp}));
    for (what, token, body) in [
        ("an expired token", Some(expired), "failed to verify jwt"),
        ("alg none", Some(alg_none), "failed to verify jwt"),
        (
            "HS256 signed with the RS256 consumer's public key",
            Some(confused),
            "failed to verify jwt",
        ),
        ("a wrong secret", Some(wrong_secret), "failed to verify jwt"),
        (
            "an unknown key",
            Some(unknown),
            "Invalid user key in JWT token",
        ),
        (
            "no key claim",
            Some(no_key),
            "missing user key in JWT token",
        ),
        ("not a JWT", Some("abc.def".to_owned()), "JWT token invalid"),
        ("no token", None, "Missing JWT token in request"),
    ] {
        let req = match &token {
            Some(tok) => Req::get("/j").header("authorization", &format!("Bearer {tok}")),
            None => Req::get("/j"),
        };
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} {what}"),
            &r,
            401,
            &message(body),
            Some(r#"Bearer realm="jwt""#),
            &b,
            seen,
        );
    }
}

// ---------------------------------------------------------------------------
// hmac-auth
// ---------------------------------------------------------------------------

const HMAC_KEY_ID: &str = "jack-hmac";
const HMAC_SECRET: &str = "jack-hmac-secret-3k";

/// `Authorization: Signature ...` for `method target` with this `date`,
/// HMAC-SHA256 over APISIX's signing string (keyId, `METHOD target`,
/// `date: ...`, each followed by a newline).
fn hmac_signature(secret: &str, method: &str, target: &str, date: &str) -> String {
    let signing = format!("{HMAC_KEY_ID}\n{method} {target}\ndate: {date}\n");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC key");
    mac.update(signing.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        r#"Signature keyId="{HMAC_KEY_ID}",algorithm="hmac-sha256",headers="@request-target date",signature="{sig}""#
    )
}

fn signed(method: &str, target: &str, secret: &str, date: SystemTime, body: &[u8]) -> Req {
    let date = httpdate::fmt_http_date(date);
    let auth = hmac_signature(secret, method, target, &date);
    let req = if method == "POST" {
        Req::post(target, body)
    } else {
        Req::get(target)
    };
    req.header("date", &date).header("authorization", &auth)
}

async fn hmac_auth_lets_a_signed_request_through_and_refuses_bad_signatures_and_stale_dates(t: T) {
    let b = echo_target().await;
    let gw = one_route(
        t,
        &b.node(),
        json!({"hmac-auth": {}}),
        json!([{"username": "jack", "plugins": {"hmac-auth": {
            "key_id": HMAC_KEY_ID, "secret_key": HMAC_SECRET}}}]),
    )
    .await;
    let mut c = gw.client();
    let now = SystemTime::now();

    let r = c
        .send(&signed("GET", "/h?x=1", HMAC_SECRET, now, b""))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));
    assert_eq!(seen.target, "/h?x=1");

    // A body is buffered for the plugin and still reaches the node whole.
    let r = c
        .send(&signed(
            "POST",
            "/h/post",
            HMAC_SECRET,
            now,
            b"payload-1234",
        ))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    let seen = last(&b);
    assert_eq!(seen.body, b"payload-1234", "{t:?}");
    assert_eq!(one(&seen, "x-consumer-username").as_deref(), Some("jack"));

    let before = b.seen().len();
    let challenge = Some(r#"hmac realm="hmac""#);
    let stale = now - Duration::from_secs(1000);
    let mut other_target = signed("GET", "/h?x=1", HMAC_SECRET, now, b"");
    other_target.target = "/h?x=2".into();
    for (what, req, body) in [
        (
            "a wrong secret",
            signed("GET", "/h", "not-the-secret", now, b""),
            "client request can't be validated",
        ),
        (
            "a signature for another target",
            other_target,
            "client request can't be validated",
        ),
        (
            "a correctly signed Date 1000 s old (clock_skew 300)",
            signed("GET", "/h", HMAC_SECRET, stale, b""),
            "client request can't be validated",
        ),
        (
            "no Authorization",
            Req::get("/h"),
            "client request can't be validated: missing Authorization header",
        ),
    ] {
        let r = c.send(&req).await;
        assert_rejected(
            &format!("{t:?} {what}"),
            &r,
            401,
            &message(body),
            challenge,
            &b,
            before,
        );
    }
}

/// Bodies are buffered (1 MiB at most) only where the plugin validates
/// them; elsewhere they stream, whatever their size.
async fn hmac_auth_buffers_bodies_only_to_validate_them(t: T) {
    let b = echo_target().await;
    let consumers = json!([{"username": "jack", "plugins": {"hmac-auth": {
        "key_id": HMAC_KEY_ID, "secret_key": HMAC_SECRET}}}]);
    let big = vec![b'x'; 2 * 1024 * 1024];
    let now = SystemTime::now();
    let streams = one_route(t, &b.node(), json!({"hmac-auth": {}}), consumers.clone()).await;
    let r = streams
        .send(&signed("POST", "/h/big", HMAC_SECRET, now, &big))
        .await;
    assert_eq!(r.status, 200, "{t:?}: {}", r.text());
    assert_eq!(
        last(&b).body.len(),
        big.len(),
        "{t:?}: the whole body reached the node"
    );
    let validates = one_route(
        t,
        &b.node(),
        json!({"hmac-auth": {"validate_request_body": true}}),
        consumers,
    )
    .await;
    let r = validates
        .send(&signed("POST", "/h/big", HMAC_SECRET, now, &big))
        .await;
    assert_eq!(r.status, 413, "{t:?}: {}", r.text());
}

on_every_transport!(
    key_auth_refuses_a_missing_or_unknown_key_with_401_and_the_challenge,
    key_auth_header_key_lets_the_consumer_through_and_the_node_learns_who,
    key_auth_query_key_lets_the_consumer_through,
    key_auth_hide_credentials_keeps_the_key_from_the_node,
    key_auth_anonymous_consumer_takes_requests_without_a_valid_key,
    basic_auth_answers_as_apisix_and_lets_good_credentials_through,
    jwt_auth_accepts_valid_hs256_and_rs256_tokens_and_refuses_forged_ones,
    hmac_auth_lets_a_signed_request_through_and_refuses_bad_signatures_and_stale_dates,
    hmac_auth_buffers_bodies_only_to_validate_them,
);
