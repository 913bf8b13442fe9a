//! The one policy for header fields a proxy must not pass on as they are:
//! hop-by-hop fields (RFC 9110 §7.6.1), the fields that frame a message, and
//! the forwarding fields weir writes itself. Both transports and both
//! directions classify names here, so they cannot drift apart.

/// What a header field name means to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding` (hop-by-hop; the framing is rewritten).
    TransferEncoding,
    /// `Connection` (hop-by-hop; it also names other hop-by-hop fields).
    Connection,
    /// `Upgrade`: hop-by-hop, unless the exchange is switching protocols.
    Upgrade,
    /// Always hop-by-hop: `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
    /// `Proxy-Authorization`.
    HopByHop,
    /// `Expect` (request side).
    Expect,
    /// `X-Forwarded-For`: weir appends the client address.
    XForwardedFor,
    /// `X-Real-IP`, `X-Forwarded-Proto`, `-Host`, `-Port`: replaced by weir's
    /// own values.
    Forwarding,
    /// `Date` (response side: added when missing).
    Date,
    /// Anything else: passed on (unless a `Connection` field names it).
    Other,
}

/// Most field names one `Connection` field list is expected to carry;
/// lists longer than this are still honoured, at the cost of an allocation.
pub const CONNECTION_TOKENS_INLINE: usize = 8;

/// Classifies a header field name (case-insensitive). Dispatches on length
/// first: most names are compared against at most two candidates.
pub fn classify(name: &str) -> Field {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is("te") => Field::HopByHop,
        4 if is("host") => Field::Host,
        4 if is("date") => Field::Date,
        6 if is("expect") => Field::Expect,
        7 if is("upgrade") => Field::Upgrade,
        7 if is("trailer") => Field::HopByHop,
        9 if is("x-real-ip") => Field::Forwarding,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::XForwardedFor,
        16 if is("proxy-connection") => Field::HopByHop,
        16 if is("x-forwarded-host") || is("x-forwarded-port") => Field::Forwarding,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        17 if is("x-forwarded-proto") => Field::Forwarding,
        19 if is("proxy-authorization") => Field::HopByHop,
        _ => Field::Other,
    }
}

/// True for fields never passed on between client and node (the
/// `Connection` field itself included), whatever their direction.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        classify(name),
        Field::Connection | Field::Upgrade | Field::HopByHop | Field::TransferEncoding
    )
}

/// The options of a `Connection` field value, trimmed, empty ones skipped.
pub fn connection_tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// True for `Connection` options that are not field names: `close`,
/// `keep-alive` and `upgrade`.
pub fn is_connection_option(token: &str) -> bool {
    token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("keep-alive")
        || token.eq_ignore_ascii_case("upgrade")
}

/// Field names listed by `Connection` fields, which are hop-by-hop too.
/// The first [`CONNECTION_TOKENS_INLINE`] are kept inline; more spill to the
/// heap rather than being forgotten (a forgotten name would be forwarded).
#[derive(Default)]
pub struct NamedFields<'a> {
    inline: [&'a str; CONNECTION_TOKENS_INLINE],
    len: usize,
    spill: Vec<&'a str>,
}

impl<'a> NamedFields<'a> {
    /// Adds a field name.
    pub fn push(&mut self, name: &'a str) {
        if self.len < self.inline.len() {
            self.inline[self.len] = name;
            self.len += 1;
        } else {
            self.spill.push(name);
        }
    }

    /// True when no name was listed (the common case).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `name` was listed (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.inline[..self.len]
            .iter()
            .chain(self.spill.iter())
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// What a request's `Transfer-Encoding` fields amount to (RFC 9112 §6.1),
/// as nginx applies them: only `chunked` is implemented, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCoding {
    /// No `Transfer-Encoding` (or only empty list elements).
    None,
    /// `chunked`, once.
    Chunked,
    /// A coding weir does not implement (`gzip`, `identity`...): 501.
    NotImplemented,
    /// `chunked` more than once: 400.
    RepeatedChunked,
}

/// Reads every value of a request's `Transfer-Encoding` fields, in order.
pub fn request_coding<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> RequestCoding {
    let mut chunked = 0;
    for value in values {
        for coding in value.split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            // A coding's parameters (`;q=...`) do not make it another one.
            let name = coding
                .split(|b| *b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if name.is_empty() {
                continue;
            }
            if name.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else {
                return RequestCoding::NotImplemented;
            }
        }
    }
    match chunked {
        0 => RequestCoding::None,
        1 => RequestCoding::Chunked,
        _ => RequestCoding::RepeatedChunked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_case_insensitively() {
        assert_eq!(classify("TE"), Field::HopByHop);
        assert_eq!(classify("Keep-Alive"), Field::HopByHop);
        assert_eq!(classify("proxy-authorization"), Field::HopByHop);
        assert_eq!(classify("Transfer-Encoding"), Field::TransferEncoding);
        assert_eq!(classify("X-Forwarded-Port"), Field::Forwarding);
        assert_eq!(classify("x-forwarded-for"), Field::XForwardedFor);
        assert_eq!(classify("x-custom"), Field::Other);
        assert!(is_hop_by_hop("connection"));
        assert!(is_hop_by_hop("upgrade"));
        assert!(!is_hop_by_hop("content-length"));
    }

    #[test]
    fn named_fields_beyond_the_inline_slots_are_kept() {
        let names: Vec<String> = (0..12).map(|i| format!("x-f{i}")).collect();
        let mut named = NamedFields::default();
        for n in &names {
            named.push(n);
        }
        assert!(named.contains("X-F0"));
        assert!(named.contains("x-f11"));
        assert!(!named.contains("x-f12"));
    }
}

#[cfg(test)]
mod coding_tests {
    use super::{request_coding, RequestCoding};

    #[test]
    fn only_one_chunked_is_implemented() {
        let c = |v: &[&[u8]]| request_coding(v.iter().copied());
        assert_eq!(c(&[]), RequestCoding::None);
        assert_eq!(c(&[b"chunked"]), RequestCoding::Chunked);
        assert_eq!(c(&[b" Chunked ,"]), RequestCoding::Chunked);
        assert_eq!(c(&[b"gzip, chunked"]), RequestCoding::NotImplemented);
        assert_eq!(c(&[b"identity, chunked"]), RequestCoding::NotImplemented);
        assert_eq!(c(&[b"chunked", b"gzip"]), RequestCoding::NotImplemented);
        assert_eq!(c(&[b"chunked, chunked"]), RequestCoding::RepeatedChunked);
        assert_eq!(c(&[b"chunked", b"chunked"]), RequestCoding::RepeatedChunked);
    }
}
