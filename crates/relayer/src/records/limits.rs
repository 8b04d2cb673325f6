//! The pool's limits: part of the relayer's configuration and of the pool's checks.

use serde::{Deserialize, Serialize};

/// Pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, default)]
pub struct PoolLimits {
    /// Ops one unstaked Keyscope account may have waiting (ERC-7562's 4 is too few for a market maker's
    /// parallel lanes).
    pub max_ops_per_sender: usize,
    /// Ops any other unstaked sender may have waiting (ERC-7562's SAME_SENDER_MEMPOOL_COUNT).
    pub max_ops_per_other_sender: usize,
    /// Ops one session key may have waiting.
    pub max_ops_per_session_key: usize,
    /// Ops in the whole pool.
    pub max_ops: usize,
    /// A replacement must raise both fees by this many percent.
    pub replacement_fee_bump_percent: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_ops_per_sender: 64,
            max_ops_per_other_sender: 4,
            max_ops_per_session_key: 32,
            max_ops: 10_000,
            replacement_fee_bump_percent: 10,
        }
    }
}
