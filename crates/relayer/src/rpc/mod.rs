//! The JSON-RPC face, one file per namespace: ERC-7769's `eth_*` methods so any ERC-4337 client works
//! unchanged ([`eth`]) with the fee method common clients call ([`fees`]), Keyscope's own — the send that returns the account's health, an op's lifecycle
//! status, the audit log, the relayer's status and the account event subscription ([`keyscope`]) — and the
//! `debug_bundler_*` methods the bundler spec tests drive, only when the config enables them ([`debug`]).

mod access;
pub(crate) mod api_keys;
pub(crate) mod auth;
mod debug;
mod eth;
mod fees;
mod keyscope;
mod orders;
pub(crate) mod quota;
mod receipt;
mod serve;
pub mod tls;
mod ws_only;

use std::sync::Arc;

use alloy_primitives::Address;
use jsonrpsee::{RpcModule, core::RegisterMethodError, types::ErrorObjectOwned};
use tokio::sync::broadcast;

pub(crate) use access::{AccessLayer, AccessPolicy};
pub(crate) use serve::{ClientAddr, ConnectionLimits, serve};
pub(crate) use ws_only::{OverHttp, WsOnlyLayer};

/// The caller's address, as the accept loop saw it.
fn client_of(ext: &http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<ClientAddr>().map(|c| c.0)
}

use serde_json::Value;

use crate::{
    cluster::Cluster, error::RpcError, feed::FeedEvent, metrics::Metrics, service::Service,
};

/// What every method gets.
#[derive(Debug, Clone)]
pub(crate) struct RpcContext {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
    /// Venue events for `keyscope_subscribeAccountEvents`.
    pub feed: broadcast::Sender<FeedEvent>,
    /// Minimum stake and unstake delay for an entity to count as staked.
    pub min_stake: (alloy_primitives::U256, u32),
    /// Who may call the admin methods.
    pub access: Arc<AccessPolicy>,
    /// This instance's part in a deployment of several (a Postgres store), if any.
    pub cluster: Option<Arc<Cluster>>,
    /// The matcher for signed orders, if it runs.
    pub matcher: Option<crate::matcher::Matcher>,
    /// The API keys bound to accounts, if kept.
    pub api_keys: Option<Arc<api_keys::ApiKeys>>,
}

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn err(mut e: RpcError) -> ErrorObjectOwned {
    e.message = redact_addresses(&e.message);
    e.into()
}

/// What a client is told stands for an address inside the deployment.
const REDACTED: &str = "<internal address>";

/// `message` with every URL (`scheme://…`: the node's, a peer instance's, the store's) replaced by
/// [`REDACTED`]: an error passed up from a node or a peer may name them, and clients have no business
/// knowing the deployment's inside. What was redacted goes to the debug log.
fn redact_addresses(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let scheme = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = rest[at + 3..]
            .find(|c: char| c.is_whitespace() || "\"'()<>,;`".contains(c))
            .map_or(rest.len(), |n| at + 3 + n);
        if scheme == at {
            // No scheme before "://": not a URL; keep it and look further.
            out.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
        } else {
            tracing::debug!(
                "redacted from a client-facing error: {}",
                &rest[scheme..end]
            );
            out.push_str(&rest[..scheme]);
            out.push_str(REDACTED);
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

impl RpcContext {
    /// Refuses an EntryPoint other than the one this relayer serves.
    fn check_entry_point(&self, entry_point: Address) -> RpcResult<()> {
        let served = self.service.identity.entry_point;
        if entry_point != served {
            return Err(err(RpcError::invalid_fields(format!(
                "unsupported entry point {entry_point}; this relayer serves {served} (v0.8)"
            ))));
        }
        Ok(())
    }

    /// An op sent by a client: taken here, or — with several instances — handed to the instance holding
    /// its sender's shard, whose answer is returned as it is.
    async fn send(
        &self,
        op: Value,
        entry_point: Address,
        with_health: bool,
        client: Option<std::net::IpAddr>,
    ) -> Result<Value, RpcError> {
        if let Some(cluster) = &self.cluster {
            if let Some(sender) = sender_of(&op) {
                if !cluster.serves(sender) {
                    return cluster.forward(op, entry_point, with_health, sender).await;
                }
            }
        }
        self.take(op, with_health, client, false).await
    }

    /// An op into this instance's pool; `forwarded`: from another instance, refused unless this one serves
    /// its sender. Answers the op's hash, or (`with_health`) the hash and the account's health.
    async fn take(
        &self,
        op: Value,
        with_health: bool,
        client: Option<std::net::IpAddr>,
        forwarded: bool,
    ) -> Result<Value, RpcError> {
        if let (true, Some(cluster), Some(sender)) = (forwarded, &self.cluster, sender_of(&op)) {
            if !cluster.serves(sender) {
                return Err(crate::cluster::not_served(cluster.fence.shard_of(sender)));
            }
        }
        let accepted = self.service.pool.add(op, with_health, client).await?;
        Ok(if with_health {
            serde_json::to_value(&accepted).map_err(RpcError::internal)?
        } else {
            serde_json::json!(accepted.user_op_hash)
        })
    }
}

/// The `sender` field of an op as sent, if it reads as an address (the pool refuses it otherwise).
fn sender_of(op: &Value) -> Option<Address> {
    op.get("sender")?.as_str()?.parse().ok()
}

/// All methods, debug ones included when `debug_api` is on.
pub(crate) fn module(
    ctx: RpcContext,
    debug_api: bool,
) -> Result<RpcModule<RpcContext>, RegisterMethodError> {
    let clustered = ctx.cluster.is_some();
    let mut m = RpcModule::new(ctx);
    eth::register(&mut m)?;
    fees::register(&mut m)?;
    keyscope::register(&mut m)?;
    orders::register(&mut m)?;
    api_keys::register(&mut m)?;
    if clustered {
        keyscope::register_forwarded(&mut m)?;
    }
    if debug_api {
        debug::register(&mut m)?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_client_facing_errors_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_addresses(
                "the node did not answer: error sending request for url (http://10.0.0.5:8545/)"
            ),
            "the node did not answer: error sending request for url (<internal address>)"
        );
        assert_eq!(
            redact_addresses("relayer-b advertises \"https://relayer-b.internal:4337\": refused"),
            "relayer-b advertises \"<internal address>\": refused"
        );
        assert_eq!(
            redact_addresses("store postgres://relayer@db:5432/keyscope down, ws://x too"),
            "store <internal address> down, <internal address> too"
        );
        let plain = "AA25 invalid account nonce: expected 3 (see ://docs)";
        assert_eq!(redact_addresses(plain), plain);
        // The code and data of the error are kept; only the message changes.
        let e = err(RpcError::internal("failed at http://node:8545"));
        assert_eq!(e.message(), "internal error: failed at <internal address>");
    }
}
