//! `examples/traffic-policy.yaml` behaves as its comments say: loaded as it
//! is, with only its node addresses and listener replaced by test ones.

mod common;

use common::get;
use common::wire::{Answer, RawBackend};
use http::StatusCode;
use http_body_util::BodyExt;

/// A GET with one extra header field.
async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    field: (&str, &str),
) -> (StatusCode, String) {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header(field.0, field.1)
        .body(common::empty())
        .expect("request");
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        common::client().request(req),
    )
    .await
    .expect("timed out")
    .expect("request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A node answering its name and the target it received.
async fn named(name: &'static str) -> RawBackend {
    RawBackend::start(move |seen| {
        let body = format!("{name} {}", seen.target);
        Answer::Send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    })
    .await
}

#[tokio::test]
async fn the_traffic_policy_example_does_what_it_says() {
    let (v1, v2) = (named("v1").await, named("v2").await);
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/traffic-policy.yaml"
    );
    let text = std::fs::read_to_string(file)
        .expect("read the example")
        .replace("10.0.7.10:8080", &v1.node())
        .replace("10.0.7.20:8080", &v2.node())
        .replace("127.0.0.1:9080", "127.0.0.1:0");
    let gw = common::gateway(&text).await;
    let addr = gw.proxy_addr();

    // Canary by header.
    let (_, body) = get_with(addr, "/shop/cart", ("x-canary", "on")).await;
    assert_eq!(body, "v2 /shop/cart");
    // 10% by weight: of 20 requests exactly 2 go to v2 (smooth weighted
    // round robin).
    let mut to_v2 = 0;
    for _ in 0..20 {
        if get(addr, None, "/shop/items").await.body.starts_with("v2") {
            to_v2 += 1;
        }
    }
    assert_eq!(to_v2, 2);
    // The legacy path is rewritten.
    let r = get(addr, None, "/legacy/items/42").await;
    assert_eq!(r.body, "v1 /shop/items?id=42");
    // Chaos only for requests that ask for it.
    for _ in 0..20 {
        assert_eq!(get(addr, None, "/chaos/x").await.status, StatusCode::OK);
    }
    let mut injected = 0;
    for _ in 0..100 {
        let (status, body) = get_with(addr, "/chaos/x", ("x-chaos", "on")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body, "injected fault\n");
            injected += 1;
        }
    }
    assert!((25..=75).contains(&injected), "{injected} of 100");
    // The limit: 100 a minute per client on /shop (21 used above).
    let mut statuses = Vec::new();
    for _ in 0..80 {
        statuses.push(get(addr, None, "/shop/items").await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 79);
    let last = get(addr, None, "/shop/items").await;
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(last.body, r#"{"error_msg":"too many requests, slow down"}"#);
}
