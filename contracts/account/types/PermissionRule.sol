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
/// A paymaster the session may be sponsored by is stored under (key, grantId, paymaster, 0x00000000) with
/// only PAYMASTER set: never PERMITTED, so it can never be mistaken for a call permission (and no call
/// permission has a zero selector).
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

    /// @notice The allowlist entry of a paymaster.
    function packPaymaster() internal pure returns (PermissionRule) {
        return PermissionRule.wrap(PAYMASTER);
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
