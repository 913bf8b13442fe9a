//! A borrowed view of a request head. The fast path implements it over the
//! bytes `httparse` parsed ([`RawHead`]), the general path over hyper's
//! [`Parts`]; routing inputs, consistent hashing and plugins read requests
//! only through it, so they behave the same on both transports.

use http::request::Parts;
use http::{header, HeaderValue};

/// The parts of a request head that weir's logic reads. Object-safe, so
/// plugins take a `&dyn RequestView`.
pub trait RequestView {
    /// The method, as sent (`GET`).
    fn method(&self) -> &str;
    /// The request path (no query), as sent.
    fn path(&self) -> &str;
    /// The query string, without `?`.
    fn query(&self) -> Option<&str>;
    /// Path and query as sent.
    fn path_and_query(&self) -> &str;
    /// The Host field (or the target's authority).
    fn host(&self) -> Option<&[u8]>;
    /// Every value of the header field `name` (any case), in order.
    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n>;
    /// Every header field, in order.
    fn fields(&self) -> Fields<'_>;

    /// The protocol version (`HTTP/1.1`, `HTTP/2.0`).
    fn version(&self) -> &'static str {
        "HTTP/1.1"
    }

    /// The first value of the header field `name`.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }
}

/// The values of one header field.
pub enum HeaderValues<'a, 'n> {
    /// Over a raw parsed head.
    Raw {
        /// The head's fields.
        fields: &'a [httparse::Header<'a>],
        /// The name looked for.
        name: &'n str,
    },
    /// Over a header map.
    Map(http::header::ValueIter<'a, HeaderValue>),
    /// Over a list of fields.
    List {
        /// The fields.
        items: &'a [(http::HeaderName, HeaderValue)],
        /// The name looked for.
        name: &'n str,
    },
}

impl<'a> Iterator for HeaderValues<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            HeaderValues::Raw { fields, name } => loop {
                let (first, rest) = fields.split_first()?;
                *fields = rest;
                if first.name.eq_ignore_ascii_case(name) {
                    return Some(first.value);
                }
            },
            HeaderValues::Map(it) => it.next().map(HeaderValue::as_bytes),
            HeaderValues::List { items, name } => loop {
                let ((n, v), rest) = items.split_first()?;
                *items = rest;
                if n.as_str().eq_ignore_ascii_case(name) {
                    return Some(v.as_bytes());
                }
            },
        }
    }
}

/// Every field of a head, as (name, value).
pub enum Fields<'a> {
    /// Over a raw parsed head.
    Raw(std::slice::Iter<'a, httparse::Header<'a>>),
    /// Over a header map.
    Map(http::header::Iter<'a, HeaderValue>),
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        match self {
            Fields::Raw(it) => it.next().map(|h| (h.name, h.value)),
            Fields::Map(it) => it.next().map(|(n, v)| (n.as_str(), v.as_bytes())),
        }
    }
}

/// A head parsed by `httparse`, borrowed from the read buffer.
pub struct RawHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The request target (origin form: path and query).
    pub target: &'a str,
    /// The Host field's value.
    pub host: &'a [u8],
    /// Every field.
    pub fields: &'a [httparse::Header<'a>],
}

impl RequestView for RawHead<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    fn path_and_query(&self) -> &str {
        self.target
    }

    fn host(&self) -> Option<&[u8]> {
        Some(self.host)
    }

    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        HeaderValues::Raw {
            fields: self.fields,
            name,
        }
    }

    fn fields(&self) -> Fields<'_> {
        Fields::Raw(self.fields.iter())
    }
}

impl RequestView for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn version(&self) -> &'static str {
        match self.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        }
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn host(&self) -> Option<&[u8]> {
        self.headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| self.uri.host().map(str::as_bytes))
    }

    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        HeaderValues::Map(self.headers.get_all(name).iter())
    }

    fn fields(&self) -> Fields<'_> {
        Fields::Map(self.headers.iter())
    }
}

/// The parts of a response head plugins read.
pub trait ResponseView {
    /// Status code.
    fn status(&self) -> u16;
    /// Every value of the header field `name` (any case), in order.
    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n>;
}

/// A response head parsed by `httparse`.
pub struct RawResponseHead<'a> {
    /// Status code.
    pub status: u16,
    /// Every field.
    pub fields: &'a [httparse::Header<'a>],
}

impl ResponseView for RawResponseHead<'_> {
    fn status(&self) -> u16 {
        self.status
    }

    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        HeaderValues::Raw {
            fields: self.fields,
            name,
        }
    }
}

impl ResponseView for http::response::Parts {
    fn status(&self) -> u16 {
        self.status.as_u16()
    }

    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        HeaderValues::Map(self.headers.get_all(name).iter())
    }
}

impl ResponseView for crate::LocalReply {
    fn status(&self) -> u16 {
        self.status.as_u16()
    }

    fn header_values<'a, 'n>(&'a self, name: &'n str) -> HeaderValues<'a, 'n> {
        HeaderValues::List {
            items: &self.headers,
            name,
        }
    }
}

/// The value of query argument `name` (undecoded), if present.
pub fn query_arg<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Decodes `%XX` escapes (and `+` as a space, as in query strings).
/// Invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The value of cookie `name` from the request's `Cookie` fields.
pub fn cookie<'a>(req: &'a (impl RequestView + ?Sized), name: &str) -> Option<&'a [u8]> {
    req.header_values("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Both views answer the same questions the same way.
    #[test]
    fn raw_and_parsed_views_agree() {
        let fields = [
            httparse::Header {
                name: "Host",
                value: b"a.example",
            },
            httparse::Header {
                name: "X-Key",
                value: b"1",
            },
            httparse::Header {
                name: "x-key",
                value: b"2",
            },
            httparse::Header {
                name: "Cookie",
                value: b"a=1; sid=xyz",
            },
        ];
        let raw = RawHead {
            method: "GET",
            target: "/p/q?x=1&y",
            host: b"a.example",
            fields: &fields,
        };
        let p = parts(
            "/p/q?x=1&y",
            &[
                ("host", "a.example"),
                ("x-key", "1"),
                ("x-key", "2"),
                ("cookie", "a=1; sid=xyz"),
            ],
        );
        let views: [&dyn RequestView; 2] = [&raw, &p];
        for v in views {
            assert_eq!(v.method(), "GET");
            assert_eq!(v.path(), "/p/q");
            assert_eq!(v.query(), Some("x=1&y"));
            assert_eq!(v.host(), Some(&b"a.example"[..]));
            let keys: Vec<&[u8]> = v.header_values("X-KEY").collect();
            assert_eq!(keys, vec![&b"1"[..], &b"2"[..]]);
            assert_eq!(v.header("x-missing"), None);
            assert_eq!(cookie(v, "sid"), Some(&b"xyz"[..]));
            assert_eq!(query_arg(v.query(), "y"), Some(""));
            assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
            assert_eq!(v.fields().count(), 4);
        }
    }
}
