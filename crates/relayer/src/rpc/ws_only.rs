//! Subscriptions need a WebSocket: called over HTTP, jsonrpsee answers -32603 "internal error". This
//! JSON-RPC middleware answers such a call — alone or inside a batch — with -32601 and says what to do
//! instead.

use jsonrpsee::{
    core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT},
    server::MethodResponse,
    types::{ErrorObject, Request},
};

/// Set on a request that came over plain HTTP (not through a WebSocket upgrade).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverHttp;

/// The methods that only work on a WebSocket.
const WS_ONLY: [&str; 2] = [
    "keyscope_subscribeAccountEvents",
    "keyscope_unsubscribeAccountEvents",
];

/// The error for `req` if it is a subscription method called over HTTP.
fn refusal(req: &Request<'_>) -> Option<ErrorObject<'static>> {
    let refuse =
        WS_ONLY.contains(&req.method_name()) && req.extensions().get::<OverHttp>().is_some();
    refuse.then(|| {
        let message = format!(
            "{} needs a WebSocket connection (ws:// on the same address)",
            req.method_name()
        );
        ErrorObject::owned(-32601, message, None::<()>)
    })
}

/// The tower layer for [`WsOnly`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WsOnlyLayer;

impl<S> tower::Layer<S> for WsOnlyLayer {
    type Service = WsOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WsOnly { inner }
    }
}

/// Refuses subscription methods called over HTTP with a clear error; passes everything else on.
#[derive(Debug, Clone)]
pub(crate) struct WsOnly<S> {
    inner: S,
}

impl<S> RpcServiceT for WsOnly<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let refusal = refusal(&req);
        let inner = self.inner.clone();
        async move {
            if let Some(error) = refusal {
                return MethodResponse::error(req.id().into_owned(), error);
            }
            inner.call(req).await
        }
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            if let Ok(BatchEntry::Call(req)) = entry
                && let Some(error) = refusal(req)
            {
                *entry = Err(BatchEntryErr::new(req.id().into_owned(), error));
            }
        }
        self.inner.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}
