//! What plugins see of a request and its response, and the per-request
//! state they leave for later phases and for the transports.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use weir_http::view::ResponseView;
use weir_http::{HeaderEdits, RequestView};

use crate::Consumer;

/// Facts about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The client's address.
    pub remote: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// TLS-terminated.
    pub tls: bool,
}

/// What the request phases leave behind: header edits for the upstream
/// request and for the response, a new upstream target, the consumer. The
/// transports apply it where they write heads. Exists only for requests on
/// routes with plugins.
#[derive(Debug, Default)]
pub struct PluginState {
    /// Changes to the request sent upstream.
    pub upstream_headers: HeaderEdits,
    /// Changes to the response sent to the client (a node's or weir's own).
    pub response_headers: HeaderEdits,
    /// A new path and query for the upstream request.
    pub upstream_target: Option<String>,
    /// The consumer an authentication plugin recognised.
    pub consumer: Option<Arc<Consumer>>,
    /// The client address `real-ip` found (trusted forwarding fields); it
    /// replaces the connection's peer for later plugins and the log.
    pub real_ip: Option<IpAddr>,
    /// What plugins keep until the request is over (see [`crate::Held`]).
    pub held: Vec<crate::Held>,
    /// The upstream a plugin chose (`traffic-split`); None: the route's.
    pub upstream: Option<crate::UpstreamChoice>,
    /// A new method for the upstream request (`proxy-rewrite`).
    pub upstream_method: Option<http::Method>,
    /// A new Host for the upstream request, whatever the upstream's
    /// `pass_host` (`proxy-rewrite`).
    pub upstream_host: Option<HeaderValue>,
    /// The request's identifier (`request-id`), for the access log.
    pub request_id: Option<HeaderValue>,
    /// The request's trace id (`opentelemetry`), for the access log.
    pub trace_id: Option<[u8; 16]>,
    /// What plugins leave for their own log phase (see [`LogNote`]).
    pub log_notes: Vec<LogNote>,
    /// The status the client gets instead of the response's own
    /// (`response-rewrite`), set by the response-headers phase.
    pub response_status: Option<u16>,
    /// Filters over the response body, installed by the response-headers
    /// phase (see [`crate::BodyFilter`]).
    pub body_filters: crate::BodyFilters,
}

/// A request as the request phases see it: read-only head, mutable plugin
/// state.
pub struct RequestCtx<'a> {
    view: &'a dyn RequestView,
    conn: &'a Conn,
    route_id: &'a str,
    state: &'a mut PluginState,
    body: Option<&'a [u8]>,
}

impl<'a> RequestCtx<'a> {
    /// A context over a request head. `body` is the whole request body, for
    /// routes with a plugin that declared `needs_body`.
    pub fn new(
        view: &'a dyn RequestView,
        conn: &'a Conn,
        route_id: &'a str,
        state: &'a mut PluginState,
        body: Option<&'a [u8]>,
    ) -> RequestCtx<'a> {
        RequestCtx {
            view,
            conn,
            route_id,
            state,
            body,
        }
    }

    /// The request head as the client sent it.
    pub fn view(&self) -> &dyn RequestView {
        self.view
    }

    /// The client connection.
    pub fn conn(&self) -> &Conn {
        self.conn
    }

    /// The matched route's id.
    pub fn route_id(&self) -> &str {
        self.route_id
    }

    /// The client's address: the connection's peer, or what `real-ip`
    /// established.
    pub fn remote_ip(&self) -> IpAddr {
        self.state.real_ip.unwrap_or(self.conn.remote.ip())
    }

    /// Replaces the client address for later plugins and the log
    /// (`real-ip`).
    pub fn set_real_ip(&mut self, ip: IpAddr) {
        self.state.real_ip = Some(ip);
    }

    /// The method.
    pub fn method(&self) -> &str {
        self.view.method()
    }

    /// The first value of header field `name` as the upstream will see it:
    /// earlier plugins' edits included.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        match self.state.upstream_headers.lookup(name) {
            Some(edited) => edited.map(HeaderValue::as_bytes),
            None => self.view.header(name),
        }
    }

    /// A query argument (undecoded).
    pub fn query_arg(&self, name: &str) -> Option<&str> {
        weir_http::view::query_arg(self.view.query(), name)
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        weir_http::view::cookie(self.view, name)
    }

    /// The whole request body (only for plugins that declared
    /// `needs_body`; `None` otherwise).
    pub fn body(&self) -> Option<&[u8]> {
        self.body
    }

    /// An APISIX variable (`arg_x`, `http_x`, `cookie_x`, `uri`,
    /// `remote_addr`, ...); see [`crate::vars`].
    pub fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        crate::vars::lookup(name, self.view, self.conn, self.state, self.route_id)
    }

    /// Keeps `value` until the request is over, whichever way it ends
    /// (then drops it).
    pub fn hold(&mut self, value: crate::Held) {
        self.state.held.push(value);
    }

    /// Records the request's identifier (`request-id`) for the access log.
    pub fn set_request_id(&mut self, id: HeaderValue) {
        self.state.request_id = Some(id);
    }

    /// Records the request's trace id (`opentelemetry`) for the access log.
    pub fn set_trace_id(&mut self, id: [u8; 16]) {
        self.state.trace_id = Some(id);
    }

    /// Leaves `note` for the log phase ([`LogCtx::note`]): what a plugin
    /// learnt in the request phases and needs once the request is over.
    pub fn note_for_log(&mut self, note: LogNote) {
        self.state.log_notes.push(note);
    }

    /// Sends the upstream request with `method`.
    pub fn set_upstream_method(&mut self, method: http::Method) {
        self.state.upstream_method = Some(method);
    }

    /// Sends the upstream request with this Host, whatever the upstream's
    /// `pass_host`.
    pub fn set_upstream_host(&mut self, host: HeaderValue) {
        self.state.upstream_host = Some(host);
    }

    /// Sends the request to `choice` instead of the route's upstream.
    pub fn choose_upstream(&mut self, choice: crate::UpstreamChoice) {
        self.state.upstream = Some(choice);
    }

    /// Replaces header field `name` of the upstream request.
    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.upstream_headers.set(name, value);
    }

    /// Adds a value of header field `name` to the upstream request.
    pub fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.upstream_headers.append(name, value);
    }

    /// Removes header field `name` from the upstream request.
    pub fn remove_header(&mut self, name: HeaderName) {
        self.state.upstream_headers.remove(name);
    }

    /// Replaces header field `name` of the response.
    pub fn set_response_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.response_headers.set(name, value);
    }

    /// Adds a value of header field `name` to the response.
    pub fn append_response_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.response_headers.append(name, value);
    }

    /// Sends the upstream request to this path and query instead.
    pub fn set_upstream_target(&mut self, path_and_query: String) {
        self.state.upstream_target = Some(path_and_query);
    }

    /// The path and query the upstream will get.
    pub fn upstream_target(&self) -> &str {
        self.state
            .upstream_target
            .as_deref()
            .unwrap_or_else(|| self.view.path_and_query())
    }

    /// The Host the upstream request will carry when a plugin chose one
    /// (`proxy-rewrite`'s `host`); else the client's.
    pub fn upstream_host(&self) -> Option<&[u8]> {
        match &self.state.upstream_host {
            Some(h) => Some(h.as_bytes()),
            None => self.view.host(),
        }
    }

    /// The method the upstream request will carry.
    pub fn upstream_method(&self) -> &str {
        self.state
            .upstream_method
            .as_ref()
            .map_or_else(|| self.view.method(), http::Method::as_str)
    }

    /// Calls `f` with each header field of the request as the upstream will
    /// get it: the client's fields minus those plugins removed or replaced,
    /// then the plugins' values (the transports' own fields, Host and
    /// forwarding fields, are not among them).
    pub fn for_each_upstream_field(&self, mut f: impl FnMut(&str, &[u8])) {
        let edits = &self.state.upstream_headers;
        for (name, value) in self.view.fields() {
            if !edits.drops(name) {
                f(name, value);
            }
        }
        for (name, value) in edits.additions() {
            f(name.as_str(), value.as_bytes());
        }
    }

    /// The consumer recognised so far.
    pub fn consumer(&self) -> Option<&Arc<Consumer>> {
        self.state.consumer.as_ref()
    }

    /// Records the consumer an authentication plugin recognised, and tells
    /// the upstream who it is: `X-Consumer-Username`,
    /// `X-Credential-Identifier` and `X-Consumer-Custom-ID` (APISIX's),
    /// replacing whatever the client sent under those names.
    pub fn authenticate(&mut self, consumer: Arc<Consumer>) {
        const NAMES: [HeaderName; 3] = [
            HeaderName::from_static("x-consumer-username"),
            HeaderName::from_static("x-credential-identifier"),
            HeaderName::from_static("x-consumer-custom-id"),
        ];
        let edits = &mut self.state.upstream_headers;
        for (name, value) in NAMES.into_iter().zip(consumer.field_values()) {
            match value {
                Some(v) => edits.set(name, v.clone()),
                None => edits.remove(name),
            }
        }
        self.state.consumer = Some(consumer);
    }
}

/// A response head as the response-headers phase sees it.
pub struct ResponseCtx<'a> {
    view: &'a dyn ResponseView,
    state: &'a mut PluginState,
    from_node: bool,
}

impl<'a> ResponseCtx<'a> {
    /// A context over a response head; `from_node` is false for weir's own
    /// replies (errors, plugin answers).
    pub fn new(view: &'a dyn ResponseView, state: &'a mut PluginState, from_node: bool) -> Self {
        ResponseCtx {
            view,
            state,
            from_node,
        }
    }

    /// The status code as the client will get it: the response's own, or
    /// what an earlier plugin set.
    pub fn status(&self) -> u16 {
        self.state.response_status.unwrap_or(self.view.status())
    }

    /// The status code of the response as it came (a node's, or weir's
    /// own answer's).
    pub fn original_status(&self) -> u16 {
        self.view.status()
    }

    /// Sends the response with status `status` instead (`response-rewrite`).
    pub fn set_status(&mut self, status: u16) {
        self.state.response_status = Some(status);
    }

    /// Filters this response's body through `filter` (after the filters
    /// earlier plugins installed). For plugins with the response-body
    /// phase. The body's length changes: the transports drop the
    /// response's `Content-Length` and re-frame it.
    pub fn filter_body(&mut self, filter: Box<dyn crate::BodyFilter>) {
        self.state.body_filters.push(filter);
    }

    /// A response variable (see [`crate::vars::response_lookup`]).
    pub fn var(&self, name: &str) -> Option<Cow<'_, str>> {
        crate::vars::response_lookup(name, self)
    }

    /// The first value of header field `name` as received.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.view.header_values(name).next()
    }

    /// True for a node's response, false for one weir made.
    pub fn from_node(&self) -> bool {
        self.from_node
    }

    /// The consumer recognised, if any.
    pub fn consumer(&self) -> Option<&Arc<Consumer>> {
        self.state.consumer.as_ref()
    }

    /// Replaces header field `name`.
    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.response_headers.set(name, value);
    }

    /// Adds a value of header field `name`.
    pub fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.state.response_headers.append(name, value);
    }

    /// Removes header field `name`.
    pub fn remove_header(&mut self, name: HeaderName) {
        self.state.response_headers.remove(name);
    }
}

/// A finished request as the log phase sees it.
#[derive(Debug)]
pub struct LogCtx<'a> {
    /// The request method (empty unless a log-phase plugin of the request
    /// reads the request line: [`crate::Plugin::log_reads_request`]).
    pub method: &'a str,
    /// The request target (path and query) as received, credentials in
    /// the query masked (empty as `method`).
    pub uri: &'a str,
    /// The Host the request was routed by, as received (empty as
    /// `method`).
    pub host: &'a str,
    /// The client's address (`real-ip`'s, when it found one).
    pub client_ip: IpAddr,
    /// The status sent (499: the client left first).
    pub status: u16,
    /// The status the upstream answered with, or the 502/504 weir answered
    /// after the upstream's nodes failed (nginx's `$upstream_status`); None
    /// when no node was asked (a plugin's or weir's own answer).
    pub upstream_status: Option<u16>,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// The matched route's id (empty: no route matched).
    pub route_id: &'a str,
    /// The consumer recognised, if any.
    pub consumer: Option<&'a Consumer>,
    /// When the request arrived (wall clock).
    pub start: std::time::SystemTime,
    /// From the request's arrival to its end.
    pub duration: Duration,
    /// What is known of the matched route beyond its id (None: no route
    /// matched).
    pub route: Option<&'a RouteFacts>,
    /// The node that answered (`host:port`); None when none did (a
    /// plugin's or weir's own answer, or every node failed).
    pub node: Option<&'a str>,
    /// From the start of the attempt that answered (connecting included)
    /// until its response head arrived; None when no node answered.
    pub upstream_latency: Option<Duration>,
    /// The request's size: its head as received (estimated from the
    /// parsed fields as HTTP/1.1 text) plus its `Content-Length`.
    pub request_bytes: u64,
    /// What the request phases left for the log phase
    /// ([`RequestCtx::note_for_log`]).
    pub notes: &'a [LogNote],
}

/// A value a plugin leaves in the request phases for its log phase (the
/// `opentelemetry` span's ids and start); shared, so the log phase can be
/// prepared from a borrowed state.
pub type LogNote = Arc<dyn std::any::Any + Send + Sync>;

impl LogCtx<'_> {
    /// The first note of type `T` the request phases left.
    pub fn note<T: std::any::Any>(&self) -> Option<&T> {
        self.notes.iter().find_map(|n| n.downcast_ref::<T>())
    }
}

/// What the log phase knows of a route beyond its id, fixed when the
/// configuration is compiled.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteFacts {
    /// The route's `name`.
    pub name: Option<Box<str>>,
    /// The id of the service the route belongs to.
    pub service_id: Option<Box<str>>,
    /// That service's `name`.
    pub service_name: Option<Box<str>>,
    /// The route's path pattern, when it has exactly one.
    pub uri: Option<Box<str>>,
    /// The route's host (its own or its service's), when it has exactly
    /// one.
    pub host: Option<Box<str>>,
}
