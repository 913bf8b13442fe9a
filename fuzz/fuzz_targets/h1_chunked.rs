//! Feeds arbitrary bytes to weir's chunked-body scanner and decoder: any split
//! of the input scans like the whole, the end and the data agree with a
//! reference parser and httparse's chunk-size reader, checked by
//! `weir_proxy::h1::fuzzing::chunked` (the scanner lives in `weir_http::chunked`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_proxy::h1::fuzzing;

fuzz_target!(init: fuzzing::init(), |data: &[u8]| {
    fuzzing::chunked(data);
});
