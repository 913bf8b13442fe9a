//! URI patterns as APISIX writes them: exact (`/a/b`), open-ended with a
//! trailing `*` (`/a/*`, `/a*`), and `:name` segments (`/users/:id/orders`).

/// One piece of a parsed pattern.
#[derive(Debug)]
enum Token {
    /// Text that must appear verbatim (may contain `/`).
    Literal(Box<str>),
    /// A `:name` segment: one or more characters up to the next `/`.
    Param(Box<str>),
}

/// A compiled URI pattern.
#[derive(Debug)]
pub(crate) struct UriPattern {
    source: Box<str>,
    tokens: Box<[Token]>,
    /// The pattern ended with `*`: anything may follow the tokens.
    open_ended: bool,
}

impl UriPattern {
    /// Parses a validated pattern (starts with `/`, `*` only at the end).
    pub(crate) fn parse(source: &str) -> UriPattern {
        let (body, open_ended) = match source.strip_suffix('*') {
            Some(body) => (body, true),
            None => (source, false),
        };
        let mut tokens = Vec::new();
        let mut literal = String::new();
        for (i, segment) in body.split('/').enumerate() {
            if i > 0 {
                literal.push('/');
            }
            match segment.strip_prefix(':') {
                Some(name) => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
                    }
                    tokens.push(Token::Param(name.into()));
                }
                None => literal.push_str(segment),
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        UriPattern {
            source: source.into(),
            tokens: tokens.into(),
            open_ended,
        }
    }

    /// The pattern as written in the configuration.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// True when only one path matches: no `:name` segment and no trailing `*`.
    pub(crate) fn is_exact(&self) -> bool {
        !self.open_ended && self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The literal text every matching path starts with; the key in the prefix tree.
    pub(crate) fn static_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(text)) => text,
            _ => "",
        }
    }

    /// Whether `path` matches the whole pattern.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| {}).is_some()
    }

    /// The value of the `:name` segment in a path that matches this pattern.
    pub(crate) fn param<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        let mut found = None;
        self.walk(path, |param, value| {
            if found.is_none() && param == name {
                found = Some(value);
            }
        })?;
        found
    }

    /// Every `(name, value)` pair of a matching path, in pattern order.
    pub(crate) fn params<'s, 'p>(
        &'s self,
        path: &'p str,
    ) -> impl Iterator<Item = (&'s str, &'p str)> + use<'s, 'p> {
        let mut rest = Some(path);
        self.tokens
            .iter()
            .map_while(move |token| {
                let remaining = rest?;
                match token {
                    Token::Literal(text) => {
                        rest = remaining.strip_prefix(&**text);
                        Some(None)
                    }
                    Token::Param(name) => {
                        let end = segment_end(remaining);
                        rest = Some(&remaining[end..]);
                        Some(Some((&**name, &remaining[..end])))
                    }
                }
            })
            .flatten()
    }

    /// What a trailing `*` matched in `path`; `None` for patterns without one.
    pub(crate) fn wildcard<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.open_ended {
            self.walk(path, |_, _| {})
        } else {
            None
        }
    }

    /// Matches `path` token by token, reporting each `:name` value; returns
    /// what is left after the tokens (empty unless open-ended), or `None`.
    fn walk<'p>(&self, path: &'p str, mut on_param: impl FnMut(&str, &'p str)) -> Option<&'p str> {
        let mut rest = path;
        for token in self.tokens.iter() {
            match token {
                Token::Literal(text) => rest = rest.strip_prefix(&**text)?,
                Token::Param(name) => {
                    let end = segment_end(rest);
                    if end == 0 {
                        return None;
                    }
                    on_param(name, &rest[..end]);
                    rest = &rest[end..];
                }
            }
        }
        (self.open_ended || rest.is_empty()).then_some(rest)
    }
}

/// Length of the first path segment of `s` (up to the next `/`).
fn segment_end(s: &str) -> usize {
    s.find('/').unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pattern_is_one_literal() {
        let p = UriPattern::parse("/a/b");
        assert!(p.is_exact());
        assert_eq!(p.static_prefix(), "/a/b");
        assert!(p.matches("/a/b"));
        assert!(!p.matches("/a/b/"));
    }

    #[test]
    fn param_pattern_prefix_stops_before_first_param() {
        let p = UriPattern::parse("/users/:id/orders");
        assert!(!p.is_exact());
        assert_eq!(p.static_prefix(), "/users/");
        assert_eq!(p.param("/users/42/orders", "id"), Some("42"));
        assert!(!p.matches("/users//orders"));
        assert!(!p.matches("/users/4/2/orders"));
    }

    #[test]
    fn open_ended_pattern_reports_its_wildcard() {
        let p = UriPattern::parse("/files/:bucket/*");
        assert_eq!(p.wildcard("/files/b1/x/y.txt"), Some("x/y.txt"));
        assert_eq!(p.param("/files/b1/x/y.txt", "bucket"), Some("b1"));
        let params: Vec<_> = p.params("/files/b1/x").collect();
        assert_eq!(params, vec![("bucket", "b1")]);
    }
}
