//! Consumers: who a request comes from, once an authentication plugin has
//! recognised it.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;

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
    /// The values of `X-Consumer-Username`, `X-Credential-Identifier` and
    /// `X-Consumer-Custom-ID`, made at the first request (leave it empty
    /// when building a consumer).
    pub upstream_values: OnceLock<[Option<HeaderValue>; 3]>,
}

impl Consumer {
    /// A consumer with only a name.
    pub fn named(username: &str) -> Consumer {
        Consumer {
            username: Arc::from(username),
            custom_id: None,
            group_id: None,
            credential_id: None,
            upstream_values: OnceLock::new(),
        }
    }

    /// See [`Consumer::upstream_values`].
    pub fn field_values(&self) -> &[Option<HeaderValue>; 3] {
        self.upstream_values.get_or_init(|| {
            [
                Some(&self.username),
                self.credential_id.as_ref(),
                self.custom_id.as_ref(),
            ]
            .map(|v| v.and_then(|v| HeaderValue::from_str(v).ok()))
        })
    }
}
