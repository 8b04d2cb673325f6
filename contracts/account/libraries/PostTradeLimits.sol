// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

import {IPerpVenue} from "../../venue/IPerpVenue.sol";
import {ITradingAccount} from "../interfaces/ITradingAccount.sol";
import {AccountStorage} from "./AccountStorage.sol";
import {RiskState} from "../types/RiskState.sol";
import {SessionState, SessionStateLibrary} from "../types/SessionState.sol";

/// @title PostTradeLimits
/// @notice A session key's post-execution limits — leverage, largest position, headroom over maintenance and the
/// drawdown breaker — read from the venue after the key's trades, on the account's storage. One copy for both
/// paths: the account runs them after a session op's calls, and once per signed-order batch (`runPending`) for
/// the keys its `checkOrderFill` recorded in transient storage.
library PostTradeLimits {
    /// @dev Transient: keys whose post-execution limits wait for the venue's closing call — the count at this
    /// slot, the venue at the next, then one word a key (`key | RAISES_RISK` once one of its fills raised risk).
    uint256 internal constant PENDING_SLOT = uint256(keccak256("keyscope.account.pendingFillLimits"));
    /// @dev In a pending word: one of the key's fills raised risk.
    uint256 internal constant RAISES_RISK = 1 << 160;

    /// @notice Applies the limits of every key waiting for `msg.sender`'s batch, once each (as risk-raising if any
    /// of its fills raised risk), and clears the list. Nothing waits: nothing to do. Another venue's keys wait:
    /// refused.
    function runPending() internal {
        uint256 slot = PENDING_SLOT;
        uint256 n;
        address venue;
        assembly ("memory-safe") {
            n := tload(slot)
            venue := tload(add(slot, 1))
        }
        if (n == 0) return;
        if (msg.sender != venue) revert ITradingAccount.OrderChecksPending(venue);
        for (uint256 i; i < n; ++i) {
            uint256 e;
            assembly ("memory-safe") {
                e := tload(add(add(slot, 2), i))
            }
            check(address(uint160(e)), venue, e & RAISES_RISK != 0);
        }
        assembly ("memory-safe") {
            tstore(slot, 0)
        }
    }

    /// @dev Reads the venue after the op and applies the key's limits: leverage, largest position and
    /// headroom over maintenance after any op that placed an order without reduceOnly; then the breaker,
    /// which trips below its threshold (undoing a risk-raising op first) and otherwise raises the mark. The
    /// breaker measures the account's equity (`equityOf`), not the venue value alone: a key may deposit the
    /// wallet's collateral into margin, and that money must not sit above the floor the breaker guards.
    function check(address key, address venue, bool raisesRisk) internal {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        RiskState r = $.risk[key];
        (bool ok, bytes memory ret) = venue.staticcall(abi.encodeCall(IPerpVenue.accountRisk, (address(this))));
        if (!ok || ret.length < 128) revert ITradingAccount.SessionVenueUnreadable(venue);
        (int256 value, uint256 mmr, uint256 gross, uint256 largest) =
            abi.decode(ret, (int256, uint256, uint256, uint256));
        uint256 av = value > 0 ? uint256(value) : 0;
        if (raisesRisk) {
            uint256 maxLeverage = r.maxLeverage();
            if (maxLeverage != 0 && gross * 100 > maxLeverage * av) {
                revert ITradingAccount.SessionLeverageTooHigh(
                    av == 0 ? type(uint256).max : gross * 100 / av, maxLeverage
                );
            }
            uint256 maxPosition = r.maxPositionNotional();
            if (maxPosition != 0 && largest > maxPosition) {
                revert ITradingAccount.SessionPositionTooLarge(largest, maxPosition);
            }
            uint256 headroom = r.minHeadroomBps();
            if (headroom != 0) {
                uint256 required = FixedPointMathLib.mulDivUp(mmr, 10_000 + headroom, 10_000);
                if (value < int256(required)) revert ITradingAccount.SessionHeadroomTooLow(value, required);
            }
        }
        if ($.sessions[key].has(SessionStateLibrary.BREAKER)) checkBreaker(key, r, equityOf(venue, value), raisesRisk);
    }

    /// @dev The breaker: below its threshold it trips (a risk-raising op is undone first); otherwise the mark
    /// rises to `equity` if that is higher.
    function checkBreaker(address key, RiskState r, int256 equity, bool raisesRisk) internal {
        uint256 threshold = r.breakerThreshold();
        if (equity < int256(threshold)) {
            if (raisesRisk) revert ITradingAccount.SessionDrawdownBreached(equity, threshold);
            trip(key, equity, threshold);
        } else if (uint256(equity) > r.highWaterMark()) {
            // equity >= threshold >= 0 here.
            uint256 mark = uint256(equity);
            AccountStorage.layout().risk[key] = r.withMark(mark > type(uint64).max ? type(uint64).max : uint64(mark));
        }
    }

    /// @dev The account's equity in the venue's quote units: its venue account value `value` plus the wallet's
    /// balance of the venue's collateral token (what `depositMargin` can move in). Execution phase only: it
    /// reads foreign storage. A balance over 2^128 counts as 2^128 (no overflow).
    function equityOf(address venue, int256 value) internal view returns (int256) {
        (bool ok, bytes memory ret) = venue.staticcall(abi.encodeCall(IPerpVenue.collateralToken, ()));
        if (!ok || ret.length < 32) revert ITradingAccount.SessionVenueUnreadable(venue);
        address token = abi.decode(ret, (address));
        (ok, ret) = token.staticcall(abi.encodeCall(IERC20.balanceOf, (address(this))));
        if (!ok || ret.length < 32) revert ITradingAccount.SessionVenueUnreadable(venue);
        uint256 balance = abi.decode(ret, (uint256));
        return value + int256(FixedPointMathLib.min(balance, type(uint128).max));
    }

    /// @dev Degrades `key` to protective calls only, until the owner re-arms or revokes it.
    function trip(address key, int256 accountValue, uint256 threshold) internal {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        $.sessions[key] = s.withFlag(SessionStateLibrary.TRIPPED);
        emit ITradingAccount.SessionBreakerTripped(key, accountValue, threshold, $.risk[key].highWaterMark());
    }
}
