//! Request routing with APISIX `radixtree_host_uri` semantics.
//!
//! Lookup order, first acceptable route wins:
//!
//! 1. Routes whose host list holds the request host exactly.
//! 2. Routes with a wildcard host (`*.example.com`) that covers the request
//!    host, the longest wildcard suffix first.
//! 3. Routes without hosts.
//!
//! Within each of those host groups the path decides: exact patterns first,
//! then patterns with `:name` segments or a trailing `*`, longest literal
//! prefix first; between routes with the same literal prefix, higher
//! `priority`, then the longer pattern, then configuration order. A route whose
//! methods do not include the request method is passed over and the search
//! goes on. `docs/routing.md` has worked examples.

mod pattern;
mod trie;

use std::collections::HashMap;
use std::fmt;

use http::Method;

use self::pattern::UriPattern;
use self::trie::PrefixTrie;

/// Longest host name that can match an exact route host (DNS limit).
const MAX_HOST_LEN: usize = 253;

/// A route as the router needs it; the value is what a match hands back.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Route id, reported with every match.
    pub id: String,
    /// Path patterns: `/exact`, `/prefix/*`, `/prefix*`, `/users/:id`.
    pub uris: Vec<String>,
    /// Host patterns: `example.com` or `*.example.com`; empty matches every host.
    pub hosts: Vec<String>,
    /// Accepted methods; empty accepts every method.
    pub methods: Vec<Method>,
    /// Higher wins between routes whose hosts and literal path prefixes tie.
    pub priority: i64,
    /// Whatever the caller attaches to the route (upstream, plugins...).
    pub value: T,
}

/// All enabled routes, indexed by host and path for lookup.
pub struct RouteTable<T> {
    routes: Vec<IndexedRoute<T>>,
    patterns: Vec<UriPattern>,
    exact_hosts: HashMap<Box<str>, PathIndex>,
    /// Keyed by the reversed wildcard suffix (`*.example.com` -> `moc.elpmaxe.`),
    /// so the longest suffix is the deepest trie match.
    wildcard_hosts: PrefixTrie<PathIndex>,
    any_host: PathIndex,
}

/// A successful lookup: the route and the path parameters it captured.
pub struct RouteMatch<'a, T> {
    /// The matched route's value.
    pub value: &'a T,
    /// The matched route's id.
    pub route_id: &'a str,
    pattern: &'a UriPattern,
    path: &'a str,
}

struct IndexedRoute<T> {
    id: String,
    methods: Vec<Method>,
    priority: i64,
    value: T,
}

/// One (route, uri pattern) pair filed under a host group.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    route: u32,
    pattern: u32,
}

/// The path side of one host group.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    /// Keyed by each pattern's literal prefix; buckets are sorted by precedence.
    prefixes: PrefixTrie<Vec<Candidate>>,
}

impl<T> RouteTable<T> {
    /// Indexes already validated routes; their order is the final tie-breaker.
    pub fn build(routes: Vec<RouteSpec<T>>) -> RouteTable<T> {
        let mut table = RouteTable {
            routes: Vec::with_capacity(routes.len()),
            patterns: Vec::new(),
            exact_hosts: HashMap::new(),
            wildcard_hosts: PrefixTrie::default(),
            any_host: PathIndex::default(),
        };
        for (route_index, spec) in routes.into_iter().enumerate() {
            let mut candidates = Vec::with_capacity(spec.uris.len());
            for uri in &spec.uris {
                candidates.push(Candidate {
                    route: route_index as u32,
                    pattern: table.patterns.len() as u32,
                });
                table.patterns.push(UriPattern::parse(uri));
            }
            if spec.hosts.is_empty() {
                table.any_host.insert(&candidates, &table.patterns);
            }
            for host in &spec.hosts {
                let host = host.to_ascii_lowercase();
                let index = match host.strip_prefix('*') {
                    Some(suffix) => table
                        .wildcard_hosts
                        .entry(suffix.bytes().rev(), PathIndex::default),
                    None => table.exact_hosts.entry(host.into()).or_default(),
                };
                index.insert(&candidates, &table.patterns);
            }
            table.routes.push(IndexedRoute {
                id: spec.id,
                methods: spec.methods,
                priority: spec.priority,
                value: spec.value,
            });
        }
        table.wildcard_hosts.seal();
        let (routes, patterns) = (&table.routes, &table.patterns);
        let indexes = table
            .exact_hosts
            .values_mut()
            .chain(table.wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut table.any_host));
        for index in indexes {
            index.seal(routes, patterns);
        }
        table
    }

    /// The route for a request, or `None` (answer 404).
    ///
    /// `host` is the Host header or `:authority` (a `:port` suffix and a
    /// trailing dot are ignored, case does not matter); `path` is the request
    /// path without the query string. Path parameters borrow from `path`.
    pub fn find<'a>(
        &'a self,
        host: &str,
        path: &'a str,
        method: &Method,
    ) -> Option<RouteMatch<'a, T>> {
        self.find_where(host, path, method, |_| true)
    }

    /// Like [`RouteTable::find`], skipping routes whose value `admits`
    /// refuses (a route's `vars` or `remote_addrs` not met): the search goes
    /// on to the next candidate, as APISIX's router does.
    pub fn find_where<'a>(
        &'a self,
        host: &str,
        path: &'a str,
        method: &Method,
        admits: impl Fn(&T) -> bool,
    ) -> Option<RouteMatch<'a, T>> {
        let admits = &admits;
        let host = host_name(host);
        if host.len() <= MAX_HOST_LEN {
            let mut buffer = [0u8; MAX_HOST_LEN];
            if let Some(index) = lowercase(host, &mut buffer).and_then(|h| self.exact_hosts.get(h))
            {
                if let Some(found) = index.find(self, path, method, admits) {
                    return Some(found);
                }
            }
        }
        let reversed = host.bytes().rev().map(|b| b.to_ascii_lowercase());
        for index in self.wildcard_hosts.prefixes_of(reversed) {
            if let Some(found) = index.find(self, path, method, admits) {
                return Some(found);
            }
        }
        self.any_host.find(self, path, method, admits)
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route behind a candidate if it accepts `method`.
    fn accept<'a>(
        &'a self,
        candidate: Candidate,
        path: &'a str,
        method: &Method,
    ) -> Option<RouteMatch<'a, T>> {
        let route = &self.routes[candidate.route as usize];
        if !route.methods.is_empty() && !route.methods.contains(method) {
            return None;
        }
        Some(RouteMatch {
            value: &route.value,
            route_id: &route.id,
            pattern: &self.patterns[candidate.pattern as usize],
            path,
        })
    }
}

impl<T> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .field("exact_hosts", &self.exact_hosts.len())
            .finish_non_exhaustive()
    }
}

impl<'a, T> RouteMatch<'a, T> {
    /// The value of a `:name` path segment, e.g. `param("id")` for `/users/:id`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.pattern.param(self.path, name)
    }

    /// Every `:name` segment with its value, in pattern order.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a, T> {
        self.pattern.params(self.path)
    }

    /// What the trailing `*` of the pattern matched; `None` without one.
    pub fn wildcard(&self) -> Option<&'a str> {
        self.pattern.wildcard(self.path)
    }

    /// The uri pattern that matched, as configured (APISIX's `_path`).
    pub fn uri_pattern(&self) -> &'a str {
        self.pattern.source()
    }
}

impl<T> fmt::Debug for RouteMatch<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMatch")
            .field("route_id", &self.route_id)
            .field("uri_pattern", &self.uri_pattern())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PathIndex {
    fn insert(&mut self, candidates: &[Candidate], patterns: &[UriPattern]) {
        for &candidate in candidates {
            let pattern = &patterns[candidate.pattern as usize];
            let bucket = if pattern.is_exact() {
                self.exact.entry(pattern.source().into()).or_default()
            } else {
                self.prefixes
                    .entry(pattern.static_prefix().bytes(), Vec::new)
            };
            bucket.push(candidate);
        }
    }

    /// Orders every bucket by precedence; candidates arrive in config order
    /// and the sorts are stable, so config order breaks the remaining ties.
    fn seal<T>(&mut self, routes: &[IndexedRoute<T>], patterns: &[UriPattern]) {
        let priority = |c: &Candidate| routes[c.route as usize].priority;
        for bucket in self.exact.values_mut() {
            bucket.sort_by_key(|c| std::cmp::Reverse(priority(c)));
        }
        for bucket in self.prefixes.values_mut() {
            bucket.sort_by_key(|c| {
                let pattern_len = patterns[c.pattern as usize].source().len();
                std::cmp::Reverse((priority(c), pattern_len))
            });
        }
        self.prefixes.seal();
    }

    fn find<'a, T>(
        &'a self,
        table: &'a RouteTable<T>,
        path: &'a str,
        method: &Method,
        admits: &impl Fn(&T) -> bool,
    ) -> Option<RouteMatch<'a, T>> {
        if let Some(bucket) = self.exact.get(path) {
            let found = bucket.iter().find_map(|&c| {
                table
                    .accept(c, path, method)
                    .filter(|found| admits(found.value))
            });
            if found.is_some() {
                return found;
            }
        }
        self.prefixes.prefixes_of(path.bytes()).find_map(|bucket| {
            bucket.iter().find_map(|&c| {
                let found = table.accept(c, path, method)?;
                (found.pattern.matches(path) && admits(found.value)).then_some(found)
            })
        })
    }
}

/// `host` without a `:port` suffix (`[::1]:80` keeps its brackets), as
/// shown in logs and given to plugins.
pub fn strip_port(h: &str) -> &str {
    // The cut is at an ASCII `:` or just after an ASCII `]`: a char boundary.
    let kept = strip_port_bytes(h.as_bytes()).len();
    h.get(..kept).unwrap_or(h)
}

/// [`strip_port`] on raw bytes (a Host field as received).
pub fn strip_port_bytes(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return h.iter().position(|&b| b == b']').map_or(h, |i| &h[..=i]);
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(i) if h[i + 1..].iter().all(u8::is_ascii_digit) => &h[..i],
        _ => h,
    }
}

/// The host name of a Host header value: without `:port`, IPv6 brackets or a
/// trailing dot.
fn host_name(host: &str) -> &str {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split_once(']').map_or(bracketed, |(ip, _)| ip)
    } else {
        match host.split_once(':') {
            // One colon: `name:port`. More: a bare IPv6 address, keep it whole.
            Some((name, port)) if !port.contains(':') => name,
            _ => host,
        }
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// `host` in lower case, copied into `buffer` only when it has upper-case letters.
fn lowercase<'b>(host: &'b str, buffer: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(host);
    }
    let out = buffer.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
