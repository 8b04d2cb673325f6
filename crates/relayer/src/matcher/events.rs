//! What the matcher publishes: book level changes and trades per market (public), and each key's order
//! updates and fills (to that key's authenticated subscribers only).

use alloy_primitives::{Address, B256, U256};
use serde::Serialize;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum OrderStatus {
    /// On the book, nothing matched.
    Resting,
    /// Partly matched; the rest is on the book (or was cancelled, see the reason).
    PartiallyFilled,
    /// Matched in full.
    Filled,
    /// Off the book before it was matched in full (by its key, a scheduled or disconnect cancel, the key's
    /// state on chain, self-trade prevention, an immediate-or-cancel rest).
    Cancelled,
    /// Off the book at its expiry.
    Expired,
}

/// Where a fill stands on its way to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum FillStatus {
    /// Matched off-chain; waits for the settlement loop.
    Matched,
    /// In a settlement transaction sent to the chain.
    Submitted,
    /// Included and buried under the reorg depth.
    Settled,
    /// The chain (simulated or included) refused it; the reason says why. Nothing moved.
    Refused,
}

/// A fill, as an order update carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FillRef {
    pub id: u64,
    pub size: U256,
    pub price: U256,
    pub status: FillStatus,
    pub transaction_hash: Option<B256>,
}

impl FillRef {
    /// A fill of `size` at `price` (18 decimals each).
    pub(crate) fn new(
        id: u64,
        size: u128,
        price: u128,
        status: FillStatus,
        tx: Option<B256>,
    ) -> Self {
        Self {
            id,
            size: U256::from(size),
            price: U256::from(price),
            status,
            transaction_hash: tx,
        }
    }
}

/// A change to one order, sent to its key's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderUpdate {
    pub account: Address,
    pub key: Address,
    pub order_hash: B256,
    pub market_id: u32,
    pub is_buy: bool,
    pub status: OrderStatus,
    /// Matched so far.
    pub filled: U256,
    /// Resting on the book now.
    pub remaining: U256,
    pub reason: Option<String>,
    /// The fill this update is about, if any.
    pub fill: Option<FillRef>,
}

/// One published change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum MatcherEvent {
    /// The size now resting at one price level (0: the level is gone).
    #[serde(rename_all = "camelCase")]
    Book {
        market_id: u32,
        is_buy: bool,
        price: U256,
        size: U256,
    },
    /// A match, at the maker's price.
    #[serde(rename_all = "camelCase")]
    Trade {
        market_id: u32,
        fill_id: u64,
        price: U256,
        size: U256,
        taker_is_buy: bool,
    },
    /// An order's change.
    Order(Box<OrderUpdate>),
}

impl MatcherEvent {
    /// The market of a public event.
    pub(crate) fn market(&self) -> Option<u32> {
        match self {
            Self::Book { market_id, .. } | Self::Trade { market_id, .. } => Some(*market_id),
            Self::Order(_) => None,
        }
    }
}
