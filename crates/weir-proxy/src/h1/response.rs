//! Reading a node's response head and writing the one the client gets.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::SystemTime;

use weir_http::fields::{self, classify, Field, NamedFields};
use weir_http::RawResponseHead;

use super::request::{parse_length, trim, MAX_HEADERS};
use super::BodyFraming;
use crate::plugin_run::ResponsePlugins;
use weir_plugin::BodyFilters;

/// What the node's bytes so far amount to.
pub enum ResponseHead {
    /// Not complete yet.
    Partial,
    /// Not a usable response (502).
    Invalid(&'static str),
    /// A complete head; the client's head was written to `out`.
    Ready(Response),
}

/// A parsed response head.
#[derive(Debug)]
pub struct Response {
    /// Bytes of the head in the read buffer.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub body: BodyFraming,
    /// The node keeps the connection open after this response.
    pub node_keeps_alive: bool,
    /// The client connection must close after this response.
    pub close_client: bool,
    /// The status the client gets (the node's, or what a plugin set).
    pub client_status: u16,
    /// How the body reaches the client.
    pub sink: BodySink,
}

/// What becomes of the node's response body on its way to the client.
#[derive(Debug)]
pub enum BodySink {
    /// Relayed byte for byte, in the node's framing.
    Pass,
    /// Through the plugins' body filters, re-framed as chunked.
    Filter(BodyFilters),
    /// Read and dropped: the client's status carries no body (a plugin
    /// turned the answer into a 204 or 304).
    Discard,
}

impl Response {
    /// An interim (1xx) response: another head follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses the response head at the start of `buf`; on success writes the
/// client's head (hop-by-hop fields removed, framing, `Via`, `Date` and
/// `Connection: close` as needed) to `out`.
///
/// `head_request`: the request was HEAD (no body follows whatever the head
/// says). `close_client`: the client connection closes after this exchange
/// anyway (the client asked, or weir is draining). `plugins`: the route's
/// response-side edits and response-headers phase, if it has plugins.
pub fn parse(
    buf: &[u8],
    head_request: bool,
    close_client: bool,
    via: bool,
    plugins: Option<&ResponsePlugins<'_>>,
    out: &mut Vec<u8>,
) -> ResponseHead {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= super::buf::MAX_HEAD => {
            return ResponseHead::Invalid("response head too large")
        }
        Ok(httparse::Status::Partial) => return ResponseHead::Partial,
        Err(_) => return ResponseHead::Invalid("malformed response head"),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return ResponseHead::Invalid("malformed status line");
    };
    if status == 101 {
        return ResponseHead::Invalid("unsolicited 101 Switching Protocols");
    }
    let interim = (100..200).contains(&status);

    let mut close_token = false;
    let mut keep_alive_token = false;
    let mut named = NamedFields::default();
    let mut lengths: Option<u64> = None;
    let mut length_conflict = false;
    let mut codings = 0;
    let mut last_chunked = false;
    let mut has_date = false;
    for h in resp.headers.iter() {
        match classify(h.name) {
            Field::Connection => {
                // Split on bytes: one non-UTF-8 token must not hide the
                // others (a `close`, or a field to remove).
                let tokens = h.value.split(|b| *b == b',').map(trim);
                for token in tokens.filter(|t| !t.is_empty()) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close_token = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_token = true;
                    } else if let Ok(token) = std::str::from_utf8(token) {
                        if !fields::is_connection_option(token) {
                            named.push(token);
                        }
                    }
                }
            }
            Field::ContentLength => match parse_length(h.value) {
                Some(n) if lengths.is_none_or(|l| l == n) => lengths = Some(n),
                _ => length_conflict = true,
            },
            Field::TransferEncoding => {
                codings += 1;
                last_chunked = trim(h.value)
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| trim(c).eq_ignore_ascii_case(b"chunked"));
            }
            Field::Date => has_date = true,
            _ => {}
        }
    }
    // `close` wins over `keep-alive`, whatever their order.
    let node_close = close_token || (version == 0 && !keep_alive_token);
    let no_body = head_request || interim || status == 204 || status == 304;
    // The response-headers phase (final answers only): new status, header
    // edits, body filters.
    let decision = plugins.filter(|_| !interim).map(|p| {
        let view = RawResponseHead {
            status,
            fields: resp.headers,
        };
        p.decide(&view, true)
    });
    let client_status = decision.as_ref().and_then(|d| d.status).unwrap_or(status);
    let status_forbids_body = client_status == 204 || client_status == 304;
    let reframed = decision.as_ref().is_some_and(|d| d.body.is_some()) || status_forbids_body;
    let body = if no_body {
        BodyFraming::Length(0)
    } else if codings > 0 {
        if last_chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        }
    } else if length_conflict {
        return ResponseHead::Invalid("invalid Content-Length");
    } else {
        match lengths {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    };
    let (edits, filters) = match decision {
        Some(d) => (Some(d.edits), d.body),
        None => (None, None),
    };
    let sink = match filters {
        _ if no_body => BodySink::Pass,
        _ if status_forbids_body => BodySink::Discard,
        Some(f) => BodySink::Filter(f),
        None => BodySink::Pass,
    };
    let relayed_as_is = matches!(sink, BodySink::Pass);
    let close_client = close_client || (body == BodyFraming::UntilClose && relayed_as_is);
    let node_keeps_alive = !node_close && body != BodyFraming::UntilClose;

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa_status(client_status));
    out.push(b' ');
    if client_status == status {
        out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    } else {
        let reason = http::StatusCode::from_u16(client_status)
            .ok()
            .and_then(|s| s.canonical_reason());
        out.extend_from_slice(reason.unwrap_or("").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let edits = edits.as_deref().filter(|e| !e.is_empty());
    let dropped = |name: &str| edits.is_some_and(|e| e.drops(name));
    // One Content-Length at most, and none beside Transfer-Encoding or when
    // the node's are invalid or disagree (RFC 9112 §6.2-6.3; a HEAD answer
    // passes its length on, so this matters even without a body).
    let pass_length = codings == 0 && !length_conflict && !reframed;
    let mut length_passed = false;
    for h in resp.headers.iter() {
        let keep = match classify(h.name) {
            // Request-side names mean nothing special in a response.
            Field::Other
            | Field::Date
            | Field::Host
            | Field::Expect
            | Field::XForwardedFor
            | Field::Forwarding => {
                (named.is_empty() || !named.contains(h.name)) && !dropped(h.name)
            }
            Field::ContentLength => pass_length && !std::mem::replace(&mut length_passed, true),
            _ => false,
        };
        if keep {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    let chunked = match sink {
        BodySink::Pass => body == BodyFraming::Chunked && !no_body,
        BodySink::Filter(_) => true,
        BodySink::Discard => false,
    };
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if head_request && !status_forbids_body && ((codings > 0 && last_chunked) || reframed) {
        // A HEAD answer describes the GET answer's framing.
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if via {
        out.extend_from_slice(b"Via: 1.1 weir\r\n");
    }
    if let Some(edits) = edits.filter(|_| !interim) {
        for (name, value) in edits.additions() {
            let name = name.as_str();
            if fields::is_hop_by_hop(name) || classify(name) == Field::ContentLength {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if !interim {
        if !has_date {
            push_date(out);
        }
        if close_client {
            out.extend_from_slice(b"Connection: close\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    ResponseHead::Ready(Response {
        head_len,
        status,
        body,
        node_keeps_alive,
        close_client,
        client_status,
        sink,
    })
}

fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

thread_local! {
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Appends a `Date` field, formatted at most once a second per thread.
pub fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            d.0 = secs;
            d.1.clear();
            d.1.extend_from_slice(b"Date: ");
            d.1.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            d.1.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&d.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(raw: &[u8], head: bool, close: bool) -> (Response, String) {
        let mut out = Vec::new();
        match parse(raw, head, close, false, None, &mut out) {
            ResponseHead::Ready(r) => (r, String::from_utf8(out).unwrap()),
            ResponseHead::Partial => panic!("partial"),
            ResponseHead::Invalid(why) => panic!("invalid: {why}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (r, out) = parse_ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: x\r\n\r\nhello",
            false,
            false,
        );
        assert_eq!(r.body, BodyFraming::Length(5));
        assert!(r.node_keeps_alive && !r.close_client);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: x\r\n\r\n"
        );

        let (r, out) = parse_ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            false,
            false,
        );
        assert_eq!(r.body, BodyFraming::Chunked);
        assert!(!out.contains("Content-Length"), "{out}");
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");

        let (r, out) = parse_ok(b"HTTP/1.1 200 OK\r\n\r\n", false, false);
        assert_eq!(r.body, BodyFraming::UntilClose);
        assert!(r.close_client && !r.node_keeps_alive);
        assert!(out.contains("Connection: close\r\n"), "{out}");

        let (r, _) = parse_ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            true,
            false,
        );
        assert_eq!(r.body, BodyFraming::Length(0));
        let (r, _) = parse_ok(b"HTTP/1.1 304 Not Modified\r\n\r\n", false, false);
        assert_eq!(r.body, BodyFraming::Length(0));
        let (r, _) = parse_ok(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            false,
        );
        assert!(!r.node_keeps_alive);
    }

    #[test]
    fn hop_by_hop_fields_do_not_reach_the_client() {
        let (r, out) = parse_ok(
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
            false,
            false,
        );
        assert!(!r.node_keeps_alive);
        assert!(
            !out.contains("X-Secret") && !out.contains("Keep-Alive"),
            "{out}"
        );
        assert!(
            out.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
            "{out}"
        );
        assert!(out.contains("Date: "), "a Date is added: {out}");
    }

    #[test]
    fn bad_heads_are_refused() {
        let mut out = Vec::new();
        for raw in [
            &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
            b"NOTHTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(matches!(
                parse(raw, false, false, false, None, &mut out),
                ResponseHead::Invalid(_)
            ));
        }
        assert!(matches!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Le",
                false,
                false,
                false,
                None,
                &mut out
            ),
            ResponseHead::Partial
        ));
    }
}
