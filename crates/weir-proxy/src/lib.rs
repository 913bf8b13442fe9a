//! weir's data plane: listeners, TLS, routing, balancing, forwarding,
//! plugins and the access log.
//!
//! The request path is [`forward::handle`]: one snapshot load, a route match,
//! the plugin phases, a balanced node pick with retries, and a streamed
//! response. Configuration changes arrive as a new [`snapshot::Snapshot`]
//! swapped into [`snapshot::ProxyState`]; nothing on the request path locks.

pub mod access_log;
pub mod attempts;
pub mod balance;
pub mod body;
pub mod busy_poll;
pub mod compile;
pub mod forward;
pub mod h1;
pub mod hash_input;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod plugin_compile;
pub mod plugin_run;
pub mod pool;
pub mod response_body;
mod reuse;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod stall;
pub mod tls;
pub mod upload;
pub mod upstream;
pub use weir_http::uri as uri_normalize;
pub mod workers;
