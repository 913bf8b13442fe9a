#![allow(dead_code)]
//! Test helpers: build a plugin from JSON (with consumers), run one of its
//! request phases over a request head, and read what it decided.
//!
//! Every request runs over both views the transports use (a `RawHead` as the
//! HTTP/1.1 fast path parses it and hyper's `Parts`); [`TestReq::run`]
//! checks that both give the same answer and the same edits.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use weir_plugin::{
    BuildCtx, ConfigError, Conn, Consumer, ConsumerConf, Flow, LocalReply, Plugin, PluginSpec,
    PluginState, RequestCtx,
};

/// Builds `spec`'s plugin from `conf` with no consumer.
pub fn build(spec: &PluginSpec, conf: Value) -> Result<Arc<dyn Plugin>, ConfigError> {
    (spec.build)(&conf, &BuildCtx::empty())
}

/// The error building `spec`'s plugin from `conf` gives (panics when the
/// configuration is accepted).
pub fn config_error(spec: &PluginSpec, conf: Value) -> ConfigError {
    match build(spec, conf.clone()) {
        Err(e) => e,
        Ok(_) => panic!("accepted {conf}"),
    }
}

/// Builds `spec`'s plugin from `conf`, with consumers configuring `spec`'s
/// plugin: `(username, conf)`; `extra` consumers have no configuration of
/// it (anonymous consumers).
pub fn build_with(
    spec: &PluginSpec,
    conf: Value,
    consumers: &[(&str, Value)],
    extra: &[&str],
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let mut all = Vec::new();
    let mut confs = Vec::new();
    for (i, (name, c)) in consumers.iter().enumerate() {
        let consumer = Arc::new(Consumer::named(name));
        all.push(consumer.clone());
        confs.push(ConsumerConf {
            consumer,
            plugin: spec.name,
            conf: c,
            path: format!("consumers[{i}].plugins.{}", spec.name),
        });
    }
    all.extend(extra.iter().map(|n| Arc::new(Consumer::named(n))));
    let ctx = BuildCtx::new(all, confs, &|_| None);
    (spec.build)(&conf, &ctx)
}

/// Builds with a `plugin_metadata` value for `spec`'s plugin.
pub fn build_with_metadata(
    spec: &PluginSpec,
    conf: Value,
    metadata: Value,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let metadata = &metadata;
    let lookup = move |name: &str| (name == spec.name).then_some(metadata);
    let ctx = BuildCtx::new(Vec::new(), Vec::new(), &lookup);
    (spec.build)(&conf, &ctx)
}

/// The error `build` gave, as displayed.
pub fn build_error(r: Result<Arc<dyn Plugin>, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e.to_string(),
    }
}

/// A request to run a phase on.
#[derive(Clone)]
pub struct TestReq {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    remote: SocketAddr,
    tls: bool,
    route_id: String,
    body: Option<Vec<u8>>,
    consumer: Option<Arc<Consumer>>,
}

impl TestReq {
    /// `GET target` from 192.0.2.10:40000, host `a.example`.
    pub fn get(target: &str) -> TestReq {
        TestReq {
            method: "GET".into(),
            target: target.into(),
            headers: vec![("host".into(), b"a.example".to_vec())],
            remote: "192.0.2.10:40000".parse().unwrap(),
            tls: false,
            route_id: "r1".into(),
            body: None,
            consumer: None,
        }
    }

    /// Another method.
    pub fn method(mut self, m: &str) -> TestReq {
        self.method = m.into();
        self
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: &str) -> TestReq {
        self.headers.push((name.into(), value.as_bytes().to_vec()));
        self
    }

    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Replaces field `name`.
    pub fn replace(self, name: &str, value: &str) -> TestReq {
        self.without(name).header(name, value)
    }

    /// Removes every field `name`.
    pub fn without(mut self, name: &str) -> TestReq {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The client's address (an IP; port 40000).
    pub fn remote(mut self, ip: &str) -> TestReq {
        self.remote = SocketAddr::new(ip.parse().unwrap(), 40000);
        self
    }

    /// Over TLS.
    pub fn tls(mut self) -> TestReq {
        self.tls = true;
        self
    }

    /// The matched route's id.
    pub fn route(mut self, id: &str) -> TestReq {
        self.route_id = id.into();
        self
    }

    /// The buffered body.
    pub fn body(mut self, b: &[u8]) -> TestReq {
        self.body = Some(b.to_vec());
        self
    }

    /// A consumer already recognised (by an earlier auth plugin).
    pub fn consumer(mut self, c: Consumer) -> TestReq {
        self.consumer = Some(Arc::new(c));
        self
    }

    /// Runs `phase` over both views and checks they agree.
    pub fn run(&self, phase: impl Fn(&mut RequestCtx<'_>) -> Flow) -> Outcome {
        let raw = self.run_raw(&phase);
        let parts = self.run_parts(&phase);
        assert_eq!(format!("{raw:?}"), format!("{parts:?}"), "views disagree");
        parts
    }

    /// Runs `phase`'s rewrite.
    pub fn rewrite(&self, p: &Arc<dyn Plugin>) -> Outcome {
        self.run(|ctx| p.rewrite(ctx))
    }

    /// Runs `phase`'s access.
    pub fn access(&self, p: &Arc<dyn Plugin>) -> Outcome {
        self.run(|ctx| p.access(ctx))
    }

    /// Runs over hyper's `Parts` only (for answers that are random).
    pub fn run_parts(&self, phase: impl Fn(&mut RequestCtx<'_>) -> Flow) -> Outcome {
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_slice());
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        self.run_view(&parts, phase)
    }

    fn run_raw(&self, phase: impl Fn(&mut RequestCtx<'_>) -> Flow) -> Outcome {
        let fields: Vec<httparse::Header<'_>> = self
            .headers
            .iter()
            .map(|(n, v)| httparse::Header { name: n, value: v })
            .collect();
        let host = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map_or(&b""[..], |(_, v)| v.as_slice());
        let head = weir_http::RawHead {
            method: &self.method,
            target: &self.target,
            host,
            fields: &fields,
        };
        self.run_view(&head, phase)
    }

    fn run_view(
        &self,
        view: &dyn weir_plugin::RequestView,
        phase: impl Fn(&mut RequestCtx<'_>) -> Flow,
    ) -> Outcome {
        let conn = Conn {
            remote: self.remote,
            local: "198.51.100.1:9080".parse().unwrap(),
            tls: self.tls,
        };
        let mut state = PluginState::default();
        if let Some(c) = &self.consumer {
            state.consumer = Some(c.clone());
        }
        let mut ctx = RequestCtx::new(
            view,
            &conn,
            &self.route_id,
            &mut state,
            self.body.as_deref(),
        );
        let flow = phase(&mut ctx);
        let reply = match flow {
            Flow::Continue => None,
            Flow::Reply(r) => Some(r),
            Flow::Wait(_) => panic!("the phase waits: test it over real sockets"),
        };
        Outcome { reply, state }
    }
}

/// What a phase decided.
#[derive(Debug)]
pub struct Outcome {
    /// The answer, if the phase answered.
    pub reply: Option<LocalReply>,
    /// Edits, consumer, real ip.
    pub state: PluginState,
}

impl Outcome {
    /// The reply (panics when the phase went on).
    pub fn reply(&self) -> &LocalReply {
        self.reply.as_ref().expect("the phase did not answer")
    }

    /// True when the phase went on.
    pub fn continued(&self) -> bool {
        self.reply.is_none()
    }

    /// The answer's status.
    pub fn status(&self) -> u16 {
        self.reply().status.as_u16()
    }

    /// The answer's body as text.
    pub fn body(&self) -> String {
        String::from_utf8(self.reply().body.to_vec()).unwrap()
    }

    /// A header field of the answer.
    pub fn reply_header(&self, name: &str) -> Option<String> {
        self.reply()
            .headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    }

    /// The upstream edit of `name`: `None` untouched, `Some(None)` removed.
    pub fn upstream(&self, name: &str) -> Option<Option<String>> {
        self.state
            .upstream_headers
            .lookup(name)
            .map(|v| v.map(|v| v.to_str().unwrap().to_owned()))
    }

    /// Every response header edit (name, value) in the order applied.
    pub fn response(&self) -> Vec<(String, String)> {
        let mut map = http::HeaderMap::new();
        self.state.response_headers.apply(&mut map);
        map.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    /// The response header `name` after the edits (values joined by ", ").
    pub fn response_header(&self, name: &str) -> Option<String> {
        let v: Vec<String> = self
            .response()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    }

    /// The recognised consumer's name.
    pub fn consumer(&self) -> Option<&str> {
        self.state.consumer.as_ref().map(|c| &*c.username)
    }
}

/// Standard base64 with padding.
pub fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
