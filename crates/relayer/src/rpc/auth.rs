//! Signed requests: who a request comes from, and what it may do.
//!
//! The access layer hands a request carrying `X-Keyscope-Key` to [`authenticate`] (an HTTP request with the
//! keccak256 of its body, which the accept loop put in [`BodyHash`]; a WebSocket's upgrade request with an
//! empty body, once for the connection): the result — the [`Caller`], or why it is refused — goes into the
//! request's extensions. Then this JSON-RPC middleware ([`Gate`]) answers each call: a refused
//! authentication refuses every call with its reason; a call without a key passes unless the operator
//! requires keys for it (`api_keys.require`); a call with one must be within the key's permission and
//! account and within its quotas, and its outcome (an order or op taken or refused) counts in its
//! behaviour score.

use std::{sync::Arc, time::Instant};

use alloy_primitives::{Address, B256, keccak256};
use jsonrpsee::{
    core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT},
    server::{HttpRequest, MethodResponse},
    types::{ErrorObject, Request},
};
use keyscope_core::api_key::{Permission, SignedHeaders};

use super::{
    ClientAddr,
    api_keys::{ApiKeys, Caller, refused},
    quota::Class,
};
use crate::{config::RequireKeys, error::code, metrics::Metrics};

/// The keccak256 of a plain HTTP request's body (set by the accept loop on a request with an API key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyHash(pub B256);

/// Why a request's API key authentication failed: every call in it is refused with this.
#[derive(Debug, Clone)]
pub(crate) struct AuthRefused(pub ErrorObject<'static>);

/// Authenticates `req` if it carries an API key, recording the outcome in its extensions.
pub(crate) async fn authenticate<B>(keys: &ApiKeys, req: &mut HttpRequest<B>) {
    let parsed = SignedHeaders::parse(|n| req.headers().get(n).and_then(|v| v.to_str().ok()));
    let headers = match parsed {
        Ok(None) => return,
        Ok(Some(h)) => h,
        Err(e) => {
            let e = refused(code::API_KEY_INVALID, e.to_string());
            req.extensions_mut().insert(AuthRefused(e.into()));
            return;
        }
    };
    let body_hash = req
        .extensions()
        .get::<BodyHash>()
        .map_or_else(|| keccak256([]), |b| b.0);
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    match keys
        .authenticate(&headers, &method, &path, body_hash, client)
        .await
    {
        Ok(caller) => {
            req.extensions_mut().insert(Arc::new(caller));
        }
        Err(e) => {
            tracing::debug!(key = %headers.key, "API key request refused: {}", e.message);
            req.extensions_mut().insert(AuthRefused(e.into()));
        }
    }
}

/// The signed-order methods (`api_keys.require = "orders"` covers them).
const ORDER_METHODS: [&str; 9] = [
    "keyscope_placeOrder",
    "keyscope_replaceOrder",
    "keyscope_cancelOrders",
    "keyscope_cancelAllOrders",
    "keyscope_scheduleCancel",
    "keyscope_getOrder",
    "keyscope_getBook",
    "keyscope_subscribeBook",
    "keyscope_subscribeOrders",
];

/// Signed by the account's owner, they need no API key (a key is registered with one).
const OWNER_SIGNED: [&str; 2] = ["keyscope_registerApiKey", "keyscope_revokeApiKey"];

/// What `method` does.
pub(crate) fn class_of(method: &str) -> Class {
    match method {
        "eth_sendUserOperation"
        | "keyscope_sendUserOperation"
        | "keyscope_placeOrder"
        | "keyscope_replaceOrder" => Class::Trade,
        "keyscope_cancelOrders" | "keyscope_cancelAllOrders" | "keyscope_scheduleCancel" => {
            Class::Cancel
        }
        _ => Class::Read,
    }
}

/// Whether a key of `permission` may call a method of `class`.
pub(crate) fn permits(permission: Permission, class: Class) -> bool {
    match permission {
        Permission::Trade => true,
        Permission::CancelOnly => class != Class::Trade,
        Permission::ReadOnly => class == Class::Read,
    }
}

/// The account a call acts for, if its parameters name one: an op's `sender`, or an order's or request's
/// `account` (in the first parameter that is an object with one).
fn account_named(req: &Request<'_>) -> Option<Address> {
    let params: serde_json::Value = serde_json::from_str(req.params().as_str()?).ok()?;
    params.as_array()?.iter().find_map(|p| {
        let v = p.get("sender").or_else(|| p.get("account"))?;
        v.as_str()?.parse().ok()
    })
}

/// Who gates: the registry (None: API keys off), who must sign, and the metrics.
#[derive(Debug, Clone)]
pub(crate) struct GateLayer {
    /// The registry.
    pub keys: Option<Arc<ApiKeys>>,
    /// Who must sign.
    pub require: RequireKeys,
    /// Per-key counters.
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module's documentation.
#[derive(Debug, Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

/// What a call that passed the checks must do after it ran.
struct Admitted {
    keys: Arc<ApiKeys>,
    key: B256,
    class: Class,
}

impl GateLayer {
    fn error(c: i32, message: String) -> ErrorObject<'static> {
        ErrorObject::owned(c, message, None::<()>)
    }

    /// Checks one call: refused (with its error), or admitted (with what to count after it).
    fn check(&self, req: &Request<'_>) -> Result<Option<Admitted>, ErrorObject<'static>> {
        let method = req.method_name();
        let ext = req.extensions();
        if let Some(AuthRefused(e)) = ext.get::<AuthRefused>() {
            return Err(e.clone());
        }
        let Some(caller) = ext.get::<Arc<Caller>>() else {
            let required = match self.require {
                RequireKeys::None => false,
                RequireKeys::Orders => ORDER_METHODS.contains(&method),
                RequireKeys::All => !OWNER_SIGNED.contains(&method),
            };
            if required && self.keys.is_some() {
                return Err(Self::error(
                    code::API_KEY_REQUIRED,
                    format!(
                        "{method} needs a request signed with an API key (X-Keyscope-Key, -Timestamp, -Window, -Signature)"
                    ),
                ));
            }
            return Ok(None);
        };
        let Some(keys) = self.keys.clone() else {
            return Ok(None);
        };
        let label = caller.key.to_string();
        let refuse = |c: i32, m: String| {
            self.metrics.api_key(&label, true, false);
            Err(Self::error(c, m))
        };
        if OWNER_SIGNED.contains(&method) {
            return Ok(None);
        }
        let class = class_of(method);
        if !permits(caller.permission, class) {
            return refuse(
                code::API_KEY_PERMISSION,
                format!(
                    "{method} is beyond API key {}'s permission ({:?})",
                    caller.key, caller.permission
                ),
            );
        }
        if let Some(account) = account_named(req) {
            if account != caller.account && class != Class::Read {
                return refuse(
                    code::API_KEY_PERMISSION,
                    format!(
                        "API key {} acts for account {}, not {account}",
                        caller.key, caller.account
                    ),
                );
            }
        }
        if let Err(t) = keys.quotas.admit(caller.key, class, Instant::now()) {
            return refuse(code::API_KEY_THROTTLED, t.to_string());
        }
        Ok(Some(Admitted {
            keys,
            key: caller.key,
            class,
        }))
    }

    /// Counts a call's outcome in its key's behaviour and metrics.
    fn done(&self, admitted: Admitted, response: &MethodResponse) {
        let label = admitted.key.to_string();
        let mut banned = false;
        if admitted.class != Class::Read {
            // The server's own failures are nobody's behaviour.
            let fault = response
                .as_error_code()
                .is_some_and(|c| c != code::INTERNAL);
            banned = admitted
                .keys
                .quotas
                .record(admitted.key, !fault, Instant::now());
        }
        self.metrics.api_key(&label, false, banned);
    }
}

impl<S> RpcServiceT for Gate<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let checked = self.layer.check(&req);
        let (inner, layer) = (self.inner.clone(), self.layer.clone());
        async move {
            match checked {
                Err(error) => MethodResponse::error(req.id().into_owned(), error),
                Ok(None) => inner.call(req).await,
                Ok(Some(admitted)) => {
                    let response = inner.call(req).await;
                    layer.done(admitted, &response);
                    response
                }
            }
        }
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        // Checked and charged per call; outcomes inside a batch do not count in the behaviour score.
        for entry in batch.iter_mut() {
            if let Ok(BatchEntry::Call(req)) = entry
                && let Err(error) = self.layer.check(req)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_by_class() {
        use Permission::*;
        assert!(permits(ReadOnly, class_of("keyscope_getBook")));
        assert!(!permits(ReadOnly, class_of("keyscope_placeOrder")));
        assert!(!permits(ReadOnly, class_of("keyscope_cancelAllOrders")));
        assert!(permits(CancelOnly, class_of("keyscope_cancelOrders")));
        assert!(!permits(CancelOnly, class_of("keyscope_replaceOrder")));
        assert!(!permits(CancelOnly, class_of("eth_sendUserOperation")));
        assert!(permits(Trade, class_of("eth_sendUserOperation")));
    }
}
