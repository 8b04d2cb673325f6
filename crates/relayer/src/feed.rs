//! The real-time portfolio feed: venue events (fills, deposits, withdrawals, margin calls,
//! liquidations, state changes, bad debt) read from each new block and pushed to WebSocket
//! subscribers of the account they concern (`keyscope_subscribeAccountEvents`).

use std::time::Duration;

use alloy::{
    providers::{DynProvider, Provider},
    rpc::types::{Filter, Log},
    sol_types::SolEventInterface,
};
use alloy_primitives::{Address, B256};
use keyscope_core::bindings::PerpVenue::PerpVenueEvents;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One venue event about one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FeedEvent {
    pub account: Address,
    /// OrderFilled, Deposited, Withdrawn, MarginCall, Liquidated, AccountStateChanged, FundingSettled, BadDebt.
    pub event: String,
    pub block_number: Option<u64>,
    pub transaction_hash: Option<B256>,
    pub fields: Value,
}

/// Reads a venue log as a feed event, if it concerns one account.
pub(crate) fn decode(log: &Log) -> Option<FeedEvent> {
    let ev = PerpVenueEvents::decode_log(&log.inner).ok()?.data;
    let (account, event, fields) = match ev {
        PerpVenueEvents::OrderFilled(e) => (
            e.account,
            "OrderFilled",
            json!({ "marketId": e.marketId, "orderId": e.orderId, "sizeDelta": e.sizeDelta, "price": e.price, "fee": e.fee,
                    "realisedPnl": e.realisedPnl, "newSize": e.newSize }),
        ),
        PerpVenueEvents::Deposited(e) => (e.account, "Deposited", json!({ "amount": e.amount })),
        PerpVenueEvents::Withdrawn(e) => (e.account, "Withdrawn", json!({ "amount": e.amount })),
        PerpVenueEvents::MarginCall(e) => (
            e.account,
            "MarginCall",
            json!({ "accountValue": e.accountValue, "initialMargin": e.imr, "maintenanceMargin": e.mmr }),
        ),
        PerpVenueEvents::Liquidated(e) => (
            e.account,
            "Liquidated",
            json!({ "marketId": e.marketId, "liquidator": e.liquidator, "closedSize": e.closedSize, "price": e.price,
                    "penalty": e.penalty, "reward": e.reward }),
        ),
        PerpVenueEvents::AccountStateChanged(e) => (
            e.account,
            "AccountStateChanged",
            json!({ "previous": format!("{:?}", e.previous), "current": format!("{:?}", e.current),
                    "accountValue": e.accountValue, "initialMargin": e.imr, "maintenanceMargin": e.mmr }),
        ),
        PerpVenueEvents::FundingSettled(e) => (
            e.account,
            "FundingSettled",
            json!({ "marketId": e.marketId, "amount": e.amount }),
        ),
        PerpVenueEvents::BadDebt(e) => (
            e.account,
            "BadDebt",
            json!({ "coveredByInsurance": e.coveredByInsurance, "uncovered": e.uncovered }),
        ),
        _ => return None,
    };
    Some(FeedEvent {
        account,
        event: event.into(),
        block_number: log.block_number,
        transaction_hash: log.transaction_hash,
        fields,
    })
}

/// Follows the chain every `interval` and publishes `venue`'s events on `feed` until `shutdown`.
pub(crate) async fn run(
    provider: DynProvider,
    venue: Address,
    interval: Duration,
    feed: broadcast::Sender<FeedEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut next = match provider.get_block_number().await {
        Ok(n) => n + 1,
        Err(e) => {
            tracing::warn!("feed: cannot read the head: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let Ok(latest) = provider.get_block_number().await else {
            continue;
        };
        if latest < next {
            // The chain went back (a reorg or rollback): follow it.
            next = next.min(latest + 1);
            continue;
        }
        let filter = Filter::new()
            .address(venue)
            .from_block(next)
            .to_block(latest);
        match provider.get_logs(&filter).await {
            Ok(logs) => {
                for ev in logs.iter().filter_map(decode) {
                    // No subscriber is not an error.
                    let _ = feed.send(ev);
                }
                next = latest + 1;
            }
            Err(e) => tracing::warn!("feed: get_logs failed: {e}"),
        }
    }
}
