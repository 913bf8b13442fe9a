//! The path routes are matched against, as nginx's `$uri` (which APISIX
//! matches on): percent-decoded, `.`/`..` segments resolved, repeated slashes
//! merged. The request is still forwarded with the path the client sent.

use std::borrow::Cow;

/// Normalizes `path` for matching; borrows when nothing needs to change
/// (the common case allocates nothing).
pub fn match_path(path: &str) -> Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.");
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(path);
    Cow::Owned(resolve_segments(&decoded))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resolve_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// True when `host` is a valid Host field value (RFC 9112 §3.2, RFC 3986
/// §3.2.2): a registered name or IPv4 address (unreserved, pct-encoded and
/// sub-delimiter characters) or a bracketed IP literal, then an optional
/// `:port`. Refused: an empty value (as nginx refuses it), and anything
/// with a space, `/`, `?`, `#`, `@` (userinfo), `\\` or a control byte.
pub fn is_valid_host(host: &[u8]) -> bool {
    if host.is_empty() {
        return false;
    }
    let (name, port) = if host[0] == b'[' {
        let Some(end) = host.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &host[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&host[..0], &host[end + 1..])
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, &host[host.len()..]),
        }
    };
    let name_ok = name.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok && !(host[0] != b'[' && name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(match_path("/a/b"), Cow::Borrowed("/a/b")));
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(match_path("/caf%C3%A9/x"), "/café/x");
        assert_eq!(match_path("/a%2Fb"), "/a/b");
        assert_eq!(match_path("/bad%zz"), "/bad%zz");
        assert_eq!(match_path("/end%4"), "/end%4");
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved() {
        assert_eq!(match_path("/a/../admin"), "/admin");
        assert_eq!(match_path("/a/./b//c/"), "/a/b/c/");
        assert_eq!(match_path("/../../x"), "/x");
        assert_eq!(match_path("/a/%2e%2e/b"), "/b");
        assert_eq!(match_path("/a/.."), "/");
    }
}

#[cfg(test)]
mod host_tests {
    use super::is_valid_host;

    #[test]
    fn host_values_as_rfc_9112_allows_them() {
        for ok in [
            &b"a.example"[..],
            b"a.example:8080",
            b"127.0.0.1",
            b"[::1]",
            b"[::1]:80",
            b"xn--bcher-kva.example",
            b"a_b.example:",
        ] {
            assert!(is_valid_host(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"a b",
            b"a/b",
            b"a@b",
            b"user:pw@other.example",
            b"a?b",
            b"a#b",
            b"a\\b",
            b"a\tb",
            b":80",
            b"a:8x",
            b"[zz]",
            b"[::1",
        ] {
            assert!(!is_valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
