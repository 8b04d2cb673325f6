// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../interfaces/ITradingAccount.sol";

/// @title SessionGrantHash
/// @notice EIP-712 struct hashes of session grants, so an owner's wallet can show what it signs
/// when it enables a session key inside the key's first op.
/// @dev The grant binds the EntryPoint, the account's epoch (bumped by revokeAllSessions) and the
/// key's grant nonce (bumped by every grant and revoke of that key); chain id and account come in
/// through the account's EIP-712 domain. A grant signature therefore works once, on one account,
/// one chain and one EntryPoint, and dies with revokeAllSessions.
library SessionGrantHash {
    bytes internal constant CALL_PERMISSION_TYPE =
        "CallPermission(address target,bytes4 selector,uint96 valueLimit,uint64 marketMask,uint88 maxOrderSize,uint96 maxOrderNotional,bool reduceOnly)";
    bytes internal constant RISK_LIMITS_TYPE =
        "RiskLimits(uint16 maxLeverage,uint64 maxPositionNotional,uint16 minHeadroomBps,uint16 maxDrawdownBps,uint64 drawdownFloor)";
    bytes internal constant SESSION_SCOPE_TYPE =
        "SessionScope(uint40 validAfter,uint40 validUntil,uint16 maxOpTtl,uint16 rateCount,uint24 ratePeriod,uint32 maxUses,uint8 maxCallsPerOp,uint128 maxOpCost,uint128 feeBudget,uint128 valueBudget,RiskLimits risk,uint128 paymasterMaxOpCost,uint128 paymasterBudget,address[] paymasters,CallPermission[] permissions)";
    bytes internal constant SESSION_GRANT_TYPE =
        "SessionGrant(address entryPoint,uint32 epoch,address key,uint32 keyNonce,SessionScope scope)";

    bytes32 internal constant CALL_PERMISSION_TYPEHASH = keccak256(CALL_PERMISSION_TYPE);
    bytes32 internal constant RISK_LIMITS_TYPEHASH = keccak256(RISK_LIMITS_TYPE);
    /// @dev Referenced types follow the primary type in alphabetical order (EIP-712).
    bytes32 internal constant SESSION_SCOPE_TYPEHASH =
        keccak256(abi.encodePacked(SESSION_SCOPE_TYPE, CALL_PERMISSION_TYPE, RISK_LIMITS_TYPE));
    bytes32 internal constant SESSION_GRANT_TYPEHASH =
        keccak256(abi.encodePacked(SESSION_GRANT_TYPE, CALL_PERMISSION_TYPE, RISK_LIMITS_TYPE, SESSION_SCOPE_TYPE));

    /// @notice hashStruct(SessionGrant) for `key` with `scope`.
    function hash(
        address entryPoint,
        uint32 epoch,
        address key,
        uint32 keyNonce,
        ITradingAccount.SessionScope memory scope
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(SESSION_GRANT_TYPEHASH, entryPoint, epoch, key, keyNonce, hashScope(scope)));
    }

    /// @notice hashStruct(SessionScope).
    function hashScope(ITradingAccount.SessionScope memory scope) internal pure returns (bytes32) {
        uint256 n = scope.permissions.length;
        bytes32[] memory hashes = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            hashes[i] = hashPermission(scope.permissions[i]);
        }
        // Two encodings joined: one abi.encode of all fifteen members would not fit the stack.
        return keccak256(
            bytes.concat(
                abi.encode(
                    SESSION_SCOPE_TYPEHASH,
                    scope.validAfter,
                    scope.validUntil,
                    scope.maxOpTtl,
                    scope.rateCount,
                    scope.ratePeriod,
                    scope.maxUses,
                    scope.maxCallsPerOp
                ),
                abi.encode(
                    scope.maxOpCost,
                    scope.feeBudget,
                    scope.valueBudget,
                    hashRisk(scope.risk),
                    scope.paymasterMaxOpCost,
                    scope.paymasterBudget,
                    keccak256(abi.encodePacked(scope.paymasters)),
                    keccak256(abi.encodePacked(hashes))
                )
            )
        );
    }

    /// @notice hashStruct(RiskLimits).
    function hashRisk(ITradingAccount.RiskLimits memory r) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RISK_LIMITS_TYPEHASH,
                r.maxLeverage,
                r.maxPositionNotional,
                r.minHeadroomBps,
                r.maxDrawdownBps,
                r.drawdownFloor
            )
        );
    }

    /// @notice hashStruct(CallPermission).
    function hashPermission(ITradingAccount.CallPermission memory p) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                CALL_PERMISSION_TYPEHASH,
                p.target,
                p.selector,
                p.valueLimit,
                p.marketMask,
                p.maxOrderSize,
                p.maxOrderNotional,
                p.reduceOnly
            )
        );
    }
}
