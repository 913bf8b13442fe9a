//! What one request leaves for the access log, gathered along the request
//! path, and a per-thread free list so the HTTP/1.1 fast path builds records
//! without allocating once warm.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one request produced, gathered along the request path. The request's
/// own fields are copied into one buffer (the record outlives the buffers
/// they were parsed from); the line is formatted when the response completes.
#[derive(Debug, Default)]
pub struct AccessRecord {
    /// Client address.
    pub remote: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'static str,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// Matched route id (`-` for none).
    pub route_id: Option<Arc<str>>,
    /// The consumer an authentication plugin recognised, if any.
    pub consumer: Option<Arc<str>>,
    /// The request's identifier, when `request-id` gave or kept one.
    pub request_id: Option<http::HeaderValue>,
    /// The request's trace id, when `opentelemetry` traced it.
    pub trace_id: Option<[u8; 16]>,
    /// Every node tried, in order.
    pub attempts: Vec<Attempt>,
    /// When the request arrived (the wall-clock time in the line is derived
    /// from it).
    pub start: Option<Instant>,
    /// From arrival to the end of the answer, when the request path already
    /// measured it (for its metrics); otherwise measured as the line is
    /// formatted.
    pub request_time: Option<Duration>,
    /// Why the exchange was cut short by weir, when it was (e.g.
    /// `send_timeout`: the client stopped reading the response).
    pub abort: Option<&'static str>,
    request: RequestText,
}

/// One upstream attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `host:port`.
    pub node: Arc<str>,
    /// Status answered, None when there was no response.
    pub status: Option<u16>,
    /// Time to response headers (or failure).
    pub elapsed: Duration,
}

/// The request's fields as received, back to back in one buffer.
#[derive(Debug, Default)]
struct RequestText {
    bytes: Vec<u8>,
    /// End offsets of the fields, in [`Field`] order.
    ends: [usize; FIELDS],
}

/// A request field kept for the log.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    Method = 0,
    /// Path and query (origin form).
    Target = 1,
    Referer = 2,
    UserAgent = 3,
    /// As received, port included.
    Host = 4,
}

const FIELDS: usize = 5;

/// The request fields an access line shows, borrowed from wherever the
/// request path has them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFields<'a> {
    /// Method.
    pub method: &'a [u8],
    /// Path and query as received.
    pub target: &'a [u8],
    /// Referer header.
    pub referer: Option<&'a [u8]>,
    /// User-Agent header.
    pub user_agent: Option<&'a [u8]>,
    /// Host the request was routed by.
    pub host: Option<&'a [u8]>,
}

impl AccessRecord {
    /// A cleared record, reusing one this thread logged earlier when it can.
    pub fn recycled() -> AccessRecord {
        SPARE
            .with(|spare| spare.borrow_mut().pop())
            .unwrap_or_default()
    }

    /// Gives a logged record back to this thread's free list.
    pub(super) fn recycle(mut self) {
        self.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_SPARE {
                spare.push(self);
            }
        });
    }

    fn clear(&mut self) {
        self.remote = None;
        self.version = "";
        self.status = 0;
        self.body_bytes = 0;
        self.route_id = None;
        self.consumer = None;
        self.request_id = None;
        self.trace_id = None;
        self.attempts.clear();
        self.start = None;
        self.request_time = None;
        self.abort = None;
        self.request.bytes.clear();
        self.request.ends = [0; FIELDS];
    }

    /// Copies the request's fields into the record.
    pub fn set_request(&mut self, fields: RequestFields<'_>) {
        let text = &mut self.request;
        text.bytes.clear();
        let parts = [
            Some(fields.method),
            Some(fields.target),
            fields.referer,
            fields.user_agent,
            fields.host,
        ];
        for (i, part) in parts.into_iter().enumerate() {
            text.bytes.extend_from_slice(part.unwrap_or_default());
            text.ends[i] = text.bytes.len();
        }
    }

    /// For a request weir answered without reading it whole (a malformed or
    /// oversized head, or one not received in time): what `head`, the bytes
    /// received, shows of it. The request line's method, target and version
    /// once the line is complete (before that, the method when a space
    /// follows it); the Referer, User-Agent and Host of the complete header
    /// lines (Host only when there is exactly one). What is not known stays
    /// empty (`-` in a text line); so does a version other than HTTP/1.0 and
    /// HTTP/1.1.
    pub fn set_unread_request(&mut self, head: &[u8]) {
        // As httparse (RFC 9112 §2.2): empty lines before the request line
        // are skipped.
        let skip = head
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(head.len());
        let head = &head[skip..];
        let mut lines = head.split_inclusive(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let (mut method, mut target, mut version): (&[u8], &[u8], &'static str) = (b"", b"", "");
        if let Some(line) = first.strip_suffix(b"\n") {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (m, rest) = split_at_space(line);
            method = m;
            target = rest;
            if let Some(i) = rest.iter().rposition(|&b| b == b' ') {
                let v = &rest[i + 1..];
                if v.starts_with(b"HTTP/") {
                    target = &rest[..i];
                    version = match v {
                        b"HTTP/1.1" => "HTTP/1.1",
                        b"HTTP/1.0" => "HTTP/1.0",
                        _ => "",
                    };
                }
            }
        } else if let Some(i) = first.iter().position(|&b| b == b' ') {
            method = &first[..i];
        }
        let (mut referer, mut user_agent, mut host, mut hosts) = (None, None, None, 0);
        for line in lines {
            let Some(line) = line.strip_suffix(b"\n") else {
                break; // not complete
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break; // the end of the head
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
                host = Some(value);
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                user_agent = user_agent.or(Some(value));
            } else if name.eq_ignore_ascii_case(b"referer") {
                referer = referer.or(Some(value));
            }
        }
        self.set_request(RequestFields {
            method,
            target,
            referer,
            user_agent,
            host: host.filter(|_| hosts == 1),
        });
        self.version = version;
    }

    /// Masks the values of the query arguments `names` in the logged
    /// target (`?apikey=s3cret` becomes `?apikey=***`): credentials sent in
    /// the query string never reach the log.
    pub fn mask_query_args(&mut self, names: &[Box<str>]) {
        let Some(masked) = mask_query(self.field(Field::Target), names) else {
            return;
        };
        let fields = [
            Field::Method,
            Field::Target,
            Field::Referer,
            Field::UserAgent,
            Field::Host,
        ];
        let old: Vec<Vec<u8>> = fields.iter().map(|f| self.field(*f).to_vec()).collect();
        let text = &mut self.request;
        text.bytes.clear();
        for (i, part) in old.iter().enumerate() {
            if i == 1 {
                text.bytes.extend_from_slice(&masked);
            } else {
                text.bytes.extend_from_slice(part);
            }
            text.ends[i] = text.bytes.len();
        }
    }

    /// One request field as received (empty when absent).
    pub(super) fn field(&self, field: Field) -> &[u8] {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.request.ends[i - 1] };
        self.request
            .bytes
            .get(start..self.request.ends[i])
            .unwrap_or_default()
    }

    /// Records one upstream attempt.
    pub fn push_attempt(&mut self, node: &Arc<str>, status: Option<u16>, elapsed: Duration) {
        self.attempts.push(Attempt {
            node: node.clone(),
            status,
            elapsed,
        });
    }
}

/// The bytes before the first space and those after it (all and none
/// without one).
fn split_at_space(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, b""),
    }
}

/// `value` without the spaces and tabs around it.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Records kept per thread for reuse: enough for the requests a worker has
/// in flight at once on a busy gateway; beyond that they are freed.
const MAX_SPARE: usize = 256;

thread_local! {
    static SPARE: RefCell<Vec<AccessRecord>> = const { RefCell::new(Vec::new()) };
}

/// `target` with the values of the query arguments named in `names`
/// replaced by `***`; None when there is nothing to mask.
pub(crate) fn mask_query(target: &[u8], names: &[Box<str>]) -> Option<Vec<u8>> {
    if names.is_empty() {
        return None;
    }
    let q = target.iter().position(|&b| b == b'?')?;
    let mut masked = target[..=q].to_vec();
    let mut changed = false;
    for (i, pair) in target[q + 1..].split(|&b| b == b'&').enumerate() {
        if i > 0 {
            masked.push(b'&');
        }
        let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if names.iter().any(|n| n.as_bytes() == key) && pair.len() > key.len() {
            masked.extend_from_slice(key);
            masked.extend_from_slice(b"=***");
            changed = true;
        } else {
            masked.extend_from_slice(pair);
        }
    }
    changed.then_some(masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_as_set_and_absent_ones_are_empty() {
        let mut r = AccessRecord::recycled();
        r.set_request(RequestFields {
            method: b"GET",
            target: b"/a?b=c",
            referer: None,
            user_agent: Some(b"curl/8"),
            host: Some(b"shop.test:8080"),
        });
        assert_eq!(r.field(Field::Method), b"GET");
        assert_eq!(r.field(Field::Target), b"/a?b=c");
        assert_eq!(r.field(Field::Referer), b"");
        assert_eq!(r.field(Field::UserAgent), b"curl/8");
        assert_eq!(r.field(Field::Host), b"shop.test:8080");
    }

    #[test]
    fn a_recycled_record_starts_empty() {
        let mut r = AccessRecord::recycled();
        r.set_request(RequestFields {
            method: b"POST",
            target: b"/x",
            ..RequestFields::default()
        });
        r.status = 502;
        r.push_attempt(&Arc::from("10.0.0.1:80"), None, Duration::from_millis(3));
        r.recycle();
        let again = AccessRecord::recycled();
        assert_eq!(again.status, 0);
        assert!(again.attempts.is_empty());
        assert_eq!(again.field(Field::Method), b"");
        assert!(again.start.is_none());
    }

    fn unread(head: &[u8]) -> AccessRecord {
        let mut r = AccessRecord::default();
        r.set_unread_request(head);
        r
    }

    fn shown(r: &AccessRecord) -> [&[u8]; 5] {
        [
            r.field(Field::Method),
            r.field(Field::Target),
            r.field(Field::Referer),
            r.field(Field::UserAgent),
            r.field(Field::Host),
        ]
    }

    #[test]
    fn an_unread_request_shows_its_request_line_and_named_fields() {
        let r = unread(
            b"\r\nPOST /a?b=c HTTP/1.1\r\nhost:  shop.test:8080 \r\nBad Line\r\n\
              User-Agent: curl/8\r\nReferer: http://r/\r\nUser-Agent: second\r\n\r\nbody",
        );
        assert_eq!(
            shown(&r),
            [
                &b"POST"[..],
                b"/a?b=c",
                b"http://r/",
                b"curl/8",
                b"shop.test:8080"
            ]
        );
        assert_eq!(r.version, "HTTP/1.1");
    }

    #[test]
    fn an_unread_request_shows_no_host_when_it_has_two() {
        let r = unread(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_eq!(r.field(Field::Host), b"");
        assert_eq!(r.version, "HTTP/1.0");
    }

    #[test]
    fn an_unread_request_shows_only_what_arrived_whole() {
        // The line is not complete: its method only.
        let r = unread(b"GET /slo");
        assert_eq!(shown(&r), [&b"GET"[..], b"", b"", b"", b""]);
        assert_eq!(r.version, "");
        // Nor is the last header line.
        let r = unread(b"GET /slow HTTP/1.1\r\nHost: a\r\nUser-Agent: cu");
        assert_eq!(shown(&r), [&b"GET"[..], b"/slow", b"", b"", b"a"]);
        // Nothing but a partial method.
        assert_eq!(shown(&unread(b"GE")), [&b""[..]; 5]);
        assert_eq!(shown(&unread(b"")), [&b""[..]; 5]);
    }

    #[test]
    fn an_unread_request_line_that_is_not_http_is_shown_as_received() {
        // Not a version weir knows: the target keeps what is not a version.
        let r = unread(b"GET /x HTTP/9.9\r\n\r\n");
        assert_eq!(r.field(Field::Target), b"/x");
        assert_eq!(r.version, "");
        let r = unread(b"\x16\x03\x01\x02\n");
        assert_eq!(r.field(Field::Method), b"\x16\x03\x01\x02");
        assert_eq!(r.field(Field::Target), b"");
        let r = unread(b"GET /a b\r\n\r\n");
        assert_eq!(shown(&r)[..2], [&b"GET"[..], b"/a b"]);
    }

    #[test]
    fn credentials_in_the_query_are_masked() {
        let mut r = AccessRecord::default();
        r.set_request(RequestFields {
            method: b"GET",
            target: b"/a?x=1&apikey=s3cret&jwt=t0ken&apikeyx=2",
            host: Some(b"h"),
            ..RequestFields::default()
        });
        r.mask_query_args(&["apikey".into(), "jwt".into()]);
        assert_eq!(
            r.field(Field::Target),
            b"/a?x=1&apikey=***&jwt=***&apikeyx=2"
        );
        assert_eq!(r.field(Field::Host), b"h");
        assert_eq!(r.field(Field::Method), b"GET");
    }
}
