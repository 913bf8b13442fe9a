//! The seed walkthrough on one machine, no cluster needed:
//!
//! ```sh
//! cargo run -p weir --example discovery_demo
//! ```
//!
//! Starts three local "pods" (HTTP servers on 127.0.0.1), a local fake
//! Kubernetes API server (weir's test kit, kept honest against recordings of
//! a real kube-apiserver) whose Endpoints `default/httpbin` list the three
//! pods, and weir in this process with Kubernetes discovery and a route
//! `Host: sd.httpbin.org`, `/anything*`. It sends six requests itself, so the
//! access log below shows the pods taking turns, then keeps serving until
//! Ctrl-C:
//!
//! ```sh
//! curl -H 'Host: sd.httpbin.org' http://127.0.0.1:9080/anything
//! ```
//!
//! The proxy listens on 127.0.0.1:9080 (`WEIR_DEMO_PORT` to change it).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weir_testkit::kube_api::{endpoints, FakeApiServer};

/// A pod: answers every request with its name and what it was asked.
async fn start_pod(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let text = format!(
                            "{{\"pod\": \"{name}\", \"method\": \"{}\", \"uri\": \"{}\"}}\n",
                            req.method(),
                            req.uri()
                        );
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap_or_default(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let pods = [
        start_pod("httpbin-7d4f-a").await?,
        start_pod("httpbin-7d4f-b").await?,
        start_pod("httpbin-7d4f-c").await?,
    ];
    let api = FakeApiServer::start().await?;
    let mut eps = endpoints("default", "httpbin");
    for (i, pod) in pods.iter().enumerate() {
        if i > 0 {
            eps = eps.subset();
        }
        eps = eps.ready(["127.0.0.1"]).port("http", i32::from(pod.port()));
    }
    api.apply_endpoints(eps.build());

    let port = std::env::var("WEIR_DEMO_PORT").unwrap_or_else(|_| "9080".into());
    let yaml = format!(
        r#"
gateway:
  listeners: [{{address: "127.0.0.1:{port}"}}]
  control: {{address: "127.0.0.1:0"}}
  access_log: {{enabled: true, path: stdout}}
discovery:
  kubernetes:
    service: {{schema: http, host: "127.0.0.1", port: {api_port}}}
    client: {{token: test-token}}
routes:
  - id: httpbin
    host: sd.httpbin.org
    uri: /anything*
    upstream:
      type: roundrobin
      discovery_type: kubernetes
      service_name: default/httpbin:http
"#,
        api_port = api.addr().port()
    );
    let config = weir_config::load_str(&yaml, "discovery-demo.yaml")?;
    println!("fake Kubernetes API server on {}", api.addr());
    for (i, pod) in pods.iter().enumerate() {
        println!("pod httpbin-7d4f-{} on {pod}", ['a', 'b', 'c'][i]);
    }
    let gw = weir::Gateway::start(config).await?;
    anyhow::ensure!(
        gw.wait_ready(Duration::from_secs(15)).await,
        "discovery did not sync"
    );
    let addr = gw.proxy_addr();
    println!("weir on {addr}: route Host sd.httpbin.org /anything* -> Endpoints default/httpbin\n");

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    for i in 1..=6 {
        let req = Request::get(format!("http://{addr}/anything/{i}"))
            .header("host", "sd.httpbin.org")
            .body(Empty::new())?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        print!("request {i}: {status} {}", String::from_utf8_lossy(&body));
    }
    // The access log is written by a background thread every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "\nserving until Ctrl-C; try:\n  curl -H 'Host: sd.httpbin.org' http://{addr}/anything\n"
    );
    tokio::signal::ctrl_c().await?;
    gw.shutdown().await;
    Ok(())
}
