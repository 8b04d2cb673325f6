//! One entity's ERC-7562 reputation counters, as the pool keeps them and the store persists them.

use serde::{Deserialize, Serialize};

/// One entity's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReputationEntry {
    /// Ops of the entity the pool took (ERC-7562's opsSeen).
    pub ops_seen: u64,
    /// Ops of the entity seen included on chain (opsIncluded).
    pub ops_included: u64,
}
