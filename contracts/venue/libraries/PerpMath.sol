// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

/// @title PerpMath
/// @notice The venue's formulas, in integers with explicit decimals.
/// @dev Units: size 18 decimals (base), price 18 decimals (USD per base unit), fractions 18 decimals
/// (WAD: 5e16 = 5 %), money in quote units = the collateral's 6 decimals. size x price carries 36
/// decimals, so dividing by 1e30 gives quote units. Requirements and fees round up (the venue never
/// under-collects); PnL and funding truncate toward zero, and every amount is moved between two
/// balances as the same integer, so rounding never creates or destroys collateral.
library PerpMath {
    uint256 internal constant WAD = 1e18;
    /// @dev size (1e18) x price (1e18) / 1e30 = quote (1e6).
    uint256 internal constant TO_QUOTE = 1e30;

    /// @notice Notional value |size| x price, in quote units (rounded down).
    function notional(int256 size, uint256 price) internal pure returns (uint256) {
        return FixedPointMathLib.abs(size) * price / TO_QUOTE;
    }

    /// @notice Unrealised PnL of `size` entered at `entryPrice`, marked at `price`, in quote units.
    function pnl(int256 size, uint256 entryPrice, uint256 price) internal pure returns (int256) {
        return size * (int256(price) - int256(entryPrice)) / int256(TO_QUOTE);
    }

    /// @notice Margin requirement fraction x notional, rounded up.
    function requirement(uint256 notional_, uint256 fraction) internal pure returns (uint256) {
        return FixedPointMathLib.mulDivUp(notional_, fraction, WAD);
    }

    /// @notice Funding a position owes since it last settled: size x (index now - index then), quote units.
    /// Positive means the position pays (longs pay when the index rises).
    function fundingOwed(int256 size, int256 indexNow, int256 indexThen) internal pure returns (int256) {
        return size * (indexNow - indexThen) / int256(TO_QUOTE);
    }

    /// @notice Funding index growth over `dt` seconds at `ratePerSecond` (WAD) and `price`: USD (18 dec) per base unit.
    function fundingIndexDelta(int256 ratePerSecond, uint256 price, uint256 dt) internal pure returns (int256) {
        return ratePerSecond * int256(price) * int256(dt) / int256(WAD);
    }

    /// @notice Size-weighted entry price after adding `delta` at `price` to `size` (same side).
    function averageEntry(int256 size, uint256 entry, int256 delta, uint256 price) internal pure returns (uint256) {
        uint256 a = FixedPointMathLib.abs(size);
        uint256 b = FixedPointMathLib.abs(delta);
        return (a * entry + b * price) / (a + b);
    }
}
