//! weir's Admin API (APISIX v3-compatible) and the configuration sources it
//! writes to.
//!
//! - [`hub::ConfigHub`]: the configuration served, merged from the file and
//!   the Admin API's store; writes and file reloads go through it, one at a
//!   time, and reach the data plane through the [`hub::Engine`] the binary
//!   implements. This crate knows the configuration model, not the engine.
//! - [`store`]: where the Admin API's writes are kept (`config_provider:
//!   yaml`: the state file, written atomically).
//! - [`etcd`]: `config_provider: etcd`: the configuration read and watched
//!   from etcd, and the Admin API's writes sent there.
//! - [`api::AdminServer`]: the HTTP listener, `/apisix/admin/...`.
//! - [`ops`], [`patch`], [`refs`]: APISIX's write rules (ids, timestamps,
//!   deep-merge PATCH, references that block a delete).
#![forbid(unsafe_code)]

pub mod api;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod kind;
pub mod merge;
pub mod ops;
pub mod patch;
pub mod refs;
pub mod state;
pub mod store;

// `config_provider: etcd` (kept apart from the list above).
pub mod etcd;

pub use api::AdminServer;
pub use error::{AdminError, EngineError};
pub use hub::{ConfigHub, Engine, OpenError, View};
pub use kind::Kind;
