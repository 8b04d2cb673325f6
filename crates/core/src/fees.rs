//! A session key's fee limits as the account keeps them, and the account's fee check, in Rust.
//!
//! TradingAccount charges every self-paid session op its maximum cost — (verificationGasLimit +
//! callGasLimit + preVerificationGas) × maxFeePerGas, rounded up to whole gwei — against the key's per-op
//! cap and what is left of its fee budget, all kept in the session's storage word (`SessionState.sol`). A
//! relayer reads that word and runs the same check at its door, so an op over the limits is refused before
//! it is simulated; the refusal it gives is the account's own error, read by [`crate::refusal`].

use alloy::sol_types::{SolError, SolValue};
use alloy_primitives::{Address, U256, keccak256};

use crate::{bindings::TradingAccount, refusal::Refusal, user_op::PackedUserOperation};

/// The ERC-7201 slot of TradingAccount's storage (`AccountStorage.SLOT`).
pub const ACCOUNT_STORAGE_SLOT: U256 = U256::from_be_slice(&[
    0x95, 0xc5, 0xe8, 0x59, 0xa1, 0x1e, 0x6f, 0xc5, 0x3d, 0xb8, 0xfa, 0x34, 0x67, 0x5f, 0x99, 0xba,
    0x10, 0x57, 0x2b, 0xb8, 0xc9, 0xea, 0x51, 0x9a, 0x3c, 0x6c, 0x77, 0x25, 0x5d, 0x43, 0x50, 0x00,
]);

const GWEI: u64 = 1_000_000_000;

/// The storage slot of `sessions[key]`, the session's hot word (the mapping is the layout's second slot).
pub fn session_word_slot(key: Address) -> U256 {
    U256::from_be_bytes(keccak256((key, ACCOUNT_STORAGE_SLOT + U256::from(1)).abi_encode()).0)
}

/// The fields of a session's hot word that a relayer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWord {
    pub valid_until: u64,
    pub grant_id: u32,
    pub flags: u8,
    /// Most one op may cost (wei); zero for no cap but the budget.
    pub max_op_cost: U256,
    /// Fee budget not yet charged (wei).
    pub fee_left: U256,
}

impl SessionWord {
    /// Decodes the word (`SessionState.sol`'s layout).
    pub fn decode(word: U256) -> Self {
        let bits = |offset: usize, width: usize| -> U256 {
            (word >> offset) & ((U256::from(1) << width) - U256::from(1))
        };
        Self {
            valid_until: bits(40, 40).to::<u64>(),
            grant_id: bits(80, 32).to::<u32>(),
            flags: bits(136, 8).to::<u8>(),
            max_op_cost: bits(144, 56) * U256::from(GWEI),
            fee_left: bits(200, 56) * U256::from(GWEI),
        }
    }

    /// True if a key is granted in this word.
    pub fn is_granted(&self) -> bool {
        self.valid_until != 0
    }

    /// The account's fee check for a self-paid op: Err with the account's own refusal if `op`'s maximum
    /// cost is over the per-op cap or the budget left. Sponsored ops (a paymaster pays) are the account's
    /// paymaster list's business, not checked here.
    pub fn check(&self, op: &PackedUserOperation) -> Result<(), Refusal> {
        if !op.paymasterAndData.is_empty() {
            return Ok(());
        }
        let refuse = |data: Vec<u8>| Err(Refusal::decode(&data));
        let Some(cost) = max_op_cost(op) else {
            return refuse(
                TradingAccount::SessionOpCostTooHigh {
                    cost: U256::MAX,
                    maxOpCost: self.max_op_cost,
                }
                .abi_encode(),
            );
        };
        if !self.max_op_cost.is_zero() && cost > self.max_op_cost {
            return refuse(
                TradingAccount::SessionOpCostTooHigh {
                    cost,
                    maxOpCost: self.max_op_cost,
                }
                .abi_encode(),
            );
        }
        let gwei = U256::from(GWEI);
        if cost.div_ceil(gwei) * gwei > self.fee_left {
            return refuse(
                TradingAccount::SessionFeeBudgetExceeded {
                    cost,
                    feeLeft: self.fee_left,
                }
                .abi_encode(),
            );
        }
        Ok(())
    }
}

/// The most the EntryPoint can take from the account for `op`: (verificationGasLimit + callGasLimit +
/// preVerificationGas) × maxFeePerGas, or None where the account refuses the fields as overflowing.
pub fn max_op_cost(op: &PackedUserOperation) -> Option<U256> {
    let limits = U256::from_be_bytes(op.accountGasLimits.0);
    let mask = U256::from(u128::MAX);
    let pvg = op.preVerificationGas;
    if pvg >> 128 != U256::ZERO {
        return None;
    }
    let gas = pvg + (limits >> 128) + (limits & mask);
    if gas >> 128 != U256::ZERO {
        return None;
    }
    Some(gas * (U256::from_be_bytes(op.gasFees.0) & mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{refusal::RefusalKind, user_op::pack_u128s};

    fn word(max_op_cost_gwei: u64, fee_left_gwei: u64) -> U256 {
        (U256::from(max_op_cost_gwei) << 144)
            | (U256::from(fee_left_gwei) << 200)
            | (U256::from(7u64) << 80)
            | (U256::from(99u64) << 40)
    }

    fn op(gas: u128, max_fee: u128) -> PackedUserOperation {
        PackedUserOperation {
            accountGasLimits: pack_u128s(gas, gas),
            preVerificationGas: U256::from(gas),
            gasFees: pack_u128s(1, max_fee),
            ..Default::default()
        }
    }

    #[test]
    fn the_slot_is_the_accounts() {
        // keccak256(abi.encode(uint256(keccak256("keyscope.storage.TradingAccount")) - 1)) & ~0xff
        let base =
            U256::from_be_bytes(keccak256("keyscope.storage.TradingAccount").0) - U256::from(1);
        let slot = U256::from_be_bytes(keccak256(base.to_be_bytes::<32>()).0) & !U256::from(0xff);
        assert_eq!(slot, ACCOUNT_STORAGE_SLOT);
    }

    #[test]
    fn the_word_decodes_and_the_check_mirrors_the_account() {
        let w = SessionWord::decode(word(1_000_000, 2_500_000));
        assert_eq!(w.grant_id, 7);
        assert_eq!(w.valid_until, 99);
        assert_eq!(w.max_op_cost, U256::from(1_000_000u64) * U256::from(GWEI));
        // 300,000 gas at 3 gwei = 900,000 gwei: within both.
        assert_eq!(
            max_op_cost(&op(100_000, 3 * GWEI as u128)),
            Some(U256::from(900_000u64 * GWEI))
        );
        assert!(w.check(&op(100_000, 3 * GWEI as u128)).is_ok());
        // 300,000 gas at 4 gwei = 1,200,000 gwei: over the per-op cap.
        let r = w.check(&op(100_000, 4 * GWEI as u128)).unwrap_err();
        assert_eq!(r.kind, RefusalKind::FeeLimit);
        assert_eq!(r.error.as_deref(), Some("SessionOpCostTooHigh"));
        // Within the cap, over the budget: the budget word says 2.5M gwei, the op rounds up past it.
        let tight = SessionWord::decode(word(0, 899_999));
        let r = tight.check(&op(100_000, 3 * GWEI as u128)).unwrap_err();
        assert_eq!(r.error.as_deref(), Some("SessionFeeBudgetExceeded"));
        // Overflowing fields are refused, never wrapped.
        let mut huge = op(1, 1);
        huge.preVerificationGas = U256::from(1) << 200;
        assert_eq!(max_op_cost(&huge), None);
        assert!(w.check(&huge).is_err());
    }
}
