//! Responses weir makes itself: its own errors (404, 502, ...) and plugin
//! answers (401 from an auth plugin, a CORS preflight, `echo`). One type and
//! one pair of writers for both transports, so status, headers and body are
//! the same over HTTP/1.1 and HTTP/2, and a `HEAD` request gets the head
//! without the body everywhere.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};

/// A complete response made by weir.
#[derive(Debug, Clone)]
pub struct LocalReply {
    /// Status code.
    pub status: StatusCode,
    /// Header fields (without framing: `Content-Length` is written from the
    /// body).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

impl LocalReply {
    /// A reply with no header field and no body.
    pub fn empty(status: StatusCode) -> LocalReply {
        LocalReply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// weir's own errors, in APISIX's shape: `{"error_msg":"..."}` as JSON.
    pub fn error_msg(status: StatusCode, message: &str) -> LocalReply {
        let body = serde_json::json!({ "error_msg": message }).to_string();
        LocalReply {
            status,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body),
        }
    }

    /// A plugin's rejection as APISIX sends it: `{"message":"..."}` and a
    /// newline, with nginx's default type (`text/plain`).
    pub fn message(status: StatusCode, message: &str) -> LocalReply {
        let mut body = serde_json::json!({ "message": message }).to_string();
        body.push('\n');
        LocalReply {
            status,
            headers: vec![(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            body: Bytes::from(body),
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> LocalReply {
        self.headers.push((name, value));
        self
    }

    /// Replaces the body (and its type), keeping the other fields.
    pub fn replace_body(&mut self, content_type: HeaderValue, body: Bytes) {
        self.headers.retain(|(n, _)| n != header::CONTENT_TYPE);
        self.headers.push((header::CONTENT_TYPE, content_type));
        self.body = body;
    }

    /// Writes the reply as an HTTP/1.1 message. `head_request`: the request
    /// was `HEAD`, so the body is left out (its length is still announced).
    /// `push_date` appends the `Date` field line; `close` adds
    /// `Connection: close`. Header edits (`extra`) are applied on the way:
    /// a field they set or remove is dropped, their values are added.
    pub fn write_h1(
        &self,
        head_request: bool,
        close: bool,
        extra: Option<&crate::HeaderEdits>,
        push_date: impl FnOnce(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) {
        out.reserve(128 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let dropped = |name: &HeaderName| extra.is_some_and(|e| e.drops(name.as_str()));
        let added = extra.into_iter().flat_map(|e| e.additions());
        for (name, value) in self
            .headers
            .iter()
            .filter(|(n, _)| !dropped(n))
            .map(|(n, v)| (n, v))
            .chain(added)
        {
            if is_framing(name) {
                continue;
            }
            push_title_case(out, name.as_str());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if has_body(self.status) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        push_date(out);
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_request && has_body(self.status) {
            out.extend_from_slice(&self.body);
        }
    }

    /// The reply as an `http` response head and body, for hyper. For `HEAD`
    /// the body is empty and `Content-Length` still announces its length.
    /// Header edits (`extra`) are applied after the reply's own fields.
    pub fn into_http(
        self,
        head_request: bool,
        extra: Option<&crate::HeaderEdits>,
    ) -> (http::response::Parts, Bytes) {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        for (name, value) in self.headers {
            parts.headers.append(name, value);
        }
        if let Some(e) = extra {
            e.apply(&mut parts.headers);
        }
        parts.headers.remove(header::CONNECTION);
        parts.headers.remove(header::TRANSFER_ENCODING);
        if has_body(self.status) {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        let body = if head_request || !has_body(self.status) {
            Bytes::new()
        } else {
            self.body
        };
        (parts, body)
    }
}

/// `www-authenticate` -> `Www-Authenticate`: the case HTTP/1.1 clients
/// usually see (names are case-insensitive; this is for people reading).
fn push_title_case(out: &mut Vec<u8>, name: &str) {
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
}

/// 1xx, 204 and 304 responses carry no body (RFC 9110 §6.4.1).
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_requests_get_the_length_but_not_the_body() {
        let r = LocalReply::error_msg(StatusCode::NOT_FOUND, "404 Route Not Found");
        let mut get = Vec::new();
        r.write_h1(false, false, None, |_| {}, &mut get);
        let mut head = Vec::new();
        r.write_h1(true, true, None, |_| {}, &mut head);
        let get = String::from_utf8(get).unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(
            get.ends_with("{\"error_msg\":\"404 Route Not Found\"}"),
            "{get}"
        );
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
        assert!(head.contains("Content-Length: 35\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/json\r\n"),
            "{head}"
        );
        let (parts, body) = r.into_http(true, None);
        assert!(body.is_empty());
        assert_eq!(parts.headers[header::CONTENT_LENGTH], "35");
    }

    #[test]
    fn plugin_messages_have_apisix_shape() {
        let r = LocalReply::message(StatusCode::UNAUTHORIZED, "Missing API key in request");
        assert_eq!(
            &r.body[..],
            b"{\"message\":\"Missing API key in request\"}\n"
        );
        let mut out = Vec::new();
        LocalReply::empty(StatusCode::NO_CONTENT).write_h1(false, false, None, |_| {}, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("Content-Length"));
    }
}
