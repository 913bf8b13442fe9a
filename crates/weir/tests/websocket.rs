//! WebSocket upgrades through the gateway, only on routes that enable them.

mod common;

use std::time::Duration;

use common::Backend;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::{self, Message};

const STEP: Duration = Duration::from_secs(10);

fn yaml(b: &Backend) -> String {
    format!(
        r#"
routes:
  - {{id: ws, uri: /ws, enable_websocket: true, upstream: {{nodes: {{"{n}": 1}}}}}}
  - {{id: plain, uri: /headers, upstream: {{nodes: {{"{n}": 1}}}}}}
  - {{id: plain-ws-path, uri: /ws, host: no-ws.test, upstream: {{nodes: {{"{n}": 1}}}}}}
"#,
        n = b.node()
    )
}

#[tokio::test]
async fn websocket_upgrade_on_enabled_route_echoes_text_and_binary_messages() {
    let b = Backend::start("ws").await;
    let gw = common::gateway(&yaml(&b)).await;
    let url = format!("ws://{}/ws", gw.proxy_addr());
    let (mut ws, resp) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timed out")
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers().get("x-backend").unwrap(), "ws");

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let messages = vec![
        Message::text("hello through weir"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("ünïcödé ✓"),
        Message::binary(big),
    ];
    for m in messages {
        ws.send(m.clone()).await.expect("send");
        let echoed = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("echo timed out")
            .expect("stream ended")
            .expect("read");
        assert_eq!(echoed, m);
    }
    ws.close(None).await.expect("close");
    assert_eq!(b.hits(), 1, "one upgrade request, then frames only");
}

#[tokio::test]
async fn route_without_enable_websocket_forwards_without_upgrade_headers() {
    let b = Backend::start("ws").await;
    let gw = common::gateway(&yaml(&b)).await;
    let req = http::Request::get(format!("http://{}/headers", gw.proxy_addr()))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(common::empty())
        .unwrap();
    let resp = tokio::time::timeout(STEP, common::client().request(req))
        .await
        .expect("timed out")
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "not 101");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(seen.get("upgrade").is_none(), "Upgrade removed: {seen}");
    assert!(
        seen.get("connection").is_none(),
        "Connection removed: {seen}"
    );
}

async fn ws_handshake(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Result<http::Response<Option<Vec<u8>>>, StatusCode> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{host}:{}{path}",
        addr.port()
    ))
    .unwrap();
    let result = tokio::time::timeout(STEP, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("handshake attempt timed out");
    match result {
        Ok((_, resp)) => Ok(resp),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status()),
        Err(e) => panic!("expected an HTTP response, got {e}"),
    }
}

#[tokio::test]
async fn websocket_client_is_refused_on_route_without_enable_websocket() {
    let b = Backend::start("ws").await;
    let gw = common::gateway(&yaml(&b)).await;
    // The request reaches the node as a plain GET, which answers 200: no upgrade.
    match ws_handshake(gw.proxy_addr(), "127.0.0.1", "/headers").await {
        Ok(resp) => panic!(
            "upgrade went through a route without enable_websocket: {}",
            resp.status()
        ),
        Err(status) => assert_eq!(status, StatusCode::OK),
    }
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn unsolicited_101_from_node_is_not_relayed_on_route_without_enable_websocket() {
    let b = Backend::start("ws").await;
    let gw = common::gateway(&yaml(&b)).await;
    // The test backend's /ws answers 101 even to a request without Upgrade
    // (as a misbehaving node would); weir stripped Upgrade, so it must not
    // pass the switch on to the client.
    match ws_handshake(gw.proxy_addr(), "no-ws.test", "/ws").await {
        Ok(resp) => panic!(
            "upgrade went through a route without enable_websocket: {}",
            resp.status()
        ),
        Err(status) => assert_ne!(status, StatusCode::SWITCHING_PROTOCOLS),
    }
}
