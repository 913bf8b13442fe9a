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
