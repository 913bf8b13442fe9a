//! Feeds arbitrary bytes to weir's HTTP/1.1 fast path as a node's response
//! head: `response::parse` and the client head it writes (framing per RFC 9112,
//! at most one framing field, no hop-by-hop or Connection-named field, ...),
//! checked by `weir_proxy::h1::fuzzing::response_head`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_proxy::h1::fuzzing;

fuzz_target!(init: fuzzing::init(), |data: &[u8]| {
    fuzzing::response_head(data);
});
