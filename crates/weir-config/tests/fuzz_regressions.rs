//! Regression guard for the `config_loader` fuzz target (see docs/fuzzing.md).
//!
//! Replays every input of the minimized fuzz corpus, `fuzz/corpus/config_loader/`,
//! through `weir_config::load_str` exactly as the fuzz target does: the loader
//! may accept or reject an input, but it must never panic. Inputs that once
//! crashed the loader are kept in `fuzz/artifacts-kept/config_loader/` and
//! replayed here too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// What the fuzz target does with one input.
fn load(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = weir_config::load_str(&text, "fuzz");
}

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

/// Runs every file through `load`, returning the names of those that panicked
/// (each panic is also printed by the default hook).
fn replay(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| load(&data))).is_err()
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn config_loader_corpus_never_panics() {
    let files = inputs(&fuzz_dir("corpus/config_loader"));
    assert!(
        !files.is_empty(),
        "fuzz/corpus/config_loader is missing or empty"
    );
    let failed = replay(&files);
    assert!(failed.is_empty(), "load_str panicked on: {failed:#?}");
}

#[test]
fn config_loader_kept_artifacts_never_panic() {
    let failed = replay(&inputs(&fuzz_dir("artifacts-kept/config_loader")));
    assert!(failed.is_empty(), "load_str panicked on: {failed:#?}");
}
