//! The HTTP/2 client connection preface on a connection that negotiated
//! `h2` by ALPN: read and checked before hyper's HTTP/2 server takes the
//! connection, so that anything else (HTTP/1.1 bytes, garbage) gets the
//! GOAWAY(PROTOCOL_ERROR) RFC 9113 §3.4 asks for instead of a silent close.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::buf::ClientStream;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How the preface read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// The bytes read so far are the preface (all of it).
    Valid,
    /// A byte differs from the preface.
    Invalid,
    /// The client closed, failed, or did not send it within the header
    /// timeout.
    Gone,
}

/// Reads the preface into `prefix` (which may already hold some of the
/// connection's first bytes), within `limit`.
pub async fn read<S: ClientStream>(
    stream: &mut S,
    prefix: &mut Vec<u8>,
    limit: Duration,
) -> Preface {
    let reading = async {
        loop {
            let n = prefix.len().min(PREFACE.len());
            if prefix[..n] != PREFACE[..n] {
                return Preface::Invalid;
            }
            if n == PREFACE.len() {
                return Preface::Valid;
            }
            let mut more = [0u8; PREFACE.len()];
            match stream.read(&mut more[..PREFACE.len() - n]).await {
                Ok(0) | Err(_) => return Preface::Gone,
                Ok(got) => prefix.extend_from_slice(&more[..got]),
            }
        }
    };
    tokio::time::timeout(limit, reading)
        .await
        .unwrap_or(Preface::Gone)
}

/// The server's side of a refused preface: an empty SETTINGS frame (the
/// server preface) and GOAWAY(last stream 0, PROTOCOL_ERROR), then the
/// connection is closed; the writes bounded by `limit`.
pub async fn refuse<S: ClientStream>(stream: &mut S, limit: Duration) {
    const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    const GOAWAY: [u8; 17] = [
        0, 0, 8, 0x7, 0, 0, 0, 0, 0, // 8 bytes, GOAWAY, no flags, stream 0
        0, 0, 0, 0, // last stream id
        0, 0, 0, 1, // PROTOCOL_ERROR
    ];
    let mut out = [0u8; SETTINGS.len() + GOAWAY.len()];
    out[..SETTINGS.len()].copy_from_slice(&SETTINGS);
    out[SETTINGS.len()..].copy_from_slice(&GOAWAY);
    let _ = tokio::time::timeout(limit, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
}
