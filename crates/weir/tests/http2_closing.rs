//! HTTP/2 connections that weir is closing are gone within a bounded grace
//! whatever the client does (docs/operations.md, "Hostile clients"): an
//! idle connection gets GOAWAY and a PING after `http.header_timeout`, and
//! is dropped `http.header_timeout` later even when the client never
//! answers the PING, or left a header block unfinished (HEADERS without
//! END_HEADERS, then nothing). Raw frames, over h2c (prior knowledge) and
//! h2 over TLS (ALPN).

mod common;

use std::time::Duration;

use common::hostile::*;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsConnector;

/// Bound on the whole of a case: 1 s idle + 1 s grace, with room to spare.
const BOUND: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2 {
    Cleartext,
    Tls,
}

/// A gateway with `http.header_timeout` 1 s on a listener for `h2`, and
/// what a client needs to reach it.
struct Setup {
    gateway: weir::Gateway,
    connector: Option<TlsConnector>,
    _cert: Option<TestCert>,
}

async fn setup(h2: H2) -> Setup {
    let mut config = serde_json::json!({
        "gateway": {
            "listeners": [{"address": "127.0.0.1:0", "tls": h2 == H2::Tls}],
            "http": {"header_timeout": 1},
        },
    });
    let cert = (h2 == H2::Tls).then(TestCert::new);
    if let Some(c) = &cert {
        config["ssls"] = c.ssls();
    }
    Setup {
        gateway: common::gateway(&config.to_string()).await,
        connector: cert.as_ref().map(|c| c.connector(b"h2")),
        _cert: cert,
    }
}

async fn connect(s: &Setup) -> RawH2 {
    let tcp = timeout(BOUND, TcpStream::connect(s.gateway.proxy_addr()))
        .await
        .expect("connect timed out")
        .expect("connect");
    RawH2::start(maybe_tls(tcp, s.connector.as_ref(), b"h2").await).await
}

/// When the first frame of `kind` came, if one did.
fn first(seen: &[(u8, Duration)], kind: u8) -> Option<Duration> {
    seen.iter().find(|(k, _)| *k == kind).map(|(_, at)| *at)
}

/// The case: 2,000 such connections were all still open at 70 s.
async fn a_closing_connection_whose_client_never_answers_the_ping_is_dropped(h2: H2) {
    let s = setup(h2).await;
    let started = Instant::now();
    let mut c = connect(&s).await;
    let seen = timeout(
        BOUND,
        frames_until_closed(&mut c, Answers::Settings, started),
    )
    .await
    .unwrap_or_else(|_| panic!("{h2:?}: the connection is still open after {BOUND:?}"));
    let closed = started.elapsed();
    let goaway = first(&seen, GOAWAY).unwrap_or_else(|| panic!("{h2:?}: no GOAWAY in {seen:?}"));
    assert!(first(&seen, PING).is_some(), "{h2:?}: no PING in {seen:?}");
    assert!(
        goaway >= Duration::from_millis(800),
        "{h2:?}: GOAWAY after {goaway:?}, before the 1 s idle limit"
    );
    // The client had the grace (a header timeout) to answer.
    assert!(
        closed >= goaway + Duration::from_millis(500),
        "{h2:?}: dropped {:?} after GOAWAY, without the grace",
        closed - goaway
    );
}

/// HEADERS without END_HEADERS: the gateway waits for a CONTINUATION that
/// never comes; no request is in flight, so the connection is idle, closing,
/// then dropped like any other.
async fn a_header_block_never_finished_does_not_hold_the_connection(h2: H2) {
    let s = setup(h2).await;
    let started = Instant::now();
    let mut c = connect(&s).await;
    c.settle().await;
    // `:method GET`, `:scheme http`, `:path /` (HPACK static table), on
    // stream 1, END_STREAM but not END_HEADERS. Nothing follows, not even
    // an acknowledgement (any frame but CONTINUATION would be a protocol
    // error the gateway closes on at once).
    c.send(HEADERS, END_STREAM, 1, &[0x82, 0x86, 0x84])
        .await
        .expect("send HEADERS");
    let seen = timeout(
        BOUND,
        frames_until_closed(&mut c, Answers::Nothing, started),
    )
    .await
    .unwrap_or_else(|_| panic!("{h2:?}: the connection is still open after {BOUND:?}"));
    assert!(
        !seen.iter().any(|(k, _)| *k == HEADERS),
        "{h2:?}: an unfinished header block was answered: {seen:?}"
    );
}

#[tokio::test]
async fn h2c_a_closing_connection_whose_client_never_answers_the_ping_is_dropped() {
    a_closing_connection_whose_client_never_answers_the_ping_is_dropped(H2::Cleartext).await;
}

#[tokio::test]
async fn h2_tls_a_closing_connection_whose_client_never_answers_the_ping_is_dropped() {
    a_closing_connection_whose_client_never_answers_the_ping_is_dropped(H2::Tls).await;
}

#[tokio::test]
async fn h2c_a_header_block_never_finished_does_not_hold_the_connection() {
    a_header_block_never_finished_does_not_hold_the_connection(H2::Cleartext).await;
}

#[tokio::test]
async fn h2_tls_a_header_block_never_finished_does_not_hold_the_connection() {
    a_header_block_never_finished_does_not_hold_the_connection(H2::Tls).await;
}
