//! Regression guard for the `watch_event` fuzz target (see docs/fuzzing.md).
//!
//! Replays every input of the minimized fuzz corpus, `fuzz/corpus/watch_event/`,
//! exactly as the fuzz target does: the bytes are one watch line, decoded with
//! serde_json as `WatchEvent<Endpoints>` and `WatchEvent<EndpointSlice>` (both
//! k8s-openapi's and kube's, the one kube's watcher uses), and every object
//! that decodes goes through the public node-set builders of
//! `weir_discovery::kubernetes::nodes`. Nothing may panic. Inputs that once
//! crashed are kept in `fuzz/artifacts-kept/watch_event/` and replayed too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent as OpenApiEvent;
use kube::core::WatchEvent as KubeEvent;
use weir_discovery::kubernetes::nodes;

fn endpoints(ep: &Endpoints) {
    let a = nodes::endpoints_contribution(ep, 100);
    let b = nodes::endpoints_contribution(ep, 0);
    let _ = nodes::merge([&a, &b]);
}

fn slice(s: &EndpointSlice) {
    let _ = nodes::slice_service_key(s);
    let a = nodes::slice_contribution(s, 100);
    let b = nodes::slice_contribution(s, u32::MAX);
    let _ = nodes::merge([&a, &b]);
}

fn openapi<K: serde::de::DeserializeOwned>(data: &[u8], f: fn(&K)) {
    if let Ok(OpenApiEvent::Added(o) | OpenApiEvent::Modified(o) | OpenApiEvent::Deleted(o)) =
        serde_json::from_slice::<OpenApiEvent<K>>(data)
    {
        f(&o);
    }
}

fn kube<K: serde::de::DeserializeOwned>(data: &[u8], f: fn(&K)) {
    if let Ok(KubeEvent::Added(o) | KubeEvent::Modified(o) | KubeEvent::Deleted(o)) =
        serde_json::from_slice::<KubeEvent<K>>(data)
    {
        f(&o);
    }
}

/// What the fuzz target does with one input.
fn decode(data: &[u8]) {
    openapi::<Endpoints>(data, endpoints);
    openapi::<EndpointSlice>(data, slice);
    kube::<Endpoints>(data, endpoints);
    kube::<EndpointSlice>(data, slice);
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

/// Runs every file through `decode`, returning the names of those that panicked
/// (each panic is also printed by the default hook).
fn replay(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).expect("corpus file is readable");
            catch_unwind(AssertUnwindSafe(|| decode(&data))).is_err()
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn watch_event_corpus_never_panics() {
    let files = inputs(&fuzz_dir("corpus/watch_event"));
    assert!(
        !files.is_empty(),
        "fuzz/corpus/watch_event is missing or empty"
    );
    let failed = replay(&files);
    assert!(
        failed.is_empty(),
        "watch event decoding panicked on: {failed:#?}"
    );
}

#[test]
fn watch_event_kept_artifacts_never_panic() {
    let failed = replay(&inputs(&fuzz_dir("artifacts-kept/watch_event")));
    assert!(
        failed.is_empty(),
        "watch event decoding panicked on: {failed:#?}"
    );
}

/// The recorded watch lines (the fuzz seeds) still decode and build nodes.
#[test]
fn recorded_watch_lines_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/k8s-recordings");
    for (file, is_slice) in [
        ("endpoints-watch.jsonl", false),
        ("endpointslices-watch.jsonl", true),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("recording is readable");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if is_slice {
                let ev: KubeEvent<EndpointSlice> =
                    serde_json::from_str(line).expect("line decodes");
                if let KubeEvent::Added(o) | KubeEvent::Modified(o) | KubeEvent::Deleted(o) = ev {
                    slice(&o);
                }
            } else {
                let ev: KubeEvent<Endpoints> = serde_json::from_str(line).expect("line decodes");
                if let KubeEvent::Added(o) | KubeEvent::Modified(o) | KubeEvent::Deleted(o) = ev {
                    endpoints(&o);
                }
            }
        }
    }
}
