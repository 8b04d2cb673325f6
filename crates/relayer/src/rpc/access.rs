//! Who may call what. An HTTP layer in front of every request (HTTP and the WebSocket upgrade) refuses a
//! browser page from an origin the operator did not list, and marks a request that carries the admin
//! bearer token; admin methods (`debug_bundler_*`, `keyscope_auditLog`) check that mark.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use jsonrpsee::server::{HttpRequest, HttpResponse, http::response};
use tower::{Layer, Service};

use crate::error::{RpcError, code};

/// Set on a request whose `Authorization: Bearer …` matches the admin token.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admin;

/// What the relayer lets in.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessPolicy {
    /// The admin token; `None`: admin methods only when the relayer listens on loopback.
    pub admin_token: Option<String>,
    /// The relayer listens on a loopback address only (every caller is on this machine).
    pub loopback: bool,
    /// Origins a browser page may call from (`*`: any); requests without an `Origin` are not browsers.
    pub allowed_origins: Vec<String>,
    /// The API keys a request may be signed with (None: API keys off).
    pub api_keys: Option<Arc<super::api_keys::ApiKeys>>,
}

impl AccessPolicy {
    /// Refuses an admin method to a caller without the token (when one is set) or, with no token set,
    /// to every caller of a relayer that listens beyond loopback.
    pub(crate) fn admin(&self, ext: &http::Extensions, method: &str) -> Result<(), RpcError> {
        let allowed = match self.admin_token {
            Some(_) => ext.get::<Admin>().is_some(),
            None => self.loopback,
        };
        if allowed {
            return Ok(());
        }
        Err(RpcError::new(
            code::UNAUTHORIZED,
            match self.admin_token {
                Some(_) => format!("{method} needs the admin token (Authorization: Bearer …)"),
                None => format!(
                    "{method} is served on a loopback listen address only, or with admin_token set"
                ),
            },
        ))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// The tower layer that applies an [`AccessPolicy`] to each HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct AccessLayer(pub Arc<AccessPolicy>);

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            policy: self.0.clone(),
        }
    }
}

/// See [`AccessLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AccessService<S> {
    inner: S,
    policy: Arc<AccessPolicy>,
}

impl<S, B> Service<HttpRequest<B>> for AccessService<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest<B>) -> Self::Future {
        let headers = request.headers();
        let signed = headers.contains_key(keyscope_core::api_key::HEADER_KEY);
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| self.policy.origin_allowed(o));
            if !allowed {
                return Box::pin(async { Ok(response::denied()) });
            }
        }
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let (Some(given), Some(token)) = (bearer, &self.policy.admin_token) {
            if constant_time_eq(given.as_bytes(), token.as_bytes()) {
                request.extensions_mut().insert(Admin);
            }
        }
        if let (true, Some(keys)) = (signed, self.policy.api_keys.clone()) {
            // The service polled ready goes with this request; a clone stays for the next.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move {
                super::auth::authenticate(&keys, &mut request).await;
                inner.call(request).await
            });
        }
        Box::pin(self.inner.call(request))
    }
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_needs_the_token_or_loopback() {
        let mut with_token = http::Extensions::new();
        with_token.insert(Admin);
        let none = http::Extensions::new();
        let token = AccessPolicy {
            admin_token: Some("t".into()),
            loopback: true,
            ..Default::default()
        };
        assert!(token.admin(&with_token, "debug_x").is_ok());
        let e = token.admin(&none, "debug_x").unwrap_err();
        assert_eq!(e.code, code::UNAUTHORIZED);
        assert!(e.message.contains("admin token"), "{}", e.message);
        let open_local = AccessPolicy {
            loopback: true,
            ..Default::default()
        };
        assert!(open_local.admin(&none, "debug_x").is_ok());
        let open_remote = AccessPolicy::default();
        assert!(open_remote.admin(&with_token, "debug_x").is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
