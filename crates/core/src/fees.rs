//! A session key's fee limits as the account keeps them, and the account's fee check, in Rust.
//!
//! TradingAccount charges every self-paid session op its maximum cost — (verificationGasLimit +
//! callGasLimit + preVerificationGas) × maxFeePerGas, rounded up to whole gwei — against the key's per-op
//! cap and what is left of its fee budget, all kept in the session's storage word (`SessionState.sol`). A
//! relayer reads that word and runs the same check at its door, so an op over the limits is refused before
//! it is simulated; the refusal it gives is the account's own error, read by [`crate::refusal`].
//!
//! A sponsored op is charged the same way to the entry of the paymaster it names — its prefund, the
//! paymaster's own gas limits included, against the per-op cap and budget the owner gave that paymaster for
//! the key ([`PaymasterEntry`]). [`charge`] is that arithmetic, once, for both.

use alloy::sol_types::{SolError, SolValue};
use alloy_primitives::{Address, U256, keccak256};

use crate::{
    bindings::{ISessionManager, TradingAccount},
    refusal::Refusal,
    user_op::PackedUserOperation,
};

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
    /// When the session expires (unix seconds).
    pub valid_until: u64,
    /// The grant the session was made under.
    pub grant_id: u32,
    /// The session's flag bits, as the account stores them.
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
    /// cost is over the per-op cap or the budget left. Sponsored ops (a paymaster pays) are charged to the
    /// paymaster's entry instead ([`PaymasterEntry::check`]), not checked here.
    pub fn check(&self, op: &PackedUserOperation) -> Result<(), Refusal> {
        if !op.paymasterAndData.is_empty() {
            return Ok(());
        }
        charge(max_op_cost(op), self.max_op_cost, self.fee_left)
            .map(|_| ())
            .map_err(|breach| {
                Refusal::decode(&match breach {
                    FeeBreach::OpCost { cost, cap } => TradingAccount::SessionOpCostTooHigh {
                        cost,
                        maxOpCost: cap,
                    }
                    .abi_encode(),
                    FeeBreach::Budget { cost, left } => TradingAccount::SessionFeeBudgetExceeded {
                        cost,
                        feeLeft: left,
                    }
                    .abi_encode(),
                })
            })
    }
}

/// A fee limit an op's maximum cost breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeBreach {
    /// Over the per-op cap; `cost` is `U256::MAX` when the op's gas fields overflow (refused, never wrapped).
    OpCost {
        /// What the op may cost at most (wei).
        cost: U256,
        /// The session's per-op cap (wei).
        cap: U256,
    },
    /// Over what is left of the budget once rounded up to whole gwei.
    Budget {
        /// What the op may cost at most (wei).
        cost: U256,
        /// What is left of the session's budget (wei).
        left: U256,
    },
}

/// The account's charge of one op (`TradingAccount._chargeFee`, for the session's own budget and for a
/// paymaster's entry alike): `cost` (None where the gas fields overflow) against the per-op `cap` (zero for
/// none) and the budget `left`. Ok with what is charged: the cost rounded up to whole gwei.
pub fn charge(cost: Option<U256>, cap: U256, left: U256) -> Result<U256, FeeBreach> {
    let Some(cost) = cost else {
        return Err(FeeBreach::OpCost {
            cost: U256::MAX,
            cap,
        });
    };
    if !cap.is_zero() && cost > cap {
        return Err(FeeBreach::OpCost { cost, cap });
    }
    let gwei = U256::from(GWEI);
    let charged = cost.div_ceil(gwei) * gwei;
    if charged > left {
        return Err(FeeBreach::Budget { cost, left });
    }
    Ok(charged)
}

/// The storage slot of a paymaster's entry for `key` under grant `grant_id`:
/// `rules[keccak256(key ‖ grantId ‖ paymaster ‖ 0x00000000)]` (the layout's fourth slot).
pub fn paymaster_entry_slot(key: Address, grant_id: u32, paymaster: Address) -> U256 {
    let id = keccak256((key, grant_id, paymaster, [0u8; 4]).abi_encode_packed());
    U256::from_be_bytes(keccak256((id, ACCOUNT_STORAGE_SLOT + U256::from(3)).abi_encode()).0)
}

/// What a listed paymaster may still be charged for a key's ops: its entry in the account's storage
/// (`PermissionRule.sol`'s paymaster layout), or `paymasterAllowance(key, paymaster)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymasterEntry {
    /// The key's live grant lists the paymaster.
    pub listed: bool,
    /// Most one sponsored op may cost it (wei); zero for no cap but the budget.
    pub max_op_cost: U256,
    /// What is left of the key's budget at it (wei).
    pub left: U256,
}

impl PaymasterEntry {
    /// Decodes the entry's word (flags in bits 0..8, PAYMASTER = 8; per-op cap and budget left in gwei at
    /// bits 8..64 and 64..120).
    pub fn decode(word: U256) -> Self {
        let gwei =
            |offset: usize| ((word >> offset) & U256::from((1u64 << 56) - 1)) * U256::from(GWEI);
        Self {
            listed: word.bit(3),
            max_op_cost: gwei(8),
            left: gwei(64),
        }
    }

    /// The account's check of a sponsored op against this entry of the paymaster the op names: Err with
    /// the account's own refusal if the paymaster is not listed, or the op's maximum cost (with the
    /// paymaster's gas limits) is over its per-op cap or the budget left there. Self-paid ops pass.
    pub fn check(&self, op: &PackedUserOperation) -> Result<(), Refusal> {
        let Some(paymaster) = sponsor(op) else {
            return Ok(());
        };
        let data = if !self.listed || op.paymasterAndData.len() < 52 {
            TradingAccount::SessionPaymasterNotAllowed { paymaster }.abi_encode()
        } else {
            match charge(max_sponsored_cost(op), self.max_op_cost, self.left) {
                Ok(_) => return Ok(()),
                Err(FeeBreach::OpCost { cost, cap }) => {
                    TradingAccount::SessionPaymasterOpCostTooHigh {
                        paymaster,
                        cost,
                        maxOpCost: cap,
                    }
                    .abi_encode()
                }
                Err(FeeBreach::Budget { cost, left }) => {
                    TradingAccount::SessionPaymasterBudgetExceeded {
                        paymaster,
                        cost,
                        left,
                    }
                    .abi_encode()
                }
            }
        };
        Err(Refusal::decode(&data))
    }
}

impl From<ISessionManager::paymasterAllowanceReturn> for PaymasterEntry {
    fn from(r: ISessionManager::paymasterAllowanceReturn) -> Self {
        Self {
            listed: r.listed,
            max_op_cost: r.maxOpCost,
            left: r.left,
        }
    }
}

/// The paymaster a sponsored op names (the zero address when its paymasterAndData is shorter than an
/// address), or None for a self-paid op.
pub fn sponsor(op: &PackedUserOperation) -> Option<Address> {
    let pnd = &op.paymasterAndData;
    if pnd.is_empty() {
        return None;
    }
    Some(if pnd.len() < 20 {
        Address::ZERO
    } else {
        Address::from_slice(&pnd[..20])
    })
}

/// (preVerificationGas + `gas`) × maxFeePerGas, or None where the account refuses the gas as overflowing
/// 128 bits (`TradingAccount._maxCost`).
fn prefund(op: &PackedUserOperation, gas: U256) -> Option<U256> {
    let pvg = op.preVerificationGas;
    if pvg >> 128 != U256::ZERO {
        return None;
    }
    let gas = gas + pvg;
    if gas >> 128 != U256::ZERO {
        return None;
    }
    Some(gas * (U256::from_be_bytes(op.gasFees.0) & U256::from(u128::MAX)))
}

/// The op's own gas limits: verificationGasLimit + callGasLimit.
fn account_gas(op: &PackedUserOperation) -> U256 {
    let limits = U256::from_be_bytes(op.accountGasLimits.0);
    (limits >> 128) + (limits & U256::from(u128::MAX))
}

/// The most the EntryPoint can take from the account for `op`: (verificationGasLimit + callGasLimit +
/// preVerificationGas) × maxFeePerGas, or None where the account refuses the fields as overflowing.
pub fn max_op_cost(op: &PackedUserOperation) -> Option<U256> {
    prefund(op, account_gas(op))
}

/// The most the EntryPoint can take from the paymaster for a sponsored `op` — its prefund: (every gas limit,
/// the paymaster's verification and postOp limits included, + preVerificationGas) × maxFeePerGas — or None
/// where the account refuses the fields as overflowing or paymasterAndData has no gas limits.
pub fn max_sponsored_cost(op: &PackedUserOperation) -> Option<U256> {
    let pnd = &op.paymasterAndData;
    if pnd.len() < 52 {
        return None;
    }
    let pm_gas = U256::from_be_slice(&pnd[20..36]) + U256::from_be_slice(&pnd[36..52]);
    prefund(op, account_gas(op) + pm_gas)
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

    fn sponsored(
        paymaster: Address,
        gas: u128,
        pm_gas: u128,
        max_fee: u128,
    ) -> PackedUserOperation {
        let mut o = op(gas, max_fee);
        let mut pnd = paymaster.to_vec();
        pnd.extend_from_slice(&pm_gas.to_be_bytes());
        pnd.extend_from_slice(&0u128.to_be_bytes());
        o.paymasterAndData = pnd.into();
        o
    }

    #[test]
    fn a_paymaster_entry_decodes_and_charges_the_prefund() {
        let pm = Address::repeat_byte(0x9a);
        // PAYMASTER flag, a 1,000,000 gwei per-op cap and 2,000,000 gwei left.
        let entry_word =
            U256::from(8u64) | (U256::from(1_000_000u64) << 8) | (U256::from(2_000_000u64) << 64);
        let entry = PaymasterEntry::decode(entry_word);
        assert!(entry.listed);
        assert_eq!(entry.max_op_cost, U256::from(1_000_000u64 * GWEI));
        assert_eq!(entry.left, U256::from(2_000_000u64 * GWEI));
        // 300,000 gas of the op's own + 33,333 of the paymaster's, at 3 gwei: 999,999 gwei, inside the cap.
        let inside = sponsored(pm, 100_000, 33_333, 3 * GWEI as u128);
        assert_eq!(
            max_sponsored_cost(&inside),
            Some(U256::from(999_999u64 * GWEI))
        );
        assert_eq!(max_op_cost(&inside), Some(U256::from(900_000u64 * GWEI)));
        entry.check(&inside).unwrap();
        // One more gas of the paymaster's: over the cap.
        let r = entry
            .check(&sponsored(pm, 100_000, 33_334, 3 * GWEI as u128))
            .unwrap_err();
        assert_eq!(r.error.as_deref(), Some("SessionPaymasterOpCostTooHigh"));
        // Over what is left.
        let low = PaymasterEntry {
            left: U256::from(999_998u64 * GWEI),
            ..entry
        };
        let r = low.check(&inside).unwrap_err();
        assert_eq!(r.error.as_deref(), Some("SessionPaymasterBudgetExceeded"));
        // Not listed, or without its gas limits: not allowed.
        let r = PaymasterEntry::default().check(&inside).unwrap_err();
        assert_eq!(r.error.as_deref(), Some("SessionPaymasterNotAllowed"));
        let mut short = inside.clone();
        short.paymasterAndData = pm.to_vec().into();
        assert_eq!(max_sponsored_cost(&short), None);
        assert!(entry.check(&short).is_err());
        // Self-paid ops are the session word's business.
        entry.check(&op(100_000, 1)).unwrap();
        // The session word leaves sponsored ops to the entry.
        SessionWord::decode(word(0, 0)).check(&inside).unwrap();
    }

    #[test]
    fn charge_rounds_up_to_whole_gwei_and_refuses_overflow() {
        let gwei = U256::from(GWEI);
        assert_eq!(charge(Some(U256::from(1)), U256::ZERO, gwei), Ok(gwei));
        assert_eq!(
            charge(Some(gwei + U256::from(1)), U256::ZERO, gwei),
            Err(FeeBreach::Budget {
                cost: gwei + U256::from(1),
                left: gwei
            })
        );
        assert_eq!(
            charge(None, U256::ZERO, U256::MAX),
            Err(FeeBreach::OpCost {
                cost: U256::MAX,
                cap: U256::ZERO
            })
        );
    }
}
