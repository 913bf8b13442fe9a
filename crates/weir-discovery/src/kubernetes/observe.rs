//! A tower layer around kube's client that tells the cluster's
//! [`SharedSync`] when the API server answers with a 2xx, and whether the
//! request was a watch: kube's watcher emits nothing when a watch starts,
//! yet "the watch is established again" is what resets the backoff and
//! marks the source recovered.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{BoxError, Layer, Service};

use super::sync::SharedSync;

/// Reports 2xx responses to a [`SharedSync`].
#[derive(Clone)]
pub struct ObserveLayer {
    sync: Arc<SharedSync>,
}

impl ObserveLayer {
    /// A layer reporting to `sync`.
    pub fn new(sync: Arc<SharedSync>) -> Self {
        ObserveLayer { sync }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            sync: self.sync.clone(),
        }
    }
}

/// The service built by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    sync: Arc<SharedSync>,
}

/// `watch=true` / `watch=1` in the query.
fn is_watch(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|kv| {
        matches!(
            kv.split_once('='),
            Some(("watch", "true" | "1" | "True" | "TRUE" | "t" | "T"))
        )
    })
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Observe<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<ResB>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let watch = is_watch(req.uri().query());
        let fut = self.inner.call(req);
        let sync = self.sync.clone();
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            if resp.status().is_success() {
                sync.answered(watch);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_requests_are_recognised() {
        assert!(is_watch(Some("watch=true&resourceVersion=5")));
        assert!(is_watch(Some("limit=5&watch=1")));
        assert!(!is_watch(Some("limit=500")));
        assert!(!is_watch(Some("watch=false")));
        assert!(!is_watch(None));
    }
}
