//! Regression guard for the HTTP/1.1 fast path's fuzz targets
//! (`h1_request_head`, `h1_response_head`, `h1_chunked`; see
//! docs/fuzzing.md).
//!
//! Replays every input of the minimized fuzz corpora, `fuzz/corpus/<target>/`,
//! through the same entry points the fuzz targets call
//! (`weir_proxy::h1::fuzzing`), which run weir's real parsers and panic when
//! an invariant breaks (request smuggling, response splitting, a chunked
//! body ending elsewhere than a reference parser says). Inputs that once
//! broke one are kept in `fuzz/artifacts-kept/<target>/` and replayed here
//! too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use weir_proxy::h1::fuzzing;

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(sub)
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file through `check`, returning the names of those that
/// panicked (each panic is also printed by the default hook).
fn replay(files: &[PathBuf], check: fn(&[u8])) -> Vec<String> {
    fuzzing::init();
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|f| f.display().to_string())
        .collect()
}

fn corpus(target: &str, check: fn(&[u8])) {
    let files = inputs(&fuzz_dir(&format!("corpus/{target}")));
    assert!(
        !files.is_empty(),
        "fuzz/corpus/{target} is missing or empty"
    );
    let failed = replay(&files, check);
    assert!(
        failed.is_empty(),
        "{target}: invariant broken by {failed:#?}"
    );
}

fn kept(target: &str, check: fn(&[u8])) {
    let failed = replay(
        &inputs(&fuzz_dir(&format!("artifacts-kept/{target}"))),
        check,
    );
    assert!(
        failed.is_empty(),
        "{target}: invariant broken by {failed:#?}"
    );
}

#[test]
fn h1_request_head_corpus_keeps_the_invariants() {
    corpus("h1_request_head", fuzzing::request_head);
}

#[test]
fn h1_response_head_corpus_keeps_the_invariants() {
    corpus("h1_response_head", fuzzing::response_head);
}

#[test]
fn h1_chunked_corpus_keeps_the_invariants() {
    corpus("h1_chunked", fuzzing::chunked);
}

#[test]
fn h1_kept_artifacts_keep_the_invariants() {
    kept("h1_request_head", fuzzing::request_head);
    kept("h1_response_head", fuzzing::response_head);
    kept("h1_chunked", fuzzing::chunked);
}

/// Found by `h1_request_head` (minimized): `real-ip` (route `/real/*` of the
/// fuzzing configuration, source `http_x_real_ip`) panics when the value
/// ends in a non-ASCII character — any byte >= 0x80, after lossy UTF-8
/// decoding. `parse_addr` (crates/weir-plugins/src/real_ip.rs) slices
/// `s[..s.len() - 1]`, which is not a char boundary then. The panic ends the
/// connection's task, on both paths; any client can trigger it on a route or
/// global rule with `real-ip`.
#[test]
fn h1_real_ip_value_ending_in_non_ascii() {
    fuzzing::init();
    fuzzing::request_head(b"GET /real/x HTTP/1.1\r\nHost: a\r\nX-Real-IP: \xc3\xa9\r\n\r\n");
    fuzzing::request_head(b"GET /real/x HTTP/1.1\r\nHost: a\r\nX-Real-IP: [\xff\r\n\r\n");
}
