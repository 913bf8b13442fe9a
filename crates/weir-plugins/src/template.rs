//! Texts with variables, as APISIX's plugins write them (`resolve_var`):
//! `$name` or `${name}` take an APISIX variable of the request
//! (`$remote_addr`, `$http_x_user`, `$arg_id`...), `$1`..`$9` a capture of
//! the plugin's regular expression; a missing variable is empty; `$$` is
//! not special (APISIX has no escape), and a `$` followed by nothing that
//! can name a variable stays as written.

use weir_plugin::RequestCtx;

/// A parsed text.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Var(String),
    Capture(usize),
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (part, used) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) if end > 0 => (Some(Part::Var(inner[..end].to_owned())), end + 2),
                    _ => (None, 0),
                }
            } else {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    (after[..digits].parse().ok().map(Part::Capture), digits)
                } else {
                    let n = after
                        .bytes()
                        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                        .count();
                    if n > 0 {
                        (Some(Part::Var(after[..n].to_owned())), n)
                    } else {
                        (None, 0)
                    }
                }
            };
            match part {
                Some(p) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(p);
                    rest = &after[used..];
                }
                None => {
                    literal.push('$');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Template { parts }
    }

    /// The text for this request; `captures` fills `$1`.. (`$0` is the whole
    /// match).
    pub fn render(&self, ctx: &RequestCtx<'_>, captures: Option<&regex::Captures<'_>>) -> String {
        self.render_vars(
            |name| ctx.var(name).map(std::borrow::Cow::into_owned),
            captures,
        )
    }

    /// The text with variables from `var` (a response's, say).
    pub fn render_vars(
        &self,
        var: impl Fn(&str) -> Option<String>,
        captures: Option<&regex::Captures<'_>>,
    ) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(name) => {
                    if let Some(v) = var(name) {
                        out.push_str(&v);
                    }
                }
                Part::Capture(i) => {
                    if let Some(m) = captures.and_then(|c| c.get(*i)) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        out
    }
}

impl Template {
    /// The variables the text names.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

/// A plugin's plain answer (`fault-injection`'s abort, `api-breaker`'s
/// break): `status`, `body` as `text/plain`, and header fields whose values
/// are rendered for the request (a `Content-Type` among them replaces the
/// body's; a value that is not a valid field value is left out).
pub fn plain_reply(
    status: http::StatusCode,
    body: Option<bytes::Bytes>,
    headers: &[(http::HeaderName, Template)],
    ctx: &RequestCtx<'_>,
) -> weir_plugin::LocalReply {
    let mut reply = weir_plugin::LocalReply::empty(status);
    if let Some(b) = body {
        reply.replace_body(http::HeaderValue::from_static("text/plain"), b);
    }
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&value.render(ctx, None)) {
            if name == http::header::CONTENT_TYPE {
                reply
                    .headers
                    .retain(|(n, _)| n != http::header::CONTENT_TYPE);
            }
            reply.headers.push((name.clone(), v));
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_variables_captures_and_literal_dollars() {
        let t = Template::parse("/v2/$1?u=${http_x_user}&ip=$remote_addr&cost=5$");
        let kinds: Vec<String> = t
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(s) => format!("t:{s}"),
                Part::Var(v) => format!("v:{v}"),
                Part::Capture(i) => format!("c:{i}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "t:/v2/",
                "c:1",
                "t:?u=",
                "v:http_x_user",
                "t:&ip=",
                "v:remote_addr",
                "t:&cost=5$"
            ]
        );
        for literal in ["plain text", "a $ b ${} c"] {
            let t = Template::parse(literal);
            assert!(
                t.parts.iter().all(|p| matches!(p, Part::Text(_))),
                "{literal}"
            );
        }
    }
}
