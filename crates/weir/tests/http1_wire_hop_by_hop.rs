//! HTTP/1.1 on the wire: hop-by-hop fields, one at a time, both ways
//! (split from `http1_wire.rs`, whose harness and transports it shares:
//! raw-socket clients and nodes, once per `Transport`).

mod common;

use common::wire::*;

// ---------------------------------------------------------------------------
// Hop-by-hop fields one at a time (RFC 9110 §7.6.1; docs/architecture.md:
// "hop-by-hop fields (and those `Connection` names) dropped" both ways), so
// that one field's handling cannot hide another's. weir treats `Connection`,
// the fields it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
// `Transfer-Encoding`, `Upgrade` and `Proxy-Authorization` as hop-by-hop
// (`weir-proxy/src/headers.rs`, `h1/request.rs`, `h1/response.rs`).
// ---------------------------------------------------------------------------

/// Sends a GET carrying `fields` (each line ending in CRLF) next to
/// `X-Kept: yes`; asserts the node sees none of `gone`, no `Connection`
/// token the client sent, and `X-Kept`; and that the client connection
/// still serves a request.
async fn request_hop_field_is_dropped(t: Transport, fields: &str, gone: &[&str]) {
    let b = echo_target().await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    c.send(
        format!("GET /hop HTTP/1.1\r\nHost: wire.test\r\n{fields}X-Kept: yes\r\n\r\n").as_bytes(),
    )
    .await;
    let r = c.response().await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/hop"),
        "{fields:?}: {r:?}"
    );
    let seen = b.only_request();
    let h = &seen.head;
    for name in gone {
        assert!(
            !h.has(name),
            "{fields:?}: the node must not see {name}: {:?}",
            h.headers
        );
        assert!(
            !h.has_token("connection", name),
            "{fields:?}: Connection still names {name}: {:?}",
            h.headers
        );
    }
    assert_eq!(h.get("x-kept"), Some("yes"), "{fields:?}: {:?}", h.headers);
    c.send(&get("/again")).await;
    let r = c.response().await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/again"),
        "{fields:?}: {r:?}"
    );
}

async fn request_field_named_by_connection_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "Connection: X-Secret\r\nX-Secret: 1\r\n", &["x-secret"]).await;
}

async fn request_fields_named_by_two_connection_lines_are_dropped(t: Transport) {
    request_hop_field_is_dropped(
        t,
        "Connection: X-One\r\nX-One: 1\r\nX-Two: 2\r\nConnection: keep-alive, X-Two\r\n",
        &["x-one", "x-two"],
    )
    .await;
}

/// The fast path keeps up to eight names; more take the general path.
async fn request_fields_named_by_a_connection_listing_nine_are_all_dropped(t: Transport) {
    let names: Vec<String> = (1..=9).map(|i| format!("x-named-{i}")).collect();
    let mut fields = format!("Connection: {}\r\n", names.join(", "));
    for n in &names {
        fields.push_str(&format!("{n}: 1\r\n"));
    }
    let gone: Vec<&str> = names.iter().map(String::as_str).collect();
    request_hop_field_is_dropped(t, &fields, &gone).await;
}

async fn request_keep_alive_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "Keep-Alive: timeout=5, max=100\r\n", &["keep-alive"]).await;
}

async fn request_proxy_connection_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "Proxy-Connection: keep-alive\r\n", &["proxy-connection"])
        .await;
}

async fn request_te_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "TE: trailers\r\n", &["te"]).await;
}

async fn request_trailer_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "Trailer: X-Checksum\r\n", &["trailer"]).await;
}

async fn request_upgrade_without_connection_upgrade_is_dropped(t: Transport) {
    request_hop_field_is_dropped(t, "Upgrade: h2c\r\n", &["upgrade"]).await;
}

async fn request_proxy_authorization_is_dropped(t: Transport) {
    request_hop_field_is_dropped(
        t,
        "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n",
        &["proxy-authorization"],
    )
    .await;
}

/// A node answers `200` with `fields` next to `X-Backend-Kept: yes` and a
/// 2-byte body; asserts the client sees none of `gone`, no `Connection`
/// token the node sent, and `X-Backend-Kept`; and that the connection
/// still serves a request.
async fn response_hop_field_is_dropped(t: Transport, fields: &str, gone: &[&str]) {
    let head =
        format!("HTTP/1.1 200 OK\r\n{fields}X-Backend-Kept: yes\r\nContent-Length: 2\r\n\r\nok");
    let b = RawBackend::start(move |_| Answer::Send(head.clone().into_bytes())).await;
    response_hop_field_is_dropped_from(t, &b, fields, gone).await;
}

async fn response_hop_field_is_dropped_from(
    t: Transport,
    b: &RawBackend,
    fields: &str,
    gone: &[&str],
) {
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    for round in ["first", "second"] {
        c.send(&get("/hop")).await;
        let r = c.response().await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "{fields:?}, {round}: {r:?}"
        );
        for name in gone {
            assert!(
                !r.head.has(name),
                "{fields:?}: the client must not see {name}: {:?}",
                r.head.headers
            );
            assert!(
                !r.head.has_token("connection", name),
                "{fields:?}: Connection still names {name}: {:?}",
                r.head.headers
            );
        }
        assert_eq!(
            r.header("x-backend-kept"),
            Some("yes"),
            "{fields:?}: {:?}",
            r.head.headers
        );
    }
}

async fn response_field_named_by_connection_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "Connection: X-Secret\r\nX-Secret: 1\r\n", &["x-secret"])
        .await;
}

async fn response_fields_named_by_two_connection_lines_are_dropped(t: Transport) {
    response_hop_field_is_dropped(
        t,
        "Connection: X-One\r\nX-One: 1\r\nX-Two: 2\r\nConnection: keep-alive, X-Two\r\n",
        &["x-one", "x-two"],
    )
    .await;
}

/// A `Connection` field naming nine fields: every one of them is
/// hop-by-hop, not just the first eight.
async fn response_fields_named_by_a_connection_listing_nine_are_all_dropped(t: Transport) {
    let names: Vec<String> = (1..=9).map(|i| format!("x-named-{i}")).collect();
    let mut fields = format!("Connection: {}\r\n", names.join(", "));
    for n in &names {
        fields.push_str(&format!("{n}: 1\r\n"));
    }
    let gone: Vec<&str> = names.iter().map(String::as_str).collect();
    response_hop_field_is_dropped(t, &fields, &gone).await;
}

async fn response_keep_alive_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "Keep-Alive: timeout=1, max=100\r\n", &["keep-alive"]).await;
}

async fn response_proxy_connection_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "Proxy-Connection: keep-alive\r\n", &["proxy-connection"])
        .await;
}

async fn response_te_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "TE: trailers\r\n", &["te"]).await;
}

async fn response_trailer_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "Trailer: X-Checksum\r\n", &["trailer"]).await;
}

async fn response_upgrade_without_connection_upgrade_is_dropped(t: Transport) {
    response_hop_field_is_dropped(t, "Upgrade: h2c\r\n", &["upgrade"]).await;
}

async fn response_proxy_authorization_is_dropped(t: Transport) {
    response_hop_field_is_dropped(
        t,
        "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n",
        &["proxy-authorization"],
    )
    .await;
}

/// The node's `Transfer-Encoding` is its own framing: the client gets the
/// body framed once, by weir, with one `Transfer-Encoding: chunked` (or a
/// length) and never both.
async fn response_transfer_encoding_is_the_gateways_own_framing(t: Transport) {
    let b = RawBackend::start(|_| {
        Answer::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend-Kept: yes\r\n\r\n\
              1\r\no\r\n1\r\nk\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let gw = gateway_to(t, &[b.node()]).await;
    let mut c = Client::connect(&gw).await;
    for round in ["first", "second"] {
        c.send(&get("/te")).await;
        let r = c.response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{round}: {r:?}");
        let codings = r.head.list("transfer-encoding");
        match r.framing {
            Framing::Chunked => assert_eq!(
                codings,
                vec!["chunked"],
                "{round}: one chunked coding, the gateway's: {:?}",
                r.head.headers
            ),
            Framing::ContentLength => assert!(
                codings.is_empty(),
                "{round}: Content-Length and Transfer-Encoding: {:?}",
                r.head.headers
            ),
            other => panic!("{round}: the connection must stay usable, got {other:?}"),
        }
        assert_eq!(
            r.header("x-backend-kept"),
            Some("yes"),
            "{:?}",
            r.head.headers
        );
    }
}

every_transport!(
    request_field_named_by_connection_is_dropped,
    request_fields_named_by_two_connection_lines_are_dropped,
    request_fields_named_by_a_connection_listing_nine_are_all_dropped,
    request_keep_alive_is_dropped,
    request_proxy_connection_is_dropped,
    request_te_is_dropped,
    request_trailer_is_dropped,
    request_upgrade_without_connection_upgrade_is_dropped,
    request_proxy_authorization_is_dropped,
    response_field_named_by_connection_is_dropped,
    response_fields_named_by_two_connection_lines_are_dropped,
    response_keep_alive_is_dropped,
    response_proxy_connection_is_dropped,
    response_te_is_dropped,
    response_trailer_is_dropped,
    response_upgrade_without_connection_upgrade_is_dropped,
    response_proxy_authorization_is_dropped,
    response_transfer_encoding_is_the_gateways_own_framing,
);

/// Outside `every_transport!` (the fast path once kept only eight names).
mod response_connection_listing_nine {
    use super::*;

    #[tokio::test]
    async fn plain() {
        response_fields_named_by_a_connection_listing_nine_are_all_dropped(Transport::Plain).await;
    }

    #[tokio::test]
    async fn tls() {
        response_fields_named_by_a_connection_listing_nine_are_all_dropped(Transport::Tls).await;
    }

    #[tokio::test]
    async fn plain_general() {
        response_fields_named_by_a_connection_listing_nine_are_all_dropped(Transport::PlainGeneral)
            .await;
    }
}
