// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev A session key's validity, limits and counters packed into one storage word, so a session op
/// reads and writes a single slot for all of them (the gas budget of a session op is ~10k over an
/// owner op, and every cold slot costs 2,100).
///
/// Layout, from the least significant bit:
///   [0, 40)    validAfter    uint40  session start (unix seconds)
///   [40, 80)   validUntil    uint40  session end; 0 = no session
///   [80, 112)  grantId       uint32  account-wide grant sequence number (> revokeFloor while alive)
///   [112, 128) maxOpTtl      uint16  longest life of one op, seconds
///   [128, 144) rateCount     uint16  ops per window; 0 = no rate limit
///   [144, 168) ratePeriod    uint24  window length, seconds
///   [168, 208) windowStart   uint40  start of the current rate window
///   [208, 224) windowUsed    uint16  ops counted in the current window
///   [224, 256) usesLeft      uint32  ops left; UNLIMITED_USES = no cap
type SessionState is uint256;

using SessionStateLibrary for SessionState global;

/// @dev Sentinel for `usesLeft` of a session without a total-uses cap.
uint32 constant UNLIMITED_USES = type(uint32).max;

/// @title SessionStateLibrary
/// @notice Getters and setters for the packed `SessionState` word.
library SessionStateLibrary {
    uint256 internal constant MASK_16 = 0xffff;
    uint256 internal constant MASK_24 = 0xffffff;
    uint256 internal constant MASK_32 = 0xffffffff;
    uint256 internal constant MASK_40 = 0xffffffffff;

    uint8 internal constant VALID_UNTIL_OFFSET = 40;
    uint8 internal constant GRANT_ID_OFFSET = 80;
    uint8 internal constant MAX_OP_TTL_OFFSET = 112;
    uint8 internal constant RATE_COUNT_OFFSET = 128;
    uint8 internal constant RATE_PERIOD_OFFSET = 144;
    uint8 internal constant WINDOW_START_OFFSET = 168;
    uint8 internal constant WINDOW_USED_OFFSET = 208;
    uint8 internal constant USES_LEFT_OFFSET = 224;

    /// @notice Packs a fresh session: counters start empty.
    function pack(
        uint40 validAfter_,
        uint40 validUntil_,
        uint32 grantId_,
        uint16 maxOpTtl_,
        uint16 rateCount_,
        uint24 ratePeriod_,
        uint32 usesLeft_
    ) internal pure returns (SessionState s) {
        s = SessionState.wrap(
            uint256(validAfter_) | (uint256(validUntil_) << VALID_UNTIL_OFFSET)
                | (uint256(grantId_) << GRANT_ID_OFFSET) | (uint256(maxOpTtl_) << MAX_OP_TTL_OFFSET)
                | (uint256(rateCount_) << RATE_COUNT_OFFSET) | (uint256(ratePeriod_) << RATE_PERIOD_OFFSET)
                | (uint256(usesLeft_) << USES_LEFT_OFFSET)
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

    function rateCount(SessionState s) internal pure returns (uint16) {
        return uint16((SessionState.unwrap(s) >> RATE_COUNT_OFFSET) & MASK_16);
    }

    function ratePeriod(SessionState s) internal pure returns (uint24) {
        return uint24((SessionState.unwrap(s) >> RATE_PERIOD_OFFSET) & MASK_24);
    }

    function windowStart(SessionState s) internal pure returns (uint40) {
        return uint40((SessionState.unwrap(s) >> WINDOW_START_OFFSET) & MASK_40);
    }

    function windowUsed(SessionState s) internal pure returns (uint16) {
        return uint16((SessionState.unwrap(s) >> WINDOW_USED_OFFSET) & MASK_16);
    }

    function usesLeft(SessionState s) internal pure returns (uint32) {
        return uint32(SessionState.unwrap(s) >> USES_LEFT_OFFSET);
    }

    /// @notice Replaces the counters (rate window and uses left), keeping the configuration.
    function withCounters(SessionState s, uint40 windowStart_, uint16 windowUsed_, uint32 usesLeft_)
        internal
        pure
        returns (SessionState)
    {
        uint256 config = SessionState.unwrap(s) & ((uint256(1) << WINDOW_START_OFFSET) - 1);
        return SessionState.wrap(
            config | (uint256(windowStart_) << WINDOW_START_OFFSET) | (uint256(windowUsed_) << WINDOW_USED_OFFSET)
                | (uint256(usesLeft_) << USES_LEFT_OFFSET)
        );
    }
}
