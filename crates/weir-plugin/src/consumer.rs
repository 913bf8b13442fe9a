//! Consumers: who a request comes from, once an authentication plugin has
//! recognised it.

use std::sync::Arc;

/// A consumer as plugins and the upstream see it. Holds no credential:
/// keys and secrets stay inside the authentication plugins' indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// `username`.
    pub username: Arc<str>,
    /// `labels.custom_id`, sent upstream as `X-Consumer-Custom-ID`.
    pub custom_id: Option<Arc<str>>,
    /// The consumer group, if any.
    pub group_id: Option<Arc<str>>,
    /// The credential that matched (APISIX 3.7+ credentials), sent upstream
    /// as `X-Credential-Identifier`.
    pub credential_id: Option<Arc<str>>,
}

impl Consumer {
    /// A consumer with only a name.
    pub fn named(username: &str) -> Consumer {
        Consumer {
            username: Arc::from(username),
            custom_id: None,
            group_id: None,
            credential_id: None,
        }
    }
}
