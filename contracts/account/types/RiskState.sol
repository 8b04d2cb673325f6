// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @dev A session's post-execution risk limits and its drawdown breaker's high-water mark, in one word read
/// only in execution and only by sessions that have them (`SessionStateLibrary.RISK`). Money is in the
/// venue's quote units (the collateral's decimals), as the venue reports it. The breaker's floor, drawdown
/// and mark are in equity: the account's wallet balance of the venue's collateral plus its venue account value.
///
/// Layout, from the least significant bit:
///   [0, 16)    maxLeverage          uint16  gross notional / account value, hundredths (300 = 3x); 0 = none
///   [16, 32)   minHeadroomBps       uint16  account value >= MMR x (1 + bps / 10,000); 0 = none
///   [32, 48)   maxDrawdownBps       uint16  breaker: equity below mark x (1 - bps / 10,000); 0 = none
///   [48, 112)  maxPositionNotional  uint64  largest notional of one market's position; 0 = none
///   [112, 176) drawdownFloor        uint64  breaker: equity below this; 0 = none
///   [176, 240) highWaterMark        uint64  highest equity seen after one of the key's ops
type RiskState is uint256;

using RiskStateLibrary for RiskState global;

/// @title RiskStateLibrary
/// @notice Getters and setters for the packed `RiskState` word.
library RiskStateLibrary {
    uint256 internal constant MASK_16 = 0xffff;
    uint256 internal constant MASK_64 = 0xffffffffffffffff;
    uint8 internal constant HEADROOM_OFFSET = 16;
    uint8 internal constant DRAWDOWN_OFFSET = 32;
    uint8 internal constant POSITION_OFFSET = 48;
    uint8 internal constant FLOOR_OFFSET = 112;
    uint8 internal constant MARK_OFFSET = 176;

    /// @notice Packs limits with no high-water mark yet.
    function pack(
        uint16 maxLeverage_,
        uint16 minHeadroomBps_,
        uint16 maxDrawdownBps_,
        uint64 maxPositionNotional_,
        uint64 drawdownFloor_
    ) internal pure returns (RiskState) {
        return RiskState.wrap(
            uint256(maxLeverage_) | (uint256(minHeadroomBps_) << HEADROOM_OFFSET)
                | (uint256(maxDrawdownBps_) << DRAWDOWN_OFFSET) | (uint256(maxPositionNotional_) << POSITION_OFFSET)
                | (uint256(drawdownFloor_) << FLOOR_OFFSET)
        );
    }

    function maxLeverage(RiskState r) internal pure returns (uint16) {
        return uint16(RiskState.unwrap(r) & MASK_16);
    }

    function minHeadroomBps(RiskState r) internal pure returns (uint16) {
        return uint16((RiskState.unwrap(r) >> HEADROOM_OFFSET) & MASK_16);
    }

    function maxDrawdownBps(RiskState r) internal pure returns (uint16) {
        return uint16((RiskState.unwrap(r) >> DRAWDOWN_OFFSET) & MASK_16);
    }

    function maxPositionNotional(RiskState r) internal pure returns (uint64) {
        return uint64((RiskState.unwrap(r) >> POSITION_OFFSET) & MASK_64);
    }

    function drawdownFloor(RiskState r) internal pure returns (uint64) {
        return uint64((RiskState.unwrap(r) >> FLOOR_OFFSET) & MASK_64);
    }

    function highWaterMark(RiskState r) internal pure returns (uint64) {
        return uint64((RiskState.unwrap(r) >> MARK_OFFSET) & MASK_64);
    }

    /// @notice The limits with the high-water mark set to `mark`.
    function withMark(RiskState r, uint64 mark) internal pure returns (RiskState) {
        uint256 rest = RiskState.unwrap(r) & ~(MASK_64 << MARK_OFFSET);
        return RiskState.wrap(rest | (uint256(mark) << MARK_OFFSET));
    }

    /// @notice The equity below which the breaker trips: the floor, or the mark less the drawdown,
    /// whichever is higher (0 while neither applies).
    function breakerThreshold(RiskState r) internal pure returns (uint256 threshold) {
        threshold = r.drawdownFloor();
        uint256 dd = r.maxDrawdownBps();
        if (dd != 0) {
            uint256 fromMark = uint256(r.highWaterMark()) * (10_000 - dd) / 10_000;
            if (fromMark > threshold) threshold = fromMark;
        }
    }
}
