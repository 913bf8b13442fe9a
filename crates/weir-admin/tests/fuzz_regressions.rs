//! Regression guard for the `admin_body` fuzz target (see docs/fuzzing.md).
//!
//! Replays every input of `fuzz/corpus/admin_body/` (and any crash kept in
//! `fuzz/artifacts-kept/admin_body/`) through `weir_admin::fuzzing::admin_body`,
//! exactly what the fuzz target runs: an input may be refused, never panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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

/// The files on which `admin_body` panicked.
fn replay(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| weir_admin::fuzzing::admin_body(&data))).is_err()
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn admin_body_corpus_never_panics() {
    let files = inputs(&fuzz_dir("corpus/admin_body"));
    assert!(
        files.len() >= 20,
        "fuzz/corpus/admin_body is missing or lost its seeds ({} files)",
        files.len()
    );
    assert!(
        weir_admin::fuzzing::fixture_ready(),
        "the fuzz fixture (weir_admin::fuzzing::FILE and its Admin API resources) no longer loads"
    );
    let failed = replay(&files);
    assert!(failed.is_empty(), "admin_body panicked on: {failed:#?}");
}

#[test]
fn admin_body_kept_artifacts_never_panic() {
    let failed = replay(&inputs(&fuzz_dir("artifacts-kept/admin_body")));
    assert!(failed.is_empty(), "admin_body panicked on: {failed:#?}");
}

/// The seeds reach the write rules, not only the JSON decoder: a valid PUT
/// of a route plans, and a PUT over the file's route is refused by name.
#[test]
fn admin_body_seeds_exercise_the_write_path() {
    use serde_json::json;
    use weir_admin::kind::Kind;
    use weir_admin::ops::{plan, Write};
    let file = weir_config::load_str(
        "routes:\n  - id: file-route\n    uri: /file\n    upstream: {type: roundrobin, nodes: {\"127.0.0.1:1980\": 1}}\n",
        "test",
    )
    .expect("fixture loads");
    let (hub, _) = weir_admin::ConfigHub::open(file).expect("hub opens");
    let view = hub.view();
    let write = |id: &str| Write {
        method: http::Method::PUT,
        kind: Kind::Route,
        owner: None,
        id: Some(id.to_owned()),
        sub_path: None,
        body: Some(
            json!({"uri": "/a", "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}}),
        ),
        force: false,
    };
    assert!(plan(&view, write("1"), 1).is_ok());
    let refused = plan(&view, write("file-route"), 1)
        .err()
        .expect("a file route is read-only");
    assert!(refused.to_string().contains("file-route"), "{refused}");
}
