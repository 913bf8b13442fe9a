//! The response-body phase: filters a plugin installs over one response's
//! body from its response-headers phase ([`crate::ResponseCtx::filter_body`]).
//!
//! A filter sees the body as it passes, decoded from its transfer coding,
//! piece by piece, and gives what the client gets instead. The transports
//! re-frame a filtered body (chunked over HTTP/1.1, DATA frames over
//! HTTP/2): its length is not known before it has passed. A filter keeps
//! only what it chooses to hold, and must bound it (`response-rewrite`
//! holds at most `max_resp_body_size`).

/// A response body filter. One instance serves one response.
pub trait BodyFilter: Send + Sync + 'static {
    /// The next piece of the body (`data`, possibly empty); `last`: no more
    /// follows. Appends what the client gets instead to `out` (nothing:
    /// hold it, or drop it).
    fn filter(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>);
}

/// The filters over one response, applied in the order they were installed
/// (the response-headers phase's order: priority, higher first).
#[derive(Default)]
pub struct BodyFilters {
    filters: Vec<Box<dyn BodyFilter>>,
    /// Scratch between two filters of the chain.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for BodyFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyFilters")
            .field("filters", &self.filters.len())
            .finish()
    }
}

impl BodyFilters {
    /// Adds a filter after those already installed.
    pub fn push(&mut self, filter: Box<dyn BodyFilter>) {
        self.filters.push(filter);
    }

    /// True when no filter is installed.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Passes `data` through every filter in turn; appends what comes out
    /// of the last one to `out`.
    pub fn run(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) {
        let Some((final_filter, first)) = self.filters.split_last_mut() else {
            out.extend_from_slice(data);
            return;
        };
        if first.is_empty() {
            final_filter.filter(data, last, out);
            return;
        }
        let mut input = std::mem::take(&mut self.scratch);
        input.clear();
        input.extend_from_slice(data);
        let mut next = Vec::new();
        for f in first {
            next.clear();
            f.filter(&input, last, &mut next);
            std::mem::swap(&mut input, &mut next);
        }
        final_filter.filter(&input, last, out);
        self.scratch = input;
    }

    /// Filters a whole body known at once (weir's own replies).
    pub fn run_whole(&mut self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len());
        self.run(body, true, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper-cases what passes.
    struct Upper;
    impl BodyFilter for Upper {
        fn filter(&mut self, data: &[u8], _last: bool, out: &mut Vec<u8>) {
            out.extend(data.iter().map(u8::to_ascii_uppercase));
        }
    }

    /// Holds everything, then gives it reversed.
    #[derive(Default)]
    struct Reverse(Vec<u8>);
    impl BodyFilter for Reverse {
        fn filter(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) {
            self.0.extend_from_slice(data);
            if last {
                out.extend(self.0.iter().rev());
            }
        }
    }

    #[test]
    fn filters_chain_in_order() {
        let mut chain = BodyFilters::default();
        assert_eq!(chain.run_whole(b"as is"), b"as is");
        chain.push(Box::new(Reverse::default()));
        chain.push(Box::new(Upper));
        let mut out = Vec::new();
        chain.run(b"ab", false, &mut out);
        assert!(out.is_empty(), "held until the end");
        chain.run(b"c", false, &mut out);
        chain.run(b"", true, &mut out);
        assert_eq!(out, b"CBA");
    }
}
