//! Bodies stream through the real `weir` binary both ways and are never
//! buffered whole: 256 MiB down and 256 MiB up with bounded memory growth.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Backend;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const BODY: u64 = 256 * 1024 * 1024;
/// Peak RSS of the gateway may grow by less than this while moving 2 x 256 MiB.
const MAX_PEAK_GROWTH_KIB: u64 = 64 * 1024;
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

/// The gateway process; SIGTERM'd (then killed) when dropped, even on panic.
struct Weir {
    child: Child,
}

impl Weir {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait up to `limit` for a graceful exit.
    fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.terminate(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Two distinct ports that were free a moment ago (the subprocess binds them).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

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

/// Polls the control API until `/status/ready` answers 200 (bounded).
async fn wait_ready(weir: &mut Weir, control: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = common::client();
    loop {
        if let Ok(Some(status)) = weir.child.try_wait() {
            panic!("weir exited before becoming ready: {status}");
        }
        let req = Request::get(format!("http://{control}/status/ready"))
            .body(common::empty())
            .unwrap();
        if let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(2), client.request(req)).await
        {
            if resp.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "weir did not report ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_256_mib_stream_down_and_up_through_the_binary_with_peak_rss_growth_under_64_mib()
{
    let backend = Backend::start("big").await;
    let (proxy_port, control_port) = free_ports();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
gateway:
  listeners:
    - address: 127.0.0.1:{proxy_port}
  control:
    address: 127.0.0.1:{control_port}
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
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--log-level", "warn", "run", "-c"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn weir");
    let mut weir = Weir { child };
    let proxy: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
    let control: SocketAddr = format!("127.0.0.1:{control_port}").parse().unwrap();
    wait_ready(&mut weir, control).await;

    // Warm up (connection pools, allocator arenas) before the baseline.
    let c = common::client();
    let warm = common::send_with(&c, proxy, "GET", None, "/bytes/1048576", common::empty()).await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(warm.body.len(), 1024 * 1024);
    let (hwm_before, rss_before) = memory_kib(weir.pid());

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
    let (hwm_mid, rss_mid) = memory_kib(weir.pid());

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
    let (hwm_after, rss_after) = memory_kib(weir.pid());

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

    let status = weir
        .terminate(Duration::from_secs(15))
        .expect("weir did not exit within 15 s of SIGTERM");
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
}
