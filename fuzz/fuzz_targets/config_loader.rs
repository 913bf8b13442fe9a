//! Feeds arbitrary bytes to `weir_config::load_str`: it must return Ok or
//! Err, never panic. Valid UTF-8 is passed as is; anything else is passed
//! through `from_utf8_lossy`, so every input exercises the loader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = weir_config::load_str(&text, "fuzz");
});
