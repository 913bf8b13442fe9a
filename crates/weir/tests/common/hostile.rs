//! Kit of the hostile-client tests (`client_timeouts.rs`, `send_timeout.rs`,
//! `http2_closing.rs`): an access log in a temporary file to read lines
//! from, a client socket with a tiny receive window, and raw HTTP/2 frames
//! over cleartext or TLS (ALPN `h2`).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::wire::{ClientIo, IO_TIMEOUT, TLS_NAME};

// ---------------------------------------------------------------------------
// The access log, in a file.
// ---------------------------------------------------------------------------

/// An access log file in a directory of its own.
pub struct LogFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl LogFile {
    pub fn new() -> LogFile {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("access.log");
        LogFile { _dir: dir, path }
    }

    /// `{"path": ...}`, for `gateway.access_log`.
    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({"path": self.path.to_str().expect("UTF-8 temporary path")})
    }

    /// The first line containing every one of `needles`, waiting (at most
    /// 10 s) for the log to be flushed.
    pub async fn line_with(&self, needles: &[&str]) -> String {
        let found = timeout(Duration::from_secs(10), async {
            loop {
                let text = std::fs::read_to_string(&self.path).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                    return line.to_owned();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        match found {
            Ok(line) => line,
            Err(_) => panic!(
                "no access log line with {needles:?}; the log: {:?}",
                std::fs::read_to_string(&self.path).unwrap_or_default()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// A client that takes (almost) nothing.
// ---------------------------------------------------------------------------

/// A TCP connection to `addr` whose receive buffer is a few KiB, with a
/// 1 KiB segment size (on loopback the default, 64 KiB, lets the sender's
/// buffer start at over a megabyte): a client that stops reading stops the
/// sender after a few dozen KiB.
pub async fn tiny_window_tcp(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4 * 1024)
        .expect("set the receive buffer");
    socket2::SockRef::from(&socket)
        .set_tcp_mss(1024)
        .expect("set the segment size");
    let tcp = timeout(IO_TIMEOUT, socket.connect(addr))
        .await
        .expect("connect to the gateway timed out")
        .expect("connect to the gateway");
    tcp.set_nodelay(true).expect("set_nodelay");
    tcp
}

// ---------------------------------------------------------------------------
// TLS with ALPN of the test's choice.
// ---------------------------------------------------------------------------

/// A self-signed certificate for [`TLS_NAME`], its files, and a client
/// configuration trusting exactly it.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()])
            .expect("generate a certificate");
        let dir = tempfile::tempdir().expect("temporary directory");
        let cert_file = dir.path().join("hostile.crt");
        let key_file = dir.path().join("hostile.key");
        std::fs::write(&cert_file, ck.cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, ck.signing_key.serialize_pem()).expect("write the key");
        TestCert {
            dir,
            cert_file,
            key_file,
            der: ck.cert.der().clone(),
        }
    }

    /// The gateway's `ssls` for it.
    pub fn ssls(&self) -> serde_json::Value {
        serde_json::json!([{
            "id": "hostile",
            "sni": TLS_NAME,
            "cert_file": self.cert_file.to_str().expect("UTF-8 temporary path"),
            "key_file": self.key_file.to_str().expect("UTF-8 temporary path"),
        }])
    }

    /// A connector trusting the certificate, offering `alpn`.
    pub fn connector(&self, alpn: &[u8]) -> TlsConnector {
        self.connector_offering(&[alpn])
    }

    /// A connector trusting the certificate, offering every protocol in
    /// `alpn` (none at all when empty: no ALPN extension).
    pub fn connector_offering(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust the certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(cfg))
    }
}

/// `tcp`, TLS-wrapped by `connector` when there is one; asserts the
/// negotiated ALPN protocol is `alpn`.
pub async fn maybe_tls(
    tcp: TcpStream,
    connector: Option<&TlsConnector>,
    alpn: &[u8],
) -> Box<dyn ClientIo> {
    let Some(connector) = connector else {
        return Box::new(tcp);
    };
    let name = ServerName::try_from(TLS_NAME).expect("TLS server name");
    let tls = timeout(IO_TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    Box::new(tls)
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 frames.
// ---------------------------------------------------------------------------

/// Frame types (RFC 9113 §6).
pub const HEADERS: u8 = 0x1;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
/// Flags.
pub const ACK: u8 = 0x1;
pub const END_STREAM: u8 = 0x1;

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// An HTTP/2 connection driven frame by frame.
pub struct RawH2 {
    io: Box<dyn ClientIo>,
    buf: Vec<u8>,
}

impl RawH2 {
    /// Sends the client preface and an empty SETTINGS frame on `io`.
    pub async fn start(io: Box<dyn ClientIo>) -> RawH2 {
        let mut h2 = RawH2 {
            io,
            buf: Vec::new(),
        };
        h2.write_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write the preface");
        h2.send(SETTINGS, 0, 0, &[]).await.expect("write SETTINGS");
        h2
    }

    /// Reads frames from `io` without sending the client preface (the test
    /// writes what it likes with [`RawH2::write_raw`]).
    pub fn without_preface(io: Box<dyn ClientIo>) -> RawH2 {
        RawH2 {
            io,
            buf: Vec::new(),
        }
    }

    /// The bytes received and not yet read as frames.
    pub fn unread(&self) -> &[u8] {
        &self.buf
    }

    /// Writes `bytes` as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = timeout(IO_TIMEOUT, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await;
        written.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "write")))
    }

    /// Writes one frame.
    pub async fn send(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let len = u32::try_from(payload.len()).expect("frame length");
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        self.write_raw(&out).await
    }

    /// The next frame; None at the end of the stream (or a reset, or a
    /// TLS stream cut without close_notify: the connection is gone).
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9).collect();
                    let payload = self.buf.drain(..len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: stream & 0x7fff_ffff,
                        payload,
                    });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// What a raw client answers while it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// Nothing at all.
    Nothing,
    /// SETTINGS acknowledged, PINGs not.
    Settings,
}

impl RawH2 {
    /// Reads until the gateway's SETTINGS and acknowledges them.
    pub async fn settle(&mut self) {
        while let Some(f) = self.frame().await {
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                self.send(SETTINGS, ACK, 0, &[])
                    .await
                    .expect("ack SETTINGS");
                return;
            }
        }
        panic!("the gateway closed the connection before its SETTINGS");
    }
}

/// Reads frames until the connection ends, answering what `answers` says.
/// Returns the types of the frames seen, in order, each with when it came
/// (from `since`).
pub async fn frames_until_closed(
    h2: &mut RawH2,
    answers: Answers,
    since: tokio::time::Instant,
) -> Vec<(u8, Duration)> {
    let mut seen = Vec::new();
    while let Some(f) = h2.frame().await {
        seen.push((f.kind, since.elapsed()));
        if f.kind == SETTINGS && f.flags & ACK == 0 && answers == Answers::Settings {
            let _ = h2.send(SETTINGS, ACK, 0, &[]).await;
        }
    }
    seen
}
