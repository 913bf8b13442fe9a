//! Test kit for weir: a faithful fake Kubernetes API server with fault injection
//! ([`kube_api`]), used by integration tests that run without a cluster.

#![warn(missing_docs)]

pub mod kube_api;
