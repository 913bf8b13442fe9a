//! Node registry and Kubernetes service discovery.
