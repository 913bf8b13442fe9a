//! The `opentelemetry` exporter: OTLP over HTTP (binary protobuf), or over
//! gRPC (h2c) with a `grpc://` collector, in batches, by one task per export
//! configuration.

use super::*;

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// One export configuration's queue and the task that drains it: shared by
/// every route (and configuration generation) with the same settings; the
/// task ends, after sending what it holds, once no configuration uses it.
/// The task is started by the first span (validating a configuration
/// starts nothing).
pub(super) struct Exporter {
    settings: Arc<ExportSettings>,
    queue: OnceLock<Option<mpsc::Sender<Span>>>,
    last_warning: Mutex<Option<Instant>>,
}

type Registry = Mutex<Vec<(Arc<ExportSettings>, Weak<Exporter>)>>;

static EXPORTERS: LazyLock<Registry> = LazyLock::new(|| Mutex::new(Vec::new()));

impl Exporter {
    pub(super) fn for_settings(settings: ExportSettings) -> Arc<Exporter> {
        let mut all = EXPORTERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = all
            .iter()
            .find(|(s, _)| **s == settings)
            .and_then(|(_, e)| e.upgrade())
        {
            return e;
        }
        all.retain(|(_, e)| e.strong_count() > 0);
        let settings = Arc::new(settings);
        let exporter = Arc::new(Exporter {
            settings: settings.clone(),
            queue: OnceLock::new(),
            last_warning: Mutex::new(None),
        });
        all.push((settings, Arc::downgrade(&exporter)));
        exporter
    }

    /// Queues `span` without waiting: dropped (and counted) when the queue
    /// is full.
    pub(super) fn send(&self, span: Span) {
        let queue = self.queue.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let (tx, rx) = mpsc::channel(self.settings.queue);
            runtime.spawn(drain(self.settings.clone(), rx));
            Some(tx)
        });
        let sent = queue.as_ref().is_some_and(|q| q.try_send(span).is_ok());
        if !sent {
            let n = DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                tracing::warn!(collector = %self.settings.authority, dropped = n, "opentelemetry: the export queue is full; spans dropped");
            }
        }
    }
}

/// Warnings about a failing collector: at most one this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The export task: batches of up to `max_export_batch_size` spans, sent
/// when full or `batch_timeout` after their first span.
async fn drain(settings: Arc<ExportSettings>, mut rx: mpsc::Receiver<Span>) {
    let mut client = Client::default();
    let mut last_warning: Option<Instant> = None;
    let mut batch = Vec::with_capacity(settings.batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + settings.batch_timeout;
        while batch.len() < settings.batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let body = request(&settings, std::mem::take(&mut batch)).encode_to_vec();
        let result = tokio::time::timeout(settings.timeout, client.post(&settings, body)).await;
        let error = match result {
            Ok(Ok(status)) if status.is_success() => {
                EXPORTED.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(status)) => format!("the collector answered {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                client.sender = None;
                format!("no answer within {:?}", settings.timeout)
            }
        };
        EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed);
        DROPPED_EXPORT_FAILED.fetch_add(n, Ordering::Relaxed);
        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            tracing::warn!(collector = %settings.authority, spans = n, error = %error, "opentelemetry: export failed; spans lost");
        }
    }
}

fn request(settings: &ExportSettings, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: settings.resource.clone(),
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weir".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection to the collector, kept between exports: HTTP/1.1 for
/// OTLP/HTTP, HTTP/2 for gRPC.
#[derive(Default)]
struct Client {
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    grpc: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
}

/// The OTLP trace service's export method.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Client {
    async fn post(
        &mut self,
        settings: &ExportSettings,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, BoxError> {
        let result = if settings.grpc {
            self.grpc_exchange(settings, body).await
        } else {
            self.exchange(settings, body).await
        };
        if result.is_err() {
            self.sender = None;
            self.grpc = None;
        }
        result
    }

    /// One unary gRPC call: the request as one length-prefixed message; the
    /// answer's `grpc-status` (a trailer, or a header in a trailers-only
    /// answer) says whether the collector took it.
    async fn grpc_exchange(
        &mut self,
        settings: &ExportSettings,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, BoxError> {
        let mut sender = match self.grpc.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let tcp =
                    tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)).await?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    TokioIo::new(tcp),
                )
                .await?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await?;
        let len = u32::try_from(body.len()).map_err(|_| "export request over 4 GiB")?;
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(0); // not compressed
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&body);
        let mut builder =
            http::Request::post(format!("http://{}{GRPC_EXPORT}", settings.authority))
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers");
        for (name, value) in &settings.headers {
            builder = builder.header(name, value);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(framed)))?)
            .await?;
        let status = response.status();
        let in_head = response.headers().get("grpc-status").cloned();
        let collected = response.into_body().collect().await?;
        let grpc_status = in_head.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
        });
        self.grpc = Some(sender);
        match grpc_status.as_ref().map(HeaderValue::as_bytes) {
            Some(b"0") if status.is_success() => Ok(http::StatusCode::OK),
            Some(code) => Err(format!(
                "the collector answered grpc-status {}",
                String::from_utf8_lossy(code)
            )
            .into()),
            None => Err(format!("the collector answered {status} without a grpc-status").into()),
        }
    }

    async fn exchange(
        &mut self,
        settings: &ExportSettings,
        body: Vec<u8>,
    ) -> Result<http::StatusCode, BoxError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let tcp =
                    tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)).await?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await?;
        let mut builder = http::Request::post("/v1/traces")
            .header(http::header::HOST, &settings.authority)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &settings.headers {
            builder = builder.header(name, value);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        self.sender = Some(sender);
        Ok(status)
    }
}
