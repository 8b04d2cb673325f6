// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IOrderAccount} from "../../contracts/account/interfaces/IOrderAccount.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {ReenteringAccount} from "../mocks/ReenteringAccount.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice A settlement batch as one unit: the key's post-execution limits apply to its account after all of the
/// batch's fills (once per key), the venue's `settle` cannot be re-entered, only the settling venue closes an
/// account's batch, and partly filled orders keep their filled size across batches.
contract SignedOrderBatchTest is OrderTestBase {
    /// @dev The maker key on BTC up to 1 BTC and $70,000 an order, at most 3x leverage.
    function _grantLeverageCap() internal {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderSize = 1e18;
        scope.permissions[0].maxOrderNotional = 70_000e18;
        scope.risk.maxLeverage = 300;
        _grantMaker(scope);
    }

    /// @dev A fill of `size` with the maker buying (or selling) at 60,000.
    function _pair(bool makerBuys, uint128 size) internal returns (ISignedOrderVenue.Fill memory) {
        return _fill(_makerOrder(makerBuys, size, 60_000e18), _takerOrder(!makerBuys, size, 60_000e18), size);
    }

    function _two(ISignedOrderVenue.Fill memory a, ISignedOrderVenue.Fill memory b)
        internal
        pure
        returns (ISignedOrderVenue.Fill[] memory fills)
    {
        fills = new ISignedOrderVenue.Fill[](2);
        fills[0] = a;
        fills[1] = b;
    }

    /// The limits read the account after its fills: 0.5 BTC sold (6x alone) then 0.3 bought back ends at 0.2 BTC
    /// (2.4x) and stands; 0.2 then 0.3 sold ends at 0.5 BTC (6x) and the whole batch is refused.
    function test_limits_applyAfterTheBatch() public {
        _grantLeverageCap();
        ISignedOrderVenue.Fill[] memory over = _two(_pair(false, 0.2e18), _pair(false, 0.3e18));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.SessionLeverageTooHigh.selector, 600, 300));
        venue.settle(over);
        assertEq(_makerBtc(), 0);
        assertEq(_takerBtc(), 0);

        venue.settle(_two(_pair(false, 0.5e18), _pair(true, 0.3e18)));
        assertEq(_makerBtc(), -0.2e18);
        assertEq(_takerBtc(), 0.2e18);
    }

    /// A batch whose fills only reduce is checked as protective (never refused by the leverage cap), even when the
    /// account is over it after a price move.
    function test_limits_reduceOnlyBatchNotRefused() public {
        _grantLeverageCap();
        _settle(_pair(false, 0.2e18));
        _price(70_000e18, 3_000e18); // the short loses $2,000: 0.2 x 70,000 / 3,000 = 4.7x
        SignedOrder.Order memory m = _makerOrder(true, 0.05e18, 70_000e18);
        m.reduceOnly = true;
        _settle(_fill(m, _takerOrder(false, 0.05e18, 70_000e18), 0.05e18));
        assertEq(_makerBtc(), -0.15e18);
        // Positive control: a risk-raising fill at the same state is refused.
        _settleExpect(
            _fill(_makerOrder(false, 0.01e18, 70_000e18), _takerOrder(true, 0.01e18, 70_000e18), 0.01e18),
            abi.encodeWithSelector(ITradingAccount.SessionLeverageTooHigh.selector, 373, 300)
        );
    }

    /// Only the venue whose fills wait closes an account's batch: anyone else calling the zero-size
    /// `checkOrderFill` changes nothing when nothing waits, and is refused while something does.
    function test_closingCall_onlyBySettlingVenue() public {
        _grantLeverageCap();
        SignedOrder.Order memory o;
        o.account = address(account);
        assertEq(account.checkOrderFill(o, "", 0, 0), IOrderAccount.checkOrderFill.selector);

        ReenteringAccount evil = _evilTaker();
        evil.configure(2, address(account));
        ISignedOrderVenue.Fill memory f = _evilFill(evil);
        _settleExpect(f, abi.encodeWithSelector(ITradingAccount.OrderChecksPending.selector, address(venue)));
        // Positive control: the same fill settles when the taker leaves the maker's batch alone.
        evil.configure(0, address(0));
        _settle(f);
        assertEq(_makerBtc(), -0.1e18);
    }

    /// `settle` is not re-entrant: an account asked about a fill cannot settle again inside it (even as a settler).
    function test_settle_notReentrant() public {
        _grantLeverageCap();
        ReenteringAccount evil = _evilTaker();
        venue.setSettler(address(evil), true);
        evil.configure(1, address(0));
        ISignedOrderVenue.Fill memory f = _evilFill(evil);
        _settleExpect(f, abi.encodeWithSelector(PerpVenue.SettleReentered.selector));
        evil.configure(0, address(0));
        _settle(f);
        assertEq(_makerBtc(), -0.1e18);
    }

    /// A partly filled order keeps its filled size across batches and spends its nonce when full; another order
    /// under the same nonce starts from zero until then.
    function test_partialFills_acrossBatches() public {
        _grantMaker();
        SignedOrder.Order memory m = _makerOrder(false, 0.3e18, 60_000e18);
        bytes32 h = _hash(m);
        _settle(_fill(m, _takerOrder(true, 0.1e18, 60_000e18), 0.1e18));
        assertEq(venue.filledOf(h), 0.1e18);
        SignedOrder.Order memory sibling = abi.decode(abi.encode(m), (SignedOrder.Order));
        sibling.size = 0.05e18;
        _settle(_fill(sibling, _takerOrder(true, 0.04e18, 60_000e18), 0.04e18));
        assertEq(venue.filledOf(_hash(sibling)), 0.04e18);
        assertEq(venue.filledOf(h), 0.1e18);
        _settleExpect(
            _fill(m, _takerOrder(true, 0.25e18, 60_000e18), 0.25e18),
            abi.encodeWithSelector(PerpVenue.OrderOverfilled.selector, h, 0.35e18, 0.3e18)
        );
        _settle(_fill(m, _takerOrder(true, 0.2e18, 60_000e18), 0.2e18));
        assertEq(venue.filledOf(h), 0);
        _settleExpect(
            _fill(sibling, _takerOrder(true, 0.01e18, 60_000e18), 0.01e18),
            abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, _hash(sibling))
        );
        assertEq(_makerBtc(), -0.34e18);
    }

    /// @dev The maker key selling 0.1 BTC to `evil` (whose order needs no signature: it accepts every fill).
    function _evilFill(ReenteringAccount evil) internal returns (ISignedOrderVenue.Fill memory) {
        SignedOrder.Order memory m = _makerOrder(false, 0.1e18, 60_000e18);
        SignedOrder.Order memory t;
        (t.account, t.key, t.marketId, t.isBuy, t.size, t.limitPrice) =
        (address(evil), address(0xE71), BTC, true, 0.1e18, 60_000e18);
        t.expiry = uint64(block.timestamp * 1000 + 1 hours * 1000);
        return ISignedOrderVenue.Fill(m, _signOrder(KEY_PK, m), t, "", 0.1e18);
    }

    /// @dev A taker account that accepts every fill, with $10,000 of margin.
    function _evilTaker() internal returns (ReenteringAccount evil) {
        evil = new ReenteringAccount();
        usd.mint(address(evil), 10_000e6);
        evil.deposit(venue, usd, 10_000e6);
    }
}
