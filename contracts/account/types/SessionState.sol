// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev The part of a session every op reads: validity, the fee limits and the flags that say which other
/// words the session uses, packed into one storage word. A plain trading key (no rate, uses or value
/// counters, no post-execution limits) reads this word and the order rule, and writes this word once (its
/// fee budget); every cold slot costs 2,100 gas and every write 2,900, so the hot path stays one word.
///
/// Layout, from the least significant bit:
///   [0, 40)    validAfter     uint40  session start (unix seconds)
///   [40, 80)   validUntil     uint40  session end; 0 = no session
///   [80, 112)  grantId        uint32  account-wide grant sequence number (> revokeFloor while alive)
///   [112, 128) maxOpTtl       uint16  longest life of one op, seconds
///   [128, 136) maxCallsPerOp  uint8   calls one op may make; 0 = no cap
///   [136, 144) flags          uint8   COUNTERS | RISK | BREAKER | TRIPPED | PAYMASTERS | HEARTBEAT
///   [144, 200) maxOpCost      uint56  gwei one op may cost at most; 0 = only the budget caps it
///   [200, 256) feeLeft        uint56  gwei of the fee budget not yet charged
///
/// Fees are kept in whole gwei: an op's maximum cost is rounded up when charged and grants must name whole
/// gwei, so the bound "a key's ops cost at most its fee budget" holds to the wei.
type SessionState is uint256;

using SessionStateLibrary for SessionState global;

/// @title SessionStateLibrary
/// @notice Getters and setters for the packed `SessionState` word.
library SessionStateLibrary {
    /// @notice The session has rate, uses or value counters (in `SessionCounters`).
    uint8 internal constant COUNTERS = 1;
    /// @notice The session has post-execution risk limits (in `RiskState`).
    uint8 internal constant RISK = 2;
    /// @notice The session has a drawdown breaker (maximum drawdown or floor).
    uint8 internal constant BREAKER = 4;
    /// @notice The breaker tripped: only protective calls (deposit, cancel, reduce-only orders) validate.
    uint8 internal constant TRIPPED = 8;
    /// @notice The session lists paymasters that may sponsor its ops.
    uint8 internal constant PAYMASTERS = 16;
    /// @notice The key armed a dead-man switch: past its deadline only protective ops validate.
    uint8 internal constant HEARTBEAT = 32;

    uint256 internal constant MASK_8 = 0xff;
    uint256 internal constant MASK_16 = 0xffff;
    uint256 internal constant MASK_32 = 0xffffffff;
    uint256 internal constant MASK_40 = 0xffffffffff;
    uint256 internal constant MASK_56 = 0xffffffffffffff;

    uint8 internal constant VALID_UNTIL_OFFSET = 40;
    uint8 internal constant GRANT_ID_OFFSET = 80;
    uint8 internal constant MAX_OP_TTL_OFFSET = 112;
    uint8 internal constant MAX_CALLS_OFFSET = 128;
    uint8 internal constant FLAGS_OFFSET = 136;
    uint8 internal constant MAX_OP_COST_OFFSET = 144;
    uint8 internal constant FEE_LEFT_OFFSET = 200;

    /// @notice Packs a fresh session.
    function pack(
        uint40 validAfter_,
        uint40 validUntil_,
        uint32 grantId_,
        uint16 maxOpTtl_,
        uint8 maxCallsPerOp_,
        uint8 flags_,
        uint56 maxOpCostGwei_,
        uint56 feeLeftGwei_
    ) internal pure returns (SessionState s) {
        s = SessionState.wrap(
            uint256(validAfter_) | (uint256(validUntil_) << VALID_UNTIL_OFFSET) | (uint256(grantId_) << GRANT_ID_OFFSET)
                | (uint256(maxOpTtl_) << MAX_OP_TTL_OFFSET) | (uint256(maxCallsPerOp_) << MAX_CALLS_OFFSET)
                | (uint256(flags_) << FLAGS_OFFSET) | (uint256(maxOpCostGwei_) << MAX_OP_COST_OFFSET)
                | (uint256(feeLeftGwei_) << FEE_LEFT_OFFSET)
        );
    }

    function validAfter(SessionState s) internal pure returns (uint40) {
        return uint40(SessionState.unwrap(s) & MASK_40);
    }

    function validUntil(SessionState s) internal pure returns (uint40) {
        return uint40((SessionState.unwrap(s) >> VALID_UNTIL_OFFSET) & MASK_40);
    }

    function grantId(SessionState s) internal pure returns (uint32) {
        return uint32((SessionState.unwrap(s) >> GRANT_ID_OFFSET) & MASK_32);
    }

    function maxOpTtl(SessionState s) internal pure returns (uint16) {
        return uint16((SessionState.unwrap(s) >> MAX_OP_TTL_OFFSET) & MASK_16);
    }

    function maxCallsPerOp(SessionState s) internal pure returns (uint8) {
        return uint8((SessionState.unwrap(s) >> MAX_CALLS_OFFSET) & MASK_8);
    }

    function flags(SessionState s) internal pure returns (uint8) {
        return uint8((SessionState.unwrap(s) >> FLAGS_OFFSET) & MASK_8);
    }

    function has(SessionState s, uint8 flag) internal pure returns (bool) {
        return (SessionState.unwrap(s) >> FLAGS_OFFSET) & flag != 0;
    }

    function maxOpCostGwei(SessionState s) internal pure returns (uint56) {
        return uint56((SessionState.unwrap(s) >> MAX_OP_COST_OFFSET) & MASK_56);
    }

    function feeLeftGwei(SessionState s) internal pure returns (uint56) {
        return uint56(SessionState.unwrap(s) >> FEE_LEFT_OFFSET);
    }

    /// @notice The session with `feeLeftGwei_` of its budget left.
    function withFeeLeft(SessionState s, uint56 feeLeftGwei_) internal pure returns (SessionState) {
        uint256 rest = SessionState.unwrap(s) & ((uint256(1) << FEE_LEFT_OFFSET) - 1);
        return SessionState.wrap(rest | (uint256(feeLeftGwei_) << FEE_LEFT_OFFSET));
    }

    /// @notice The session with `flag` set.
    function withFlag(SessionState s, uint8 flag) internal pure returns (SessionState) {
        return SessionState.wrap(SessionState.unwrap(s) | (uint256(flag) << FLAGS_OFFSET));
    }

    /// @notice The session with `flag` cleared.
    function withoutFlag(SessionState s, uint8 flag) internal pure returns (SessionState) {
        return SessionState.wrap(SessionState.unwrap(s) & ~(uint256(flag) << FLAGS_OFFSET));
    }
}
