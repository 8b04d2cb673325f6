//! An account's venue health around an op: what `keyscope_sendUserOperation` answers and an op's record
//! keeps.

use alloy_primitives::{I256, U256};
use serde::{Deserialize, Serialize};

/// An account's standing on the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Collateral plus unrealised PnL and funding (quote units).
    pub account_value: I256,
    /// Margin its positions need to be opened or grown.
    pub initial_margin: U256,
    /// Margin below which it can be liquidated.
    pub maintenance_margin: U256,
    /// `Healthy`, `MarginCall`, `Liquidatable` or `Bankrupt`.
    pub state: String,
}

/// Health before and after the op, on the pending state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthChange {
    /// Before the op.
    pub before: Health,
    /// After it.
    pub after: Health,
}
