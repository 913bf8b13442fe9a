//! Feeds arbitrary Admin API writes (two selector bytes: resource type,
//! method / id / PATCH sub-path; then the request body) through what a write
//! does before it is stored: JSON decoding, APISIX's write rules, the merge
//! with the file and the configuration's validation, and `schema/validate`.
//! Each may refuse the input; none may panic. See
//! `weir_admin::fuzzing::admin_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_admin::fuzzing::admin_body(data);
});
