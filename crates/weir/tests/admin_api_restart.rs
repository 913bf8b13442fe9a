//! The real binary with a state file: a restart serves what the Admin API
//! acknowledged, a `kill -9` in the middle of a stream of writes loses
//! none of the acknowledged ones, and a second weir on the same state file
//! refuses to start (the lock) instead of overwriting the first one's.

mod admin_kit;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use admin_kit::{wait_proxy, Admin};
use common::{Backend, WeirProcess};
use http::StatusCode;
use serde_json::{json, Value};

fn config(dir: &std::path::Path) -> String {
    format!(
        "gateway:\n  listeners: [{{address: \"127.0.0.1:0\"}}]\n  control: {{address: \"127.0.0.1:0\"}}\n  access_log: {{enabled: false}}\n{}",
        admin_kit::deployment(Some(&dir.join("admin-state.json")))
    )
}

/// Starts `weir run` on a fresh directory with a state file there.
fn first_start() -> (WeirProcess, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, config(dir.path())).expect("write config");
    let mut weir = WeirProcess::spawn(dir, path.clone());
    weir.wait_listening();
    (weir, path)
}

/// Stops nothing: starts a new `weir run` on the directory of `old`, which
/// must have exited.
fn restart(mut old: WeirProcess, path: std::path::PathBuf) -> WeirProcess {
    let dir = std::mem::replace(&mut old.dir, tempfile::tempdir().expect("dir"));
    drop(old);
    let mut weir = WeirProcess::spawn(dir, path);
    weir.wait_listening();
    weir
}

fn admin(weir: &WeirProcess) -> Admin {
    Admin::new(weir.admin.expect("the Admin API announced its address"))
}

#[tokio::test]
async fn a_restart_serves_exactly_what_was_acknowledged() {
    let backend = Backend::start("kept").await;
    let (mut weir, path) = first_start();
    let a = admin(&weir);
    a.put_ok(
        "/apisix/admin/upstreams/u",
        json!({"nodes": {backend.node(): 1}}),
    )
    .await;
    a.put_ok(
        "/apisix/admin/routes/r1",
        json!({"uri": "/r1", "upstream_id": "u", "desc": "v1"}),
    )
    .await;
    a.put_ok(
        "/apisix/admin/routes/r2",
        json!({"uri": "/r2", "upstream_id": "u"}),
    )
    .await;
    a.put_ok(
        "/apisix/admin/consumers/ann",
        json!({"username": "ann", "plugins": {"key-auth": {"key": "ann-k"}}}),
    )
    .await;
    let p = a
        .call(
            "PATCH",
            "/apisix/admin/routes/r1",
            Some(json!({"desc": "v2"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(
        a.delete("/apisix/admin/routes/r2").await.status,
        StatusCode::OK
    );
    wait_proxy(weir.proxy, "/r1", "route r1", |s, _| s == StatusCode::OK).await;
    let keys = ["upstreams/u", "routes/r1", "consumers/ann"];
    let mut before = Vec::new();
    for k in keys {
        let g = a.get(&format!("/apisix/admin/{k}")).await;
        assert_eq!(g.status, StatusCode::OK, "{k}");
        before.push(g.json);
    }

    weir.signal("TERM");
    assert_eq!(weir.wait_exit(), Some(0));
    let weir = restart(weir, path);
    let a = admin(&weir);
    for (k, was) in keys.iter().zip(&before) {
        let g = a.get(&format!("/apisix/admin/{k}")).await;
        assert_eq!(&g.json, was, "{k} as acknowledged, indexes included");
    }
    assert_eq!(
        a.get("/apisix/admin/routes/r1").await.json["value"]["desc"],
        "v2"
    );
    assert_eq!(
        a.get("/apisix/admin/routes/r2").await.status,
        StatusCode::NOT_FOUND,
        "the delete stands"
    );
    let r = wait_proxy(weir.proxy, "/r1", "route r1 after the restart", |s, _| {
        s == StatusCode::OK
    })
    .await;
    assert_eq!(r.backend(), "kept");
    assert_eq!(
        common::get(weir.proxy, None, "/r2").await.status,
        StatusCode::NOT_FOUND
    );
    // The index goes on from where it was.
    let highest = before
        .iter()
        .filter_map(|v| v["modifiedIndex"].as_u64())
        .max()
        .expect("indexes");
    a.put_ok(
        "/apisix/admin/routes/r3",
        json!({"uri": "/r3", "upstream_id": "u"}),
    )
    .await;
    let g = a.get("/apisix/admin/routes/r3").await;
    assert!(
        g.json["createdIndex"].as_u64().expect("index") > highest + 1,
        "{} after {highest}",
        g.text
    );
}

#[tokio::test]
async fn a_second_weir_on_the_same_state_file_refuses_to_start() {
    let (first, path) = first_start();
    let a = admin(&first);
    a.put_ok(
        "/apisix/admin/routes/one",
        json!({"uri": "/one", "upstream": {"nodes": {"127.0.0.1:9": 1}}}),
    )
    .await;
    // Another weir, its own configuration file naming the same state file.
    let other = tempfile::tempdir().expect("dir");
    let other_path = other.path().join("weir.yaml");
    std::fs::copy(&path, &other_path).expect("copy config");
    let mut second = WeirProcess::spawn(other, other_path);
    let line = second.wait_log(|v| v["level"] == "ERROR");
    let msg = line["message"].as_str().unwrap_or_default();
    let state = path.with_file_name("admin-state.json");
    assert!(
        msg.contains(&state.display().to_string())
            && msg.contains("admin-state.json.lock")
            && msg.contains("another weir"),
        "{msg}"
    );
    assert_eq!(second.wait_exit(), Some(1), "the second weir exits");
    // The first one is untouched and still writes.
    a.put_ok(
        "/apisix/admin/routes/two",
        json!({"uri": "/two", "upstream": {"nodes": {"127.0.0.1:9": 1}}}),
    )
    .await;
    // Once it is gone (the lock goes with the process, even on kill -9), a
    // new weir starts on the file and has both writes.
    let weir = restart(first, path);
    let a = admin(&weir);
    for id in ["one", "two"] {
        let g = a.get(&format!("/apisix/admin/routes/{id}")).await;
        assert_eq!(g.status, StatusCode::OK, "{id}: {}", g.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_stream_of_writes_loses_no_acknowledged_write() {
    let (mut weir, path) = first_start();
    let a = admin(&weir);
    a.put_ok(
        "/apisix/admin/upstreams/u",
        json!({"nodes": {"127.0.0.1:1980": 1}}),
    )
    .await;
    let acked: Arc<Mutex<Vec<(String, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (a, acked) = (a.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let body = json!({"uri": format!("/w/{w}/{i}"), "upstream_id": "u", "desc": format!("write {i} of {w}")});
                match a.try_put(&format!("/apisix/admin/routes/{id}"), body).await {
                    Some(r) if r.status == StatusCode::CREATED => {
                        let mut acked = acked.lock().expect("lock");
                        acked.push((id, r.json["value"].clone()));
                    }
                    Some(r) => panic!("write {id}: {} {}", r.status, r.text),
                    None => return i,
                }
            }
            unreachable!()
        }));
    }
    // Kill once plenty of writes are acknowledged, while they go on.
    tokio::time::timeout(Duration::from_secs(60), async {
        while acked.lock().expect("lock").len() < 60 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("60 writes acknowledged within 60 s");
    weir.child.kill().expect("kill -9");
    let _ = weir.child.wait();
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop once weir is gone")
            .expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 60);

    let weir = restart(weir, path);
    let a = admin(&weir);
    for (id, value) in &acked {
        let g = a.get(&format!("/apisix/admin/routes/{id}")).await;
        assert_eq!(
            g.status,
            StatusCode::OK,
            "acknowledged {id} lost after kill -9"
        );
        assert_eq!(&g.json["value"], value, "{id} as acknowledged");
    }
    let total = a.get("/apisix/admin/routes").await.json["total"]
        .as_u64()
        .expect("total");
    assert!(total as usize >= acked.len(), "{total} < {}", acked.len());
    let (id, _) = &acked[acked.len() - 1];
    let uri = format!("/w/{}", id[1..].replacen('-', "/", 1));
    wait_proxy(
        weir.proxy,
        &uri,
        "the last acknowledged route served",
        |s, _| s == StatusCode::BAD_GATEWAY || s == StatusCode::OK,
    )
    .await;
}
