//! Feeds arbitrary bytes to weir's HTTP/1.1 fast path as a client's request head:
//! `request::parse` (routing, plugins) and, when it accepts the request, the
//! upstream head it writes. The invariants (one Host, one framing field
//! announcing weir's framing, no hop-by-hop field, ...) are checked by
//! `weir_proxy::h1::fuzzing::request_head`, which panics on a violation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_proxy::h1::fuzzing;

fuzz_target!(init: fuzzing::init(), |data: &[u8]| {
    fuzzing::request_head(data);
});
