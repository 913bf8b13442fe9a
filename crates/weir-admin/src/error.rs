//! The Admin API's answers other than success, with APISIX's status codes
//! and bodies.

use http::StatusCode;
use serde_json::{json, Value};

use crate::store::StoreError;

/// Why the engine did not take a configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration was refused; every error names its field in the
    /// merged configuration.
    #[error("configuration rejected:\n{0}")]
    Rejected(weir_config::FieldErrors),
    /// Something else failed (discovery could not start, ...).
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An Admin API request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 404 `{"message":"Key not found"}`.
    #[error("Key not found")]
    NotFound,
    /// 404 with an `error_msg` (unknown resource type, missing consumer).
    #[error("{0}")]
    Missing(String),
    /// 400 `{"error_msg": ...}`.
    #[error("{0}")]
    BadRequest(String),
    /// 405 `{"error_msg": ...}`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The write was valid but could not be kept: 503, nothing changed.
    #[error("the change could not be saved, nothing was changed: {0}")]
    Store(#[from] StoreError),
    /// Another writer changed the resource since it was read (etcd's
    /// compare-and-swap failed): 409, nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// The configuration store (etcd) could not be reached: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The engine failed for a reason other than the configuration: 500.
    #[error("{0}")]
    Engine(#[from] EngineError),
}

impl AdminError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NotFound | AdminError::Missing(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Store(_) | AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// APISIX's body.
    pub fn body(&self) -> Value {
        match self {
            AdminError::NotFound => json!({"message": "Key not found"}),
            other => json!({"error_msg": other.to_string()}),
        }
    }
}
