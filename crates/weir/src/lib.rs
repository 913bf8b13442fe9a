//! weir: an API gateway for Kubernetes that routes straight to pods.
//!
//! This crate wires the pieces together: [`gateway::Gateway`] runs the data
//! plane (`weir-proxy`), Kubernetes discovery (`weir-discovery`), the
//! control API and live reload. The `weir` binary is a thin CLI over it.

pub mod control;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod warm;

pub use gateway::{Gateway, GatewayCore, ReloadError};
