//! Bearer-token authentication to the API server, as a tower layer around
//! kube's client stack.
//!
//! A `token_file` (projected service-account token) rotates: the file is
//! stat'ed before each request and re-read when its modification time or
//! size changed; a 401 drops the cached token so the watcher's next attempt
//! (after its backoff) reads the file again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{header::AUTHORIZATION, HeaderValue, Request, Response, StatusCode};
use tower::{BoxError, Layer, Service};
use weir_config::discovery_resolve::Secret;

use crate::ratelimit::RateLimiter;

/// Why no token could be attached.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read token_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("token_file {0} is empty")]
    Empty(PathBuf),
    /// The token holds characters not allowed in a header.
    #[error("the token is not a valid HTTP header value")]
    InvalidHeader,
}

/// The last token read from a file, with what identified the file version.
#[derive(Debug)]
pub struct Cached {
    token: Secret,
    modified: Option<SystemTime>,
    len: u64,
}

/// Where the bearer token comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// A fixed token.
    Static(Secret),
    /// A file re-read when it changes or after a 401.
    File {
        /// The file.
        path: PathBuf,
        /// Last read value.
        cache: Mutex<Option<Cached>>,
    },
}

impl TokenSource {
    /// A source reading `path`.
    pub fn file(path: PathBuf) -> Self {
        TokenSource::File {
            path,
            cache: Mutex::new(None),
        }
    }

    /// The token to send now.
    pub fn current(&self) -> Result<Secret, TokenError> {
        match self {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::File { path, cache } => {
                let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
                    path: path.clone(),
                    source,
                })?;
                let modified = meta.modified().ok();
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = cache.as_ref() {
                    if c.modified == modified && c.len == meta.len() {
                        return Ok(c.token.clone());
                    }
                }
                let token = read_token(path)?;
                *cache = Some(Cached {
                    token: token.clone(),
                    modified,
                    len: meta.len(),
                });
                Ok(token)
            }
        }
    }

    /// Forgets the cached token (after a 401).
    pub fn invalidate(&self) {
        if let TokenSource::File { cache, .. } = self {
            *cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    fn describe(&self) -> String {
        match self {
            TokenSource::Static(_) => "client.token".to_owned(),
            TokenSource::File { path, .. } => format!("token_file {}", path.display()),
        }
    }
}

fn read_token(path: &Path) -> Result<Secret, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_owned()));
    }
    Ok(Secret::new(token))
}

/// Adds `Authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct BearerAuthLayer {
    source: Arc<TokenSource>,
    log: Arc<RateLimiter>,
}

impl BearerAuthLayer {
    /// A layer taking tokens from `source`.
    pub fn new(source: TokenSource) -> Self {
        BearerAuthLayer {
            source: Arc::new(source),
            log: Arc::new(RateLimiter::new(std::time::Duration::from_secs(30))),
        }
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;
    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth {
            inner,
            source: self.source.clone(),
            log: self.log.clone(),
        }
    }
}

/// The service built by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    source: Arc<TokenSource>,
    log: Arc<RateLimiter>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for BearerAuth<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResB>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let header = self.source.current().and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| TokenError::InvalidHeader)?;
            v.set_sensitive(true);
            Ok(v)
        });
        match header {
            Ok(v) => {
                req.headers_mut().insert(AUTHORIZATION, v);
            }
            Err(e) => {
                if self.log.allow("token") {
                    tracing::error!(error = %e, "cannot authenticate to the API server");
                }
                return Box::pin(async move { Err(BoxError::from(e)) });
            }
        }
        let fut = self.inner.call(req);
        let source = self.source.clone();
        let log = self.log.clone();
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                source.invalidate();
                if log.allow("401") {
                    tracing::warn!(
                        source = %source.describe(),
                        "API server answered 401 Unauthorized; the token will be re-read"
                    );
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_reread_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("weir-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let src = TokenSource::file(path.clone());
        assert_eq!(src.current().unwrap().expose(), "first");
        std::fs::write(&path, "second-token").unwrap();
        assert_eq!(src.current().unwrap().expose(), "second-token");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(src.current(), Err(TokenError::Empty(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_debug_is_redacted() {
        let src = TokenSource::Static(Secret::new("abc"));
        assert!(!format!("{src:?}").contains("abc"));
    }
}
