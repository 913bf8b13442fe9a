//! Bodies stream through the real `weir` binary both ways and are never
//! buffered whole: 256 MiB down and 256 MiB up with bounded memory growth.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, WeirProcess};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const BODY: u64 = 256 * 1024 * 1024;
/// Peak RSS of the gateway may grow by less than this while moving 2 x 256 MiB.
const MAX_PEAK_GROWTH_KIB: u64 = 64 * 1024;
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_256_mib_stream_down_and_up_through_the_binary_with_peak_rss_growth_under_64_mib()
{
    let backend = Backend::start("big").await;
    // Port 0 for both listeners, the bound addresses read back from the
    // process's logs: no port is picked here and bound there later.
    let mut weir = WeirProcess::start(&format!(
        r#"
gateway:
  listeners:
    - address: 127.0.0.1:0
  control:
    address: 127.0.0.1:0
  access_log:
    enabled: false
routes:
  - id: big
    uri: /*
    upstream:
      nodes:
        "{node}": 1
"#,
        node = backend.node()
    ));
    weir.wait_log(|v| v["message"] == "ready");
    let proxy = weir.proxy;
    let pid = weir.child.id();

    // Warm up (connection pools, allocator arenas) before the baseline.
    let c = common::client();
    let warm = common::send_with(&c, proxy, "GET", None, "/bytes/1048576", common::empty()).await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(warm.body.len(), 1024 * 1024);
    let (hwm_before, rss_before) = memory_kib(pid);

    // Download: count the bytes as they arrive, never holding more than a frame.
    let download = async {
        let req = Request::get(format!("http://{proxy}/bytes/{BODY}"))
            .body(common::empty())
            .unwrap();
        let resp = c.request(req).await.expect("download request");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download body");
            total += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        total
    };
    let downloaded = tokio::time::timeout(TRANSFER_LIMIT, download)
        .await
        .expect("256 MiB download did not finish in time");
    assert_eq!(downloaded, BODY, "every downloaded byte arrived");
    let (hwm_mid, rss_mid) = memory_kib(pid);

    // Upload: generate 256 MiB on the fly in 64 KiB chunks; the node counts them.
    let upload = async {
        const CHUNK: u64 = 64 * 1024;
        let chunk = Bytes::from(vec![7u8; CHUNK as usize]);
        let stream = futures::stream::unfold(0u64, move |sent| {
            let chunk = chunk.clone();
            async move {
                (sent < BODY).then(|| {
                    let len = CHUNK.min(BODY - sent);
                    (
                        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len as usize))),
                        sent + len,
                    )
                })
            }
        });
        let body = BodyExt::boxed(StreamBody::new(stream));
        common::send_with(&c, proxy, "POST", None, "/upload", body).await
    };
    let uploaded = tokio::time::timeout(TRANSFER_LIMIT, upload)
        .await
        .expect("256 MiB upload did not finish in time");
    assert_eq!(uploaded.status, StatusCode::OK);
    assert_eq!(
        uploaded.body,
        BODY.to_string(),
        "the node received every byte"
    );
    let (hwm_after, rss_after) = memory_kib(pid);

    eprintln!(
        "weir memory (KiB): baseline VmHWM {hwm_before} VmRSS {rss_before}; \
         after download VmHWM {hwm_mid} VmRSS {rss_mid}; \
         after upload VmHWM {hwm_after} VmRSS {rss_after}"
    );
    let growth = hwm_after.saturating_sub(hwm_before);
    assert!(
        growth < MAX_PEAK_GROWTH_KIB,
        "peak RSS grew by {growth} KiB (limit {MAX_PEAK_GROWTH_KIB} KiB) while streaming 2 x 256 MiB: bodies are being buffered"
    );

    weir.signal("TERM");
    assert_eq!(weir.wait_exit(), Some(0), "graceful exit after SIGTERM");
}
