// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev What a session key may do with one (target, selector), packed into one storage word that is
/// found by hashing (key, grantId, target, selector): one read both proves the permission and yields
/// its limits. A zero word means "not permitted".
///
/// Layout, from the least significant bit:
///   [0, 8)     flags            PERMITTED | ORDER | REDUCE_ONLY | PAYMASTER
///   order rules (ORDER set, the selector is IPerpVenue.placeOrder):
///   [8, 72)    marketMask       uint64  bit i allows market id i
///   [72, 160)  maxOrderSize     uint88
///   [160, 256) maxOrderNotional uint96
///   plain calls (ORDER clear):
///   [8, 104)   valueLimit       uint96
///   paymaster entries (PAYMASTER set):
///   [8, 64)    sponsorMaxOpCost uint56  gwei the paymaster may be charged for one op; 0 = only the budget
///   [64, 120)  sponsorLeft      uint56  gwei of the key's budget at this paymaster not yet charged
/// A paymaster the session may be sponsored by is stored under (key, grantId, paymaster, 0x00000000) with
/// PAYMASTER set and never PERMITTED, so it can never be mistaken for a call permission (and no call
/// permission has a zero selector). Validation debits `sponsorLeft` by each sponsored op's maximum cost, so
/// the entry costs one read and one write of a word the account owns.
type PermissionRule is uint256;

using PermissionRuleLibrary for PermissionRule global;

/// @title PermissionRuleLibrary
/// @notice Packing and reading of `PermissionRule` words.
library PermissionRuleLibrary {
    uint256 internal constant PERMITTED = 1;
    uint256 internal constant ORDER = 2;
    uint256 internal constant REDUCE_ONLY = 4;
    uint256 internal constant PAYMASTER = 8;

    /// @notice A rule for a plain call capped at `valueLimit_` wei.
    function packCall(uint96 valueLimit_) internal pure returns (PermissionRule) {
        return PermissionRule.wrap(PERMITTED | (uint256(valueLimit_) << 8));
    }

    /// @notice A rule for `placeOrder` with market, size, notional and reduce-only limits.
    function packOrder(uint64 marketMask_, uint88 maxOrderSize_, uint96 maxOrderNotional_, bool reduceOnly_)
        internal
        pure
        returns (PermissionRule)
    {
        return PermissionRule.wrap(
            PERMITTED | ORDER | (reduceOnly_ ? REDUCE_ONLY : 0) | (uint256(marketMask_) << 8)
                | (uint256(maxOrderSize_) << 72) | (uint256(maxOrderNotional_) << 160)
        );
    }

    uint256 internal constant MASK_56 = 0xffffffffffffff;
    uint8 internal constant SPONSOR_LEFT_OFFSET = 64;

    /// @notice The allowlist entry of a paymaster that may be charged at most `maxOpCostGwei` for one op (0:
    /// only the budget caps it) and `budgetGwei` for all of the key's ops.
    function packPaymaster(uint56 maxOpCostGwei, uint56 budgetGwei) internal pure returns (PermissionRule) {
        return
            PermissionRule.wrap(
                PAYMASTER | (uint256(maxOpCostGwei) << 8) | (uint256(budgetGwei) << SPONSOR_LEFT_OFFSET)
            );
    }

    /// @notice Gwei the paymaster may be charged for one of the key's ops; 0 for no cap but the budget.
    function sponsorMaxOpCostGwei(PermissionRule r) internal pure returns (uint56) {
        return uint56(PermissionRule.unwrap(r) >> 8);
    }

    /// @notice Gwei of the key's budget at this paymaster not yet charged.
    function sponsorLeftGwei(PermissionRule r) internal pure returns (uint56) {
        return uint56(PermissionRule.unwrap(r) >> SPONSOR_LEFT_OFFSET);
    }

    /// @notice `r` with `left` gwei of the budget left.
    function withSponsorLeft(PermissionRule r, uint56 left) internal pure returns (PermissionRule) {
        return PermissionRule.wrap(
            (PermissionRule.unwrap(r) & ~(MASK_56 << SPONSOR_LEFT_OFFSET)) | (uint256(left) << SPONSOR_LEFT_OFFSET)
        );
    }

    function isPaymaster(PermissionRule r) internal pure returns (bool) {
        return PermissionRule.unwrap(r) & PAYMASTER != 0;
    }

    function isPermitted(PermissionRule r) internal pure returns (bool) {
        return PermissionRule.unwrap(r) & PERMITTED != 0;
    }

    function isOrder(PermissionRule r) internal pure returns (bool) {
        return PermissionRule.unwrap(r) & ORDER != 0;
    }

    function reduceOnly(PermissionRule r) internal pure returns (bool) {
        return PermissionRule.unwrap(r) & REDUCE_ONLY != 0;
    }

    function valueLimit(PermissionRule r) internal pure returns (uint96) {
        return uint96(PermissionRule.unwrap(r) >> 8);
    }

    function marketMask(PermissionRule r) internal pure returns (uint64) {
        return uint64(PermissionRule.unwrap(r) >> 8);
    }

    function maxOrderSize(PermissionRule r) internal pure returns (uint88) {
        return uint88(PermissionRule.unwrap(r) >> 72);
    }

    function maxOrderNotional(PermissionRule r) internal pure returns (uint96) {
        return uint96(PermissionRule.unwrap(r) >> 160);
    }
}
