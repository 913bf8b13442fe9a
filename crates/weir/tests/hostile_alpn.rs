//! A TLS connection is served exactly the protocol ALPN negotiated
//! (docs/operations.md, "Hostile clients"): ALPN `h2` followed by anything
//! but the HTTP/2 preface gets GOAWAY(PROTOCOL_ERROR) (RFC 9113 §3.4, h2spec
//! 3.5), never an HTTP/1.1 answer; ALPN `http/1.1`, or no ALPN, followed by
//! the HTTP/2 preface is not served HTTP/2 (a malformed HTTP/1.1 request:
//! 400 or a close). On the fast path and on the general path
//! (`http.fast_path: false`).

mod common;

use std::time::Duration;

use common::hostile::*;
use common::wire::{ClientIo, TLS_NAME};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Bound on every wait of a case.
const BOUND: Duration = Duration::from_secs(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame, as a client sends after the preface.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const PROTOCOL_ERROR: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The HTTP/1.1 fast path serves TLS connections without ALPN `h2`.
    Fast,
    /// `http.fast_path: false`: the general path serves every connection.
    General,
}

struct Setup {
    gateway: weir::Gateway,
    cert: TestCert,
}

/// A TLS listener offering `h2` and `http/1.1`, one route answered by the
/// echo plugin.
async fn setup(path: Path) -> Setup {
    let cert = TestCert::new();
    let config = serde_json::json!({
        "gateway": {
            "listeners": [{"address": "127.0.0.1:0", "tls": true, "http2": true}],
            "http": {"fast_path": path == Path::Fast},
        },
        "ssls": cert.ssls(),
        "routes": [{"id": "echo", "uri": "/*", "plugins": {"echo": {}}}],
    });
    Setup {
        gateway: common::gateway(&config.to_string()).await,
        cert,
    }
}

/// A TLS connection offering `alpn` (nothing when empty); asserts the
/// protocol the gateway chose.
async fn connect(s: &Setup, alpn: &[&[u8]], chosen: Option<&[u8]>) -> Box<dyn ClientIo> {
    let connector: TlsConnector = s.cert.connector_offering(alpn);
    let tcp = timeout(BOUND, TcpStream::connect(s.gateway.proxy_addr()))
        .await
        .expect("connect timed out")
        .expect("connect");
    let name = ServerName::try_from(TLS_NAME).expect("TLS server name");
    let tls = timeout(BOUND, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), chosen, "negotiated ALPN");
    Box::new(tls)
}

/// Everything the gateway sends until it closes (bounded).
async fn read_to_close(io: &mut Box<dyn ClientIo>) -> Vec<u8> {
    let mut got = Vec::new();
    let read = timeout(BOUND, async {
        let mut chunk = [0u8; 4096];
        loop {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection is still open after {BOUND:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

async fn alpn_h2_then_http11_bytes_get_goaway_protocol_error(path: Path) {
    let s = setup(path).await;
    for first in [
        &b"GET / HTTP/1.1\r\nHost: wire.test\r\n\r\n"[..],
        // A preface cut short by a wrong byte at its very end.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r",
    ] {
        let io = connect(&s, &[&b"h2"[..], &b"http/1.1"[..]], Some(&b"h2"[..])).await;
        let mut h2 = RawH2::without_preface(io);
        h2.write_raw(first).await.expect("write the first bytes");
        let mut frames = Vec::new();
        let read = timeout(BOUND, async {
            while let Some(f) = h2.frame().await {
                frames.push(f);
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "{path:?}: still open after {BOUND:?}: {frames:?}"
        );
        assert!(
            !frames.iter().any(|f| f.kind == b'P'),
            "{path:?}: answered as HTTP/1.1: {frames:?}"
        );
        let goaway = frames
            .iter()
            .find(|f| f.kind == GOAWAY)
            .unwrap_or_else(|| panic!("{path:?}: no GOAWAY in {frames:?}"));
        assert_eq!(goaway.stream, 0);
        let code = u32::from_be_bytes(goaway.payload[4..8].try_into().expect("error code"));
        assert_eq!(code, PROTOCOL_ERROR, "{path:?}: {goaway:?}");
        assert!(
            h2.unread().is_empty(),
            "{path:?}: bytes that are no frame: {:?}",
            String::from_utf8_lossy(h2.unread())
        );
    }
    // The listener still serves HTTP/2 and HTTP/1.1 by ALPN.
    let io = connect(&s, &[&b"h2"[..]], Some(&b"h2"[..])).await;
    let mut h2 = RawH2::start(io).await;
    h2.settle().await;
    let mut io = connect(&s, &[&b"http/1.1"[..]], Some(&b"http/1.1"[..])).await;
    io.write_all(b"GET /fine HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write a request");
    let got = read_to_close(&mut io).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200 "),
        "{path:?}: {:?}",
        String::from_utf8_lossy(&got)
    );
}

async fn http2_preface_without_alpn_h2_is_not_served_http2(path: Path) {
    let s = setup(path).await;
    for (offered, chosen) in [
        (&[&b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
        (&[][..], None),
    ] {
        let mut io = connect(&s, offered, chosen).await;
        io.write_all(PREFACE).await.expect("write the preface");
        io.write_all(EMPTY_SETTINGS).await.expect("write SETTINGS");
        let got = read_to_close(&mut io).await;
        let h2_frame = got.len() >= 9 && got[3] == 4;
        assert!(
            !h2_frame && (got.is_empty() || got.starts_with(b"HTTP/1.1 400 ")),
            "{path:?}, ALPN {chosen:?}: HTTP/2 was served (or not a 400): {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

mod fast {
    use super::*;

    #[tokio::test]
    async fn alpn_h2_then_http11_bytes_get_goaway_protocol_error() {
        super::alpn_h2_then_http11_bytes_get_goaway_protocol_error(Path::Fast).await;
    }

    #[tokio::test]
    async fn http2_preface_without_alpn_h2_is_not_served_http2() {
        super::http2_preface_without_alpn_h2_is_not_served_http2(Path::Fast).await;
    }
}

mod general {
    use super::*;

    #[tokio::test]
    async fn alpn_h2_then_http11_bytes_get_goaway_protocol_error() {
        super::alpn_h2_then_http11_bytes_get_goaway_protocol_error(Path::General).await;
    }

    #[tokio::test]
    async fn http2_preface_without_alpn_h2_is_not_served_http2() {
        super::http2_preface_without_alpn_h2_is_not_served_http2(Path::General).await;
    }
}
