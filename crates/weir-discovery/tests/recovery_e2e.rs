//! Recovery end to end, timed at the fake API server: a 410 re-lists at
//! once (no backoff step), the first 401 re-reads `token_file` and retries
//! at once, the dump tells a past error from a present one, and a
//! kubeconfig's server is what the dump shows.

mod common;

use std::time::Duration;

use common::*;
use weir_testkit::kube_api::{FakeApiServer, ResourceKind};

/// After an API-server restart: connection refused, then a 403 (RBAC cache
/// not loaded yet), then the resumed watch gets 410 Gone. The re-list
/// follows the 410 at once, not after the backoff step the 403 earned.
#[tokio::test]
async fn gone_relists_at_once_after_refused_and_403() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let h = Harness::start(&single_yaml(&api, ""), &[]);
    h.ready().await;
    bounded(
        "watch",
        api.wait_for_watchers(ResourceKind::Endpoints, 1, WAIT),
    )
    .await
    .unwrap();

    // Down: the watch breaks and reconnecting is refused. Meanwhile the
    // store moves on and the watch cache is lost, as in a restart.
    api.stop().await;
    api.bump_resource_version(5);
    api.compact();
    api.apply_endpoints(cart(&["10.0.0.2"]));
    let refused = wait_until(WAIT, || {
        let s = h.discovery.sync_states()[0].1.clone();
        s.last_error
            .clone()
            .filter(|e| e.contains("refused") && !s.connected)
    })
    .await;
    assert!(
        refused.is_some(),
        "connection refused not reported: {}",
        h.discovery.dump()
    );

    // Back, answering the first request 403; later ones normally.
    api.clear_requests();
    api.fail_requests(403, 1);
    api.resume().await.unwrap();
    h.wait_hosts("shop/cart:http", &["10.0.0.2:80"]).await;

    let reqs = api.requests();
    let forbidden = &reqs[0];
    let gone = &reqs[1];
    let relist = &reqs[2];
    assert!(forbidden.is_watch(), "{reqs:#?}");
    assert!(
        gone.is_watch() && gone.query_param("resourceVersion").is_some(),
        "the resumed watch, answered 410: {reqs:#?}"
    );
    assert!(!relist.is_watch(), "then a list: {reqs:#?}");
    let backoff = gone.at - forbidden.at;
    let relist_after = relist.at - gone.at;
    eprintln!("403 -> resumed watch: {backoff:?} (backoff); 410 -> list: {relist_after:?}");
    // The 403 was at least the second error in a row: its step is >= 0.8 s.
    assert!(backoff >= Duration::from_millis(700), "{backoff:?}");
    assert!(
        relist_after < Duration::from_millis(250) && relist_after * 3 < backoff,
        "the re-list waited {relist_after:?} after the 410 (backoff step before it: {backoff:?})"
    );

    // Past and present told apart: the error stays with its time, and the
    // recovery is stamped after it.
    let s = h.discovery.sync_states()[0].1.clone();
    assert!(s.connected, "{s:?}");
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("403"),
        "{s:?}"
    );
    let (err_at, recovered_at) = (
        s.last_error_unix.expect("error time"),
        s.recovered_at_unix.expect("recovery time"),
    );
    assert!(recovered_at >= err_at, "{s:?}");
    assert!(s.relists_after_gone >= 1, "{s:?}");
    let dump = h.discovery.dump();
    assert!(dump["sync"][0]["recovered_at_unix"].is_f64(), "{dump}");
    assert!(dump["sync"][0]["last_error_unix"].is_f64(), "{dump}");
}

/// A revoked token, replaced in `token_file` in a way the per-request stat
/// check cannot see (same size, same modification time, as on a file system
/// with coarse timestamps): the 401 itself makes weir read the file again,
/// and the retry follows at once with the new token.
#[tokio::test]
async fn a_401_rereads_the_token_file_and_retries_at_once() {
    let (api, h, token_file, _dir) = token_file_harness().await;
    bounded(
        "watch",
        api.wait_for_watchers(ResourceKind::Endpoints, 1, WAIT),
    )
    .await
    .unwrap();

    let mtime = std::fs::metadata(&token_file).unwrap().modified().unwrap();
    std::fs::write(&token_file, "new-token\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&token_file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    api.set_tokens(&["new-token"], &[]);
    api.clear_requests();
    api.cut_watches();
    api.apply_endpoints(cart(&["10.0.0.2"]));
    h.wait_hosts("shop/cart:http", &["10.0.0.2:80"]).await;

    let s = h.discovery.sync_states()[0].1.clone();
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("401"),
        "the old token was refused first: {s:?}"
    );
    let reqs = api.requests();
    assert!(reqs.len() >= 2, "{reqs:#?}");
    let retry_after = reqs[1].at - reqs[0].at;
    eprintln!("401 -> retry with the new token: {retry_after:?}");
    assert!(
        retry_after < Duration::from_millis(250),
        "the retry after the 401 waited {retry_after:?}"
    );
    assert!(
        !format!("{s:?}").contains("token\""),
        "no token in the sync state"
    );
}

/// With a kubeconfig, the dump shows the kubeconfig and the server it
/// names, not the in-cluster defaults.
#[tokio::test]
async fn kubeconfig_dump_shows_the_server_used() {
    let api = FakeApiServer::start().await.unwrap();
    api.apply_endpoints(cart(&["10.0.0.1"]));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig("test-token")).unwrap();
    let yaml = format!(
        "kubernetes:\n  client: {{kubeconfig: '{}'}}\n  watch_idle_timeout: 5\n",
        kubeconfig.display()
    );
    let h = Harness::start(&yaml, &[]);
    h.ready().await;
    h.wait_hosts("shop/cart:http", &["10.0.0.1:80"]).await;
    let dump = h.discovery.dump();
    let config = &dump["config"];
    assert_eq!(config["service"]["host"], "127.0.0.1", "{dump}");
    assert_eq!(
        config["service"]["port"],
        api.addr().port().to_string(),
        "{dump}"
    );
    assert_eq!(config["service"]["schema"], "http", "{dump}");
    assert_eq!(config["server"], api.url(), "{dump}");
    assert_eq!(
        config["client"]["kubeconfig"],
        kubeconfig.display().to_string()
    );
    let text = dump.to_string();
    assert!(!text.contains("KUBERNETES_SERVICE"), "{dump}");
    assert!(!text.contains("serviceaccount"), "{dump}");
    assert!(!text.contains("test-token"), "{dump}");
}
