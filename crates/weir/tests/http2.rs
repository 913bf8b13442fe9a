//! HTTP/2 cleartext (h2c prior knowledge) from clients to HTTP/1.1 backends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Backend;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);

async fn h2c(addr: std::net::SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c prior-knowledge handshake");
    tokio::spawn(conn);
    sender
}

async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    uri: &str,
    body: &'static str,
) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("h2 request timed out")
        .expect("h2 request failed");
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn route_all(b: &Backend) -> String {
    format!(
        "routes:\n  - {{id: all, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        b.node()
    )
}

#[tokio::test]
async fn h2c_prior_knowledge_to_http1_backend_returns_status_headers_and_body() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&route_all(&b)).await;
    let addr = gw.proxy_addr();
    let mut s = h2c(addr).await;

    let (status, headers, body) = call(&mut s, "GET", &format!("http://{addr}/hello"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "h1-backend");
    assert_eq!(headers.get("x-backend").unwrap(), "h1-backend");
    assert!(
        headers.get("connection").is_none() && headers.get("transfer-encoding").is_none(),
        "no HTTP/1.1 connection-specific headers on an h2 response: {headers:?}"
    );

    let (status, _, body) = call(&mut s, "GET", &format!("http://{addr}/status/418"), "").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(body, "h1-backend");

    // A request body crosses from h2 DATA frames to an HTTP/1.1 body.
    let (status, _, body) = call(
        &mut s,
        "POST",
        &format!("http://{addr}/upload"),
        "twelve bytes",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "12");
    assert_eq!(b.hits(), 3);
}

/// A node that holds every `/gate` request until `gate` of them are in at
/// once, then answers them all `gate`; `/bytes/{n}` streams n bytes at once.
/// Returns its address and the number of requests it received.
async fn gated_node(gate: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(gate));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (hits, barrier) = (counted.clone(), barrier.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (hits, barrier) = (hits.clone(), barrier.clone());
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().path();
                        let body = match path.strip_prefix("/bytes/") {
                            Some(n) => common::stream_bytes(n.parse().unwrap_or(0)),
                            None => {
                                barrier.wait().await;
                                common::body("gate")
                            }
                        };
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// 100 streams on one connection, half of them held at the node until all 50
/// are there at once: they only complete if the gateway serves the streams
/// of a connection concurrently (served one by one, the first would wait at
/// the gate forever and time out after `STEP`).
#[tokio::test]
async fn h2c_streams_of_one_connection_reach_the_node_concurrently_and_all_succeed() {
    const STREAMS: usize = 100;
    let (node, hits) = gated_node(STREAMS / 2).await;
    let gw = common::gateway(&format!(
        "routes:\n  - {{id: all, uri: \"/*\", upstream: {{nodes: {{\"{node}\": 1}}}}}}\n"
    ))
    .await;
    let addr = gw.proxy_addr();
    let s = h2c(addr).await;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let mut s = s.clone();
            tokio::spawn(async move {
                let path = if i % 2 == 0 {
                    format!("http://{addr}/gate")
                } else {
                    format!("http://{addr}/bytes/{}", 100_000 + i)
                };
                let (status, _, body) = call(&mut s, "GET", &path, "").await;
                (i, status, body.len())
            })
        })
        .collect();
    for t in tasks {
        let (i, status, len) = t.await.expect("stream task");
        assert_eq!(status, StatusCode::OK, "stream {i}");
        let want = if i % 2 == 0 {
            "gate".len()
        } else {
            100_000 + i
        };
        assert_eq!(len, want, "stream {i} body length");
    }
    assert_eq!(hits.load(Ordering::SeqCst), STREAMS);
}

#[tokio::test]
async fn h2c_authority_is_the_host_for_routing_and_is_passed_to_the_backend() {
    let shop = Backend::start("shop").await;
    let other = Backend::start("other").await;
    let yaml = format!(
        "routes:\n  - {{id: shop, host: shop.test, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n  - {{id: other, uri: \"/*\", upstream: {{nodes: {{\"{}\": 1}}}}}}\n",
        shop.node(),
        other.node()
    );
    let gw = common::gateway(&yaml).await;
    let mut s = h2c(gw.proxy_addr()).await;
    let (status, headers, body) = call(&mut s, "GET", "http://shop.test:8080/headers", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("x-backend").unwrap(),
        "shop",
        ":authority picks the route"
    );
    let seen: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(seen["host"], "shop.test:8080", "Host from :authority");
    assert_eq!(seen["x-forwarded-host"], "shop.test:8080");
    assert_eq!(seen["x-forwarded-proto"], "http");

    let (_, headers, _) = call(&mut s, "GET", "http://elsewhere.test/headers", "").await;
    assert_eq!(headers.get("x-backend").unwrap(), "other");
}

/// A node whose answer to any request is a body of `CHUNKS` chunks sent
/// `GAP` apart: a response that stays in flight for a while.
async fn dripping_node() -> std::net::SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    const CHUNKS: u32 = 5;
    const GAP: Duration = Duration::from_millis(400);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let chunks = futures::stream::unfold(0u32, |i| async move {
                        if i == CHUNKS {
                            return None;
                        }
                        tokio::time::sleep(GAP).await;
                        let frame = Frame::data(Bytes::from_static(b"drip\n"));
                        Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(chunks)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

const IDLE_LIMIT: &str = "gateway:\n  http: {header_timeout: 1}\n";

#[tokio::test]
async fn h2c_connection_idle_for_the_keep_alive_limit_is_closed() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&format!("{IDLE_LIMIT}{}", route_all(&b))).await;
    let tcp = TcpStream::connect(gw.proxy_addr()).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    let conn = tokio::spawn(conn);
    let (status, _, _) = call(&mut sender, "GET", "http://t/hello", "").await;
    assert_eq!(status, StatusCode::OK);
    let answered = Instant::now();
    // The gateway sends GOAWAY and closes; the client's connection task ends.
    let ended = tokio::time::timeout(STEP, conn).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection stayed open past {STEP:?} with a 1 s limit"
    );
    assert!(
        answered.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the 1 s idle limit",
        answered.elapsed()
    );
}

#[tokio::test]
async fn h2c_connection_with_a_response_still_streaming_is_not_idle() {
    let node = dripping_node().await;
    let yaml = format!(
        "{IDLE_LIMIT}routes:\n  - {{id: drip, uri: \"/*\", upstream: {{nodes: {{\"{node}\": 1}}}}}}\n"
    );
    let gw = common::gateway(&yaml).await;
    let mut s = h2c(gw.proxy_addr()).await;
    // The body takes ~2 s, twice the idle limit, with no other request.
    let started = Instant::now();
    let (status, _, body) = call(&mut s, "GET", "http://t/drip", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "drip\n".repeat(5));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // Had the connection been judged idle mid-body, it would have sent
    // GOAWAY and this next stream would be refused.
    let (status, _, body) = call(&mut s, "GET", "http://t/drip", "").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "second stream on the same connection"
    );
    assert_eq!(body, "drip\n".repeat(5));
}

/// Writes the HTTP/2 connection preface and an empty SETTINGS frame on
/// `io`, then reads what comes back until the gateway closes the
/// connection (or 5 s pass).
async fn send_preface<S>(mut io: S) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write the preface");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut got)).await;
    got
}

/// `http2: false` switches HTTP/2 off on a plain listener, on the fast path
/// and on the general path: a client that sends the preface anyway is
/// refused (the connection closed without an HTTP/2 frame, as hyper's
/// HTTP/1.1 server does with a preface), and HTTP/1.1 still works.
#[tokio::test]
async fn a_plain_listener_with_http2_off_refuses_the_http2_preface() {
    let b = Backend::start("h1-backend").await;
    for fast_path in [true, false] {
        let gw = common::gateway(&format!(
            "gateway:\n  listeners: [{{address: \"127.0.0.1:0\", http2: false}}]\n  http: {{fast_path: {fast_path}}}\n{}",
            route_all(&b)
        ))
        .await;
        let tcp = TcpStream::connect(gw.proxy_addr()).await.expect("connect");
        let got = send_preface(tcp).await;
        // An HTTP/2 server's first frame is its SETTINGS (type 4).
        let h2_frame = got.len() >= 9 && got[3] == 4;
        assert!(
            !h2_frame && (got.is_empty() || got.starts_with(b"HTTP/1.1 ")),
            "fast_path {fast_path}: HTTP/2 was served: {:?}",
            String::from_utf8_lossy(&got)
        );
        let reply = common::get(gw.proxy_addr(), None, "/hello").await;
        assert_eq!(reply.status, StatusCode::OK, "fast_path {fast_path}");
    }
}

/// On a plain listener the fast path recognises the h2c preface and hands
/// the connection to the HTTP/2 server directly: a preface cut short by a
/// wrong byte gets GOAWAY(PROTOCOL_ERROR) (RFC 9113 §3.4), as over TLS
/// with ALPN `h2`, not a silent close; the listener still serves h2c.
#[tokio::test]
async fn a_broken_h2c_preface_gets_goaway_protocol_error() {
    use common::hostile::RawH2;
    const GOAWAY: u8 = 7;
    let b = Backend::start("h2c-backend").await;
    let gw = common::gateway(&format!(
        "gateway:\n  listeners: [{{address: \"127.0.0.1:0\", http2: true}}]\n{}",
        route_all(&b)
    ))
    .await;
    let tcp = TcpStream::connect(gw.proxy_addr()).await.expect("connect");
    let mut h2 = RawH2::without_preface(Box::new(tcp));
    h2.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r")
        .await
        .expect("write the broken preface");
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(STEP, async {
        while let Some(f) = h2.frame().await {
            frames.push(f);
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {STEP:?}: {frames:?}");
    let goaway = frames
        .iter()
        .find(|f| f.kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY in {frames:?}"));
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().expect("error code"));
    assert_eq!((goaway.stream, code), (0, 1), "{goaway:?}");
    let mut sender = h2c(gw.proxy_addr()).await;
    let (status, _, _) = call(&mut sender, "GET", "http://t/after", "").await;
    assert_eq!(status, StatusCode::OK);
}

/// `TRACE` over HTTP/2 is refused with 405, as over HTTP/1.1; the node
/// never sees it.
#[tokio::test]
async fn trace_over_http2_gets_405() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&route_all(&b)).await;
    let addr = gw.proxy_addr();
    let mut s = h2c(addr).await;
    let (status, _, body) = call(&mut s, "TRACE", &format!("http://{addr}/a"), "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(body.contains("405 Method Not Allowed"), "{body}");
    let (status, _, _) = call(&mut s, "GET", &format!("http://{addr}/hello"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.hits(), 1, "the node saw the TRACE");
}

/// Userinfo in `:authority` is refused with 400 (RFC 9110 §4.2.4); the
/// node never sees the request.
#[tokio::test]
async fn userinfo_in_the_authority_gets_400_over_http2() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&route_all(&b)).await;
    let addr = gw.proxy_addr();
    let mut s = h2c(addr).await;
    let (status, _, body) = call(&mut s, "GET", &format!("http://user:pw@{addr}/a"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = call(&mut s, "GET", &format!("http://{addr}/hello"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.hits(), 1, "the node saw the request with userinfo");
}

/// A GET of `uri` with these header fields (repeats kept), within [`STEP`].
async fn get_with(
    sender: &mut SendRequest<Full<Bytes>>,
    uri: &str,
    fields: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let mut req = Request::builder().method("GET").uri(uri);
    for (name, value) in fields {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("h2 request timed out")
        .expect("h2 request failed")
}

/// HTTP/2 splits cookies into several `cookie` fields; the HTTP/1.1 node
/// gets them as one `Cookie` line joined with `; ` (RFC 9113 §8.2.3).
#[tokio::test]
async fn http2_cookie_fields_reach_the_node_as_one_line() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&route_all(&b)).await;
    let addr = gw.proxy_addr();
    let mut s = h2c(addr).await;
    let resp = get_with(
        &mut s,
        &format!("http://{addr}/headers"),
        &[("cookie", "a=1"), ("cookie", "b=2")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let seen: serde_json::Value =
        serde_json::from_slice(&body).expect("JSON of the node's headers");
    assert_eq!(seen["cookie"], "a=1; b=2", "{seen}");
}

/// A `host` field naming another authority than `:authority` is refused
/// with 400 (nginx refuses it too); the node never sees it.
#[tokio::test]
async fn a_host_that_disagrees_with_the_authority_gets_400_over_http2() {
    let b = Backend::start("h1-backend").await;
    let gw = common::gateway(&route_all(&b)).await;
    let addr = gw.proxy_addr();
    let mut s = h2c(addr).await;
    let resp = get_with(
        &mut s,
        &format!("http://{addr}/a"),
        &[("host", "other.example")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(b.hits(), 0, "the node saw it");
}
