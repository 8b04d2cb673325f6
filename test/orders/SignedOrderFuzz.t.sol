// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice The settler chooses two fill sizes of one maker order and the prices: a fill settles exactly when the
/// order is not yet filled in full, the fill keeps its filled total within its size and the maker's price is
/// within the taker's limit; positions move by exactly the filled total, on both sides.
contract SignedOrderFuzzTest is OrderTestBase {
    function setUp() public override {
        super.setUp();
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderSize = 1e18;
        scope.permissions[0].maxOrderNotional = 70_000e18;
        _grantMaker(scope);
    }

    function testFuzz_fillSizesAndPrices(uint256 size, uint256 a, uint256 b, uint256 price, uint256 takerLimit) public {
        size = bound(size, 1, 0.5e18);
        price = bound(price, 54_000e18, 66_000e18);
        takerLimit = bound(takerLimit, 50_000e18, 70_000e18);
        SignedOrder.Order memory m = _makerOrder(false, uint128(size), uint128(price));
        SignedOrder.Order memory t = _takerOrder(true, 10e18, uint128(takerLimit));
        uint256 filled = _tryFill(m, t, bound(a, 1, 0.6e18), 0);
        _tryFill(m, t, bound(b, 1, 0.6e18), filled);
    }

    /// @dev Settles `amount` of `m` against `t` when it fits and the price crosses, else expects the refusal;
    /// returns the filled total, checked on the venue.
    function _tryFill(SignedOrder.Order memory m, SignedOrder.Order memory t, uint256 amount, uint256 filled)
        internal
        returns (uint256)
    {
        bytes32 h = _hash(m);
        uint256 next = filled + amount;
        if (filled == m.size) {
            _settleExpect(_fill(m, t, uint128(amount)), abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, h));
        } else if (next > m.size) {
            _settleExpect(
                _fill(m, t, uint128(amount)),
                abi.encodeWithSelector(PerpVenue.OrderOverfilled.selector, h, next, m.size)
            );
        } else if (m.limitPrice > t.limitPrice) {
            _settleExpect(
                _fill(m, t, uint128(amount)),
                abi.encodeWithSelector(ITradingAccount.OrderPriceOutsideLimit.selector, m.limitPrice, t.limitPrice)
            );
        } else {
            _settle(_fill(m, t, uint128(amount)));
            filled = next;
        }
        assertLe(filled, m.size);
        // A partial fill is tracked by hash; a full one spends the order's nonce instead.
        bool spent = venue.cancelledOrders(m.account, m.key, m.nonce >> 8) & (1 << (m.nonce & 255)) != 0;
        assertEq(venue.filledOf(h), filled == m.size ? 0 : filled);
        assertEq(spent, filled == m.size);
        assertEq(_makerBtc(), -int256(filled));
        assertEq(_takerBtc(), int256(filled));
        return filled;
    }
}
