//! Every client: the three HTTP/1.1 transports of `wire.rs` and HTTP/2
//! (h2c), behind one [`AnyClient`], and `every_client!`, which runs a case
//! once per client. Re-exported by `wire.rs`.

use std::io;

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::wire::{
    eof, invalid, lossy, Client, Head, TestGateway, Transport, IO_TIMEOUT, TLS_NAME,
};

// ---------------------------------------------------------------------------
// Every client: the three HTTP/1.1 transports, and HTTP/2 (h2c).
// ---------------------------------------------------------------------------

/// How a test client speaks to the gateway: HTTP/1.1 byte by byte over one
/// of the [`Transport`]s, or HTTP/2 with prior knowledge (h2c) on a plain
/// listener (hyper's client; weir serves it on its general path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    H1(Transport),
    H2c,
}

impl Via {
    /// The listener the gateway needs for this client.
    pub fn transport(self) -> Transport {
        match self {
            Via::H1(t) => t,
            Via::H2c => Transport::Plain,
        }
    }
}

/// A request for [`AnyClient`]. Without a `Host` field of its own it goes
/// to [`TLS_NAME`] (HTTP/1.1: `Host`; HTTP/2: `:authority`).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    /// Adds a header field (a second call with the same name adds a second
    /// field line).
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    /// The `Host` field given, else [`TLS_NAME`].
    pub fn host(&self) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or(TLS_NAME, |(_, v)| v.as_str())
    }

    /// The request as HTTP/1.1 bytes: the request line, `Host`, the fields,
    /// `Content-Length` when there is a body, the body.
    pub fn to_h1(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method,
            self.path,
            self.host()
        );
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("host") {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A response as [`AnyClient`] read it: the head (names lower-cased) and
/// the whole body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    pub fn text(&self) -> String {
        lossy(&self.body)
    }
}

/// One client connection to the gateway, kept for every request it sends.
pub enum AnyClient {
    H1(Client),
    H2(hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>),
}

impl AnyClient {
    /// A connection to `gw`, whose listener must be `via.transport()`'s.
    pub async fn connect(via: Via, gw: &TestGateway) -> AnyClient {
        match via {
            Via::H1(_) => AnyClient::H1(Client::connect(gw).await),
            Via::H2c => {
                let tcp = timeout(IO_TIMEOUT, TcpStream::connect(gw.proxy_addr()))
                    .await
                    .expect("connect to the gateway timed out")
                    .expect("connect to the gateway");
                let (sender, conn) = timeout(
                    IO_TIMEOUT,
                    hyper::client::conn::http2::handshake(
                        hyper_util::rt::TokioExecutor::new(),
                        hyper_util::rt::TokioIo::new(tcp),
                    ),
                )
                .await
                .expect("h2c handshake timed out")
                .expect("h2c prior-knowledge handshake");
                tokio::spawn(conn);
                AnyClient::H2(sender)
            }
        }
    }

    /// Sends `req` and reads the whole response (none of the body for
    /// `HEAD`); panics on a connection or stream error.
    pub async fn send(&mut self, req: &Req) -> Resp {
        match self.try_send(req).await {
            Ok(r) => r,
            Err(e) => panic!("{} {}: {e}", req.method, req.path),
        }
    }

    /// Like [`AnyClient::send`], with the error (a closed connection, a
    /// reset stream) returned.
    pub async fn try_send(&mut self, req: &Req) -> io::Result<Resp> {
        match self {
            AnyClient::H1(c) => {
                c.send_lenient(&req.to_h1()).await?;
                let r = c
                    .try_response(req.method == "HEAD")
                    .await?
                    .ok_or_else(|| eof("the connection before a response"))?;
                Ok(Resp {
                    status: r.status,
                    head: r.head,
                    body: r.body,
                })
            }
            AnyClient::H2(sender) => {
                let mut b = http::Request::builder()
                    .method(req.method.as_str())
                    .uri(format!("http://{}{}", req.host(), req.path));
                for (n, v) in &req.headers {
                    if !n.eq_ignore_ascii_case("host") {
                        b = b.header(n.as_str(), v.as_str());
                    }
                }
                let request = b
                    .body(http_body_util::Full::new(bytes::Bytes::from(
                        req.body.clone(),
                    )))
                    .map_err(|e| invalid(e.to_string()))?;
                let io_err = |e: hyper::Error| io::Error::other(e.to_string());
                let resp = timeout(IO_TIMEOUT, sender.send_request(request))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "h2 response head"))?
                    .map_err(io_err)?;
                assert_eq!(resp.version(), http::Version::HTTP_2);
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), lossy(v.as_bytes())))
                    .collect();
                let body = timeout(
                    IO_TIMEOUT,
                    http_body_util::BodyExt::collect(resp.into_body()),
                )
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "h2 response body"))?
                .map_err(io_err)?
                .to_bytes()
                .to_vec();
                Ok(Resp {
                    status,
                    head: Head {
                        start: format!("HTTP/2 {status}"),
                        headers,
                    },
                    body,
                })
            }
        }
    }
}

/// For each case `name(via: Via)` at the root of the test file that invokes
/// it, the tests `plain::name`, `tls::name`, `plain_general::name` (the
/// byte-level HTTP/1.1 clients of `every_transport!`) and `h2c::name`.
/// A case may be preceded by `#[every(ATTR)]` (on all four tests), then
/// `#[h2c(ATTR)]` (on the `h2c` test only), e.g. `ignore = "why"`.
#[macro_export]
macro_rules! every_client {
    ($($(#[every($($every:tt)*)])? $(#[h2c($($h2:tt)*)])? $case:ident),* $(,)?) => {
        mod plain {
            $(
                $(#[$($every)*])?
                #[tokio::test]
                async fn $case() {
                    use $crate::common::wire::{Transport, Via};
                    super::$case(Via::H1(Transport::Plain)).await;
                }
            )*
        }

        mod tls {
            $(
                $(#[$($every)*])?
                #[tokio::test]
                async fn $case() {
                    use $crate::common::wire::{Transport, Via};
                    super::$case(Via::H1(Transport::Tls)).await;
                }
            )*
        }

        mod plain_general {
            $(
                $(#[$($every)*])?
                #[tokio::test]
                async fn $case() {
                    use $crate::common::wire::{Transport, Via};
                    super::$case(Via::H1(Transport::PlainGeneral)).await;
                }
            )*
        }

        mod h2c {
            $(
                $(#[$($every)*])?
                $(#[$($h2)*])?
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::common::wire::Via::H2c).await;
                }
            )*
        }
    };
}
