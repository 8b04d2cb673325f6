//! The owner's EIP-712 `SessionGrant`, signed off-chain to enable a session key inside its first op.
//! The same type strings as `SessionGrantHash.sol`; `tests/account.rs` checks the digest against the
//! account's own `grantDigest`.

use alloy::sol_types::{SolStruct, eip712_domain};
use alloy_primitives::{Address, B256};

use crate::bindings::ITradingAccount;

mod eip712 {
    alloy::sol! {
        #[derive(Default)]
        struct CallPermission {
            address target;
            bytes4 selector;
            uint96 valueLimit;
            uint64 marketMask;
            uint88 maxOrderSize;
            uint96 maxOrderNotional;
            bool reduceOnly;
        }
        #[derive(Default)]
        struct RiskLimits {
            uint16 maxLeverage;
            uint64 maxPositionNotional;
            uint16 minHeadroomBps;
            uint16 maxDrawdownBps;
            uint64 drawdownFloor;
        }
        #[derive(Default)]
        struct SessionScope {
            uint40 validAfter;
            uint40 validUntil;
            uint16 maxOpTtl;
            uint16 rateCount;
            uint24 ratePeriod;
            uint32 maxUses;
            uint8 maxCallsPerOp;
            uint128 maxOpCost;
            uint128 feeBudget;
            uint128 valueBudget;
            RiskLimits risk;
            uint128 paymasterMaxOpCost;
            uint128 paymasterBudget;
            address[] paymasters;
            CallPermission[] permissions;
        }
        #[derive(Default)]
        struct SessionGrant {
            address entryPoint;
            uint32 epoch;
            address key;
            uint32 keyNonce;
            SessionScope scope;
        }
    }
}

/// What a grant binds besides the scope: the account (with the chain, through the EIP-712 domain), the
/// EntryPoint, the account's epoch and the key's grant nonce (read them with `epoch()` and `keyNonce(key)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantContext {
    /// The chain id the grant is valid on.
    pub chain_id: u64,
    /// The account that grants the key.
    pub account: Address,
    /// The EntryPoint the account trusts.
    pub entry_point: Address,
    /// The account's epoch (bumped when the owner revokes all keys).
    pub epoch: u32,
    /// The key's grant nonce on the account.
    pub key_nonce: u32,
}

/// The digest the owner signs to grant `key` the `scope`.
pub fn grant_digest(
    ctx: &GrantContext,
    key: Address,
    scope: &ITradingAccount::SessionScope,
) -> B256 {
    let grant = eip712::SessionGrant {
        entryPoint: ctx.entry_point,
        epoch: ctx.epoch,
        key,
        keyNonce: ctx.key_nonce,
        scope: eip712::SessionScope {
            validAfter: scope.validAfter,
            validUntil: scope.validUntil,
            maxOpTtl: scope.maxOpTtl,
            rateCount: scope.rateCount,
            ratePeriod: scope.ratePeriod,
            maxUses: scope.maxUses,
            maxCallsPerOp: scope.maxCallsPerOp,
            maxOpCost: scope.maxOpCost,
            feeBudget: scope.feeBudget,
            valueBudget: scope.valueBudget,
            risk: eip712::RiskLimits {
                maxLeverage: scope.risk.maxLeverage,
                maxPositionNotional: scope.risk.maxPositionNotional,
                minHeadroomBps: scope.risk.minHeadroomBps,
                maxDrawdownBps: scope.risk.maxDrawdownBps,
                drawdownFloor: scope.risk.drawdownFloor,
            },
            paymasterMaxOpCost: scope.paymasterMaxOpCost,
            paymasterBudget: scope.paymasterBudget,
            paymasters: scope.paymasters.clone(),
            permissions: scope
                .permissions
                .iter()
                .map(|p| eip712::CallPermission {
                    target: p.target,
                    selector: p.selector,
                    valueLimit: p.valueLimit,
                    marketMask: p.marketMask,
                    maxOrderSize: p.maxOrderSize,
                    maxOrderNotional: p.maxOrderNotional,
                    reduceOnly: p.reduceOnly,
                })
                .collect(),
        },
    };
    let domain = eip712_domain! {
        name: "Keyscope TradingAccount",
        version: "1",
        chain_id: ctx.chain_id,
        verifying_contract: ctx.account,
    };
    grant.eip712_signing_hash(&domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn type_strings_match_the_contract() {
        // SessionGrantHash.SESSION_GRANT_TYPEHASH: the grant, then referenced types in alphabetical order.
        let expected = keccak256(concat!(
            "SessionGrant(address entryPoint,uint32 epoch,address key,uint32 keyNonce,SessionScope scope)",
            "CallPermission(address target,bytes4 selector,uint96 valueLimit,uint64 marketMask,uint88 maxOrderSize,uint96 maxOrderNotional,bool reduceOnly)",
            "RiskLimits(uint16 maxLeverage,uint64 maxPositionNotional,uint16 minHeadroomBps,uint16 maxDrawdownBps,uint64 drawdownFloor)",
            "SessionScope(uint40 validAfter,uint40 validUntil,uint16 maxOpTtl,uint16 rateCount,uint24 ratePeriod,uint32 maxUses,uint8 maxCallsPerOp,uint128 maxOpCost,uint128 feeBudget,uint128 valueBudget,RiskLimits risk,uint128 paymasterMaxOpCost,uint128 paymasterBudget,address[] paymasters,CallPermission[] permissions)"
        ));
        assert_eq!(
            eip712::SessionGrant::eip712_type_hash(&Default::default()),
            expected
        );
    }
}
