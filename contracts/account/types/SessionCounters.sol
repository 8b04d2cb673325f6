// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev A session's call counters, in a word of their own that only sessions with a rate limit, a uses cap
/// or a value budget read and write (`SessionStateLibrary.COUNTERS`). Every counter counts *calls* (each
/// order of a batch), never ops, so a batch cannot multiply a limit.
///
/// Layout, from the least significant bit:
///   [0, 16)    rateCount    uint16   calls per window; 0 = no rate limit
///   [16, 40)   ratePeriod   uint24   window length, seconds
///   [40, 80)   windowStart  uint40   start of the current rate window
///   [80, 96)   windowUsed   uint16   calls counted in the current window
///   [96, 128)  usesLeft     uint32   calls left; UNLIMITED_USES = no cap
///   [128, 256) valueLeft    uint128  native value (wei) the calls may still send
type SessionCounters is uint256;

using SessionCountersLibrary for SessionCounters global;

/// @dev Sentinel for `usesLeft` of a session without a total-uses cap.
uint32 constant UNLIMITED_USES = type(uint32).max;

/// @title SessionCountersLibrary
/// @notice Getters and setters for the packed `SessionCounters` word.
library SessionCountersLibrary {
    uint256 internal constant MASK_16 = 0xffff;
    uint256 internal constant MASK_24 = 0xffffff;
    uint256 internal constant MASK_32 = 0xffffffff;
    uint256 internal constant MASK_40 = 0xffffffffff;

    uint8 internal constant RATE_PERIOD_OFFSET = 16;
    uint8 internal constant WINDOW_START_OFFSET = 40;
    uint8 internal constant WINDOW_USED_OFFSET = 80;
    uint8 internal constant USES_LEFT_OFFSET = 96;
    uint8 internal constant VALUE_LEFT_OFFSET = 128;

    /// @notice Packs fresh counters: an empty window and the whole uses cap and value budget.
    function pack(uint16 rateCount_, uint24 ratePeriod_, uint32 usesLeft_, uint128 valueLeft_)
        internal
        pure
        returns (SessionCounters)
    {
        return SessionCounters.wrap(
            uint256(rateCount_) | (uint256(ratePeriod_) << RATE_PERIOD_OFFSET)
                | (uint256(usesLeft_) << USES_LEFT_OFFSET) | (uint256(valueLeft_) << VALUE_LEFT_OFFSET)
        );
    }

    function rateCount(SessionCounters c) internal pure returns (uint16) {
        return uint16(SessionCounters.unwrap(c) & MASK_16);
    }

    function ratePeriod(SessionCounters c) internal pure returns (uint24) {
        return uint24((SessionCounters.unwrap(c) >> RATE_PERIOD_OFFSET) & MASK_24);
    }

    function windowStart(SessionCounters c) internal pure returns (uint40) {
        return uint40((SessionCounters.unwrap(c) >> WINDOW_START_OFFSET) & MASK_40);
    }

    function windowUsed(SessionCounters c) internal pure returns (uint16) {
        return uint16((SessionCounters.unwrap(c) >> WINDOW_USED_OFFSET) & MASK_16);
    }

    function usesLeft(SessionCounters c) internal pure returns (uint32) {
        return uint32((SessionCounters.unwrap(c) >> USES_LEFT_OFFSET) & MASK_32);
    }

    function valueLeft(SessionCounters c) internal pure returns (uint128) {
        return uint128(SessionCounters.unwrap(c) >> VALUE_LEFT_OFFSET);
    }

    /// @notice The counters with the rate window moved to `windowStart_` holding `windowUsed_` calls.
    function withWindow(SessionCounters c, uint40 windowStart_, uint16 windowUsed_)
        internal
        pure
        returns (SessionCounters)
    {
        uint256 cleared = SessionCounters.unwrap(c) & ~(((uint256(1) << 56) - 1) << WINDOW_START_OFFSET);
        return SessionCounters.wrap(
            cleared | (uint256(windowStart_) << WINDOW_START_OFFSET) | (uint256(windowUsed_) << WINDOW_USED_OFFSET)
        );
    }

    /// @notice The counters with `usesLeft_` calls and `valueLeft_` wei left.
    function withLeft(SessionCounters c, uint32 usesLeft_, uint128 valueLeft_) internal pure returns (SessionCounters) {
        uint256 kept = SessionCounters.unwrap(c) & ((uint256(1) << USES_LEFT_OFFSET) - 1);
        return SessionCounters.wrap(
            kept | (uint256(usesLeft_) << USES_LEFT_OFFSET) | (uint256(valueLeft_) << VALUE_LEFT_OFFSET)
        );
    }
}
