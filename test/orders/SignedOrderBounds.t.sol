// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice The README's security-model bounds on the signed-order path, at their edges, long and short, after
/// the post-execution limits moved to the end of a settlement batch (once per account). The attacker holds the
/// victim's session key, runs the settler and owns the counterparty (`takerAccount`, its own key): it chooses
/// which fills settle, their order within a batch, their sizes and prices within the orders' limits and the
/// venue's band, and how a batch is shaped — several fills that each pass and together exceed, a fill that
/// crosses from long to short. Each bound is hit just inside (it stands: the positive control) and just past
/// (the whole batch is refused). The victim (`account`) holds 5,000 tUSD of margin and 15,000 in its wallet;
/// BTC is at 60,000 (IMF 5 %, MMF 3 %, taker fee 5 bps, band 10 %).
contract SignedOrderBoundsTest is OrderTestBase {
    address internal accomplice = address(0xACC0);

    /// @dev The victim's key on BTC up to 0.5 BTC and $31,000 an order, with `risk`.
    function _grantRisk(ITradingAccount.RiskLimits memory risk) internal {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.risk = risk;
        _grantMaker(scope);
    }

    function _threeX() internal pure returns (ITradingAccount.RiskLimits memory risk) {
        risk.maxLeverage = 300;
    }

    /// @dev The victim's key as maker, at 60,000 (its own price: no fee), `size` signed (+ buys).
    function _victimMakes(int256 size) internal returns (ISignedOrderVenue.Fill memory) {
        bool buys = size > 0;
        uint128 s = uint128(uint256(buys ? size : -size));
        return _fill(_makerOrder(buys, s, 60_000e18), _takerOrder(!buys, s, 60_000e18), s);
    }

    /// @dev The victim's key as taker with limit `limit`, filled at the attacker's maker price `price`.
    function _victimTakes(bool buys, uint128 size, uint128 limit, uint128 price)
        internal
        returns (ISignedOrderVenue.Fill memory)
    {
        SignedOrder.Order memory m = _takerOrder(!buys, size, price); // the attacker's account makes
        SignedOrder.Order memory t = _makerOrder(buys, size, limit); // the victim's key takes
        return ISignedOrderVenue.Fill(m, _signOrder(TAKER_KEY_PK, m), t, _signOrder(KEY_PK, t), size);
    }

    function _batch(ISignedOrderVenue.Fill memory a) internal pure returns (ISignedOrderVenue.Fill[] memory f) {
        f = new ISignedOrderVenue.Fill[](1);
        f[0] = a;
    }

    function _batch(ISignedOrderVenue.Fill memory a, ISignedOrderVenue.Fill memory b)
        internal
        pure
        returns (ISignedOrderVenue.Fill[] memory f)
    {
        f = new ISignedOrderVenue.Fill[](2);
        (f[0], f[1]) = (a, b);
    }

    function _batch(ISignedOrderVenue.Fill memory a, ISignedOrderVenue.Fill memory b, ISignedOrderVenue.Fill memory c)
        internal
        pure
        returns (ISignedOrderVenue.Fill[] memory f)
    {
        f = new ISignedOrderVenue.Fill[](3);
        (f[0], f[1], f[2]) = (a, b, c);
    }

    /// @dev `fills` is refused whole with an error of selector `err`, and the victim's position is unchanged.
    function _refused(ISignedOrderVenue.Fill[] memory fills, bytes4 err) internal {
        int256 before = _makerBtc();
        vm.expectPartialRevert(err);
        venue.settle(fills);
        assertEq(_makerBtc(), before, "nothing of the batch stands");
    }

    function _equity() internal view returns (int256) {
        (int256 value,,,) = venue.accountRisk(address(account));
        return value + int256(usd.balanceOf(address(account)));
    }

    /*//////////////////////////////////////////////////////////////
                     LEVERAGE AND THE LIQUIDATION BOUND
    //////////////////////////////////////////////////////////////*/

    /// @dev At the 3x edge (0.25 BTC = $15,000 on exactly $5,000: the maker pays no fee), reached by the settler
    /// in three fills that each pass alone: one step more in the last fill is refused. Then the accomplice tries
    /// to liquidate just inside the README's bound (refused) and just past it (paid). Long: a fall of
    /// (1/3 - 3 %) / (1 - 3 %) = 31.27 %, to $41,237.11; short: a rise of (1/3 - 3 %) / (1 + 3 %) = 29.45 %,
    /// to $77,669.90.
    function _edgeThenLiquidation(int256 sign, uint256 insidePrice, uint256 pastPrice) internal {
        _grantRisk(_threeX());
        _refused(
            _batch(_victimMakes(sign * 0.1e18), _victimMakes(sign * 0.1e18), _victimMakes(sign * 0.0501e18)),
            ITradingAccount.SessionLeverageTooHigh.selector
        );
        venue.settle(_batch(_victimMakes(sign * 0.1e18), _victimMakes(sign * 0.1e18), _victimMakes(sign * 0.05e18)));
        assertEq(_makerBtc(), sign * 0.25e18, "the edge stands");
        (int256 value,, uint256 gross,) = venue.accountRisk(address(account));
        assertEq(gross * 100, 300 * uint256(value), "exactly 3x");

        assertGt(_liquidateOnlyPast(accomplice, insidePrice, pastPrice), 0, "past the bound the accomplice is paid");
    }

    function test_signedBounds_leverageAndLiquidation_long() public {
        _edgeThenLiquidation(1, 41_238e18, 41_236e18);
    }

    function test_signedBounds_leverageAndLiquidation_short() public {
        _edgeThenLiquidation(-1, 77_669e18, 77_671e18);
    }

    /// The control for both: with no limit on the key, the settler levers the victim to 12x through its signed
    /// orders and the accomplice liquidates it, and is paid, after a 6.7 % move either way (12x needs only
    /// (1/12 - 3 %) / (1 -/+ 3 %) = 5.5 % / 5.2 %).
    function test_signedBounds_withoutLimitsTheAttackWorks() public {
        ITradingAccount.RiskLimits memory none;
        _grantRisk(none);
        venue.settle(_batch(_victimMakes(0.5e18), _victimMakes(0.5e18)));
        assertEq(_makerBtc(), 1e18);
        _price(56_000e18, 3_000e18);
        vm.prank(accomplice);
        venue.liquidate(address(account), BTC);
        assertGt(venue.collateralOf(accomplice), 0);
    }

    function test_signedBounds_withoutLimitsTheAttackWorks_short() public {
        ITradingAccount.RiskLimits memory none;
        _grantRisk(none);
        venue.settle(_batch(_victimMakes(-0.5e18), _victimMakes(-0.5e18)));
        _price(64_000e18, 3_000e18);
        vm.prank(accomplice);
        venue.liquidate(address(account), BTC);
        assertGt(venue.collateralOf(accomplice), 0);
    }

    /// A fill that crosses from long to short inside one batch is held to the cap on the side it ends: from a
    /// 0.2 BTC long, selling 0.2 and then 0.2501 (or 0.4501 in one fill) ends 0.2501 short, over 3x: refused;
    /// 0.25 short stands.
    function test_signedBounds_crossingLongToShort() public {
        _grantRisk(_threeX());
        _settle(_victimMakes(0.2e18));
        bytes4 lev = ITradingAccount.SessionLeverageTooHigh.selector;
        _refused(_batch(_victimMakes(-0.2e18), _victimMakes(-0.2501e18)), lev);
        _refused(_batch(_victimMakes(-0.4501e18)), lev);
        // A reduce-only fill closing the long first changes nothing: the batch is checked as it leaves the account.
        SignedOrder.Order memory close = _makerOrder(false, 0.2e18, 60_000e18);
        close.reduceOnly = true;
        ISignedOrderVenue.Fill memory closing = _fill(close, _takerOrder(true, 0.2e18, 60_000e18), 0.2e18);
        _refused(_batch(closing, _victimMakes(-0.2501e18)), lev);
        venue.settle(_batch(closing, _victimMakes(-0.25e18)));
        assertEq(_makerBtc(), -0.25e18, "the edge on the other side stands");
    }

    /// The same from short to long.
    function test_signedBounds_crossingShortToLong() public {
        _grantRisk(_threeX());
        _settle(_victimMakes(-0.2e18));
        _refused(_batch(_victimMakes(0.4501e18)), ITradingAccount.SessionLeverageTooHigh.selector);
        venue.settle(_batch(_victimMakes(0.2e18), _victimMakes(0.25e18)));
        assertEq(_makerBtc(), 0.25e18);
    }

    /// The order of fills inside a batch cannot hide a breach: a risk-raising fill over the cap followed by a
    /// reduce-only fill that does not bring it back is refused; one that brings it back under stands, as the
    /// account leaves the batch inside every limit.
    function test_signedBounds_fillOrderInsideABatch() public {
        _grantRisk(_threeX());
        _settle(_victimMakes(0.2e18));
        SignedOrder.Order memory cut = _makerOrder(false, 0.01e18, 60_000e18);
        cut.reduceOnly = true;
        ISignedOrderVenue.Fill memory reducing = _fill(cut, _takerOrder(true, 0.01e18, 60_000e18), 0.01e18);
        _refused(_batch(_victimMakes(0.0601e18), reducing), ITradingAccount.SessionLeverageTooHigh.selector);
        venue.settle(_batch(_victimMakes(0.06e18), reducing));
        assertEq(_makerBtc(), 0.25e18);
    }

    /*//////////////////////////////////////////////////////////////
                         POSITION AND ORDER NOTIONAL
    //////////////////////////////////////////////////////////////*/

    /// @dev Under `risk`, two fills of the victim's key in one batch: `first` + `over` is refused whole with `err`,
    /// `first` + `within` stands.
    function _twoFillEdge(ITradingAccount.RiskLimits memory risk, int256 first, int256 over, int256 within, bytes4 err)
        internal
    {
        _grantRisk(risk);
        _refused(_batch(_victimMakes(first), _victimMakes(over)), err);
        venue.settle(_batch(_victimMakes(first), _victimMakes(within)));
        assertEq(_makerBtc(), first + within);
    }

    /// @dev A $12,000 position cap (0.2 BTC), hit in two fills: 0.1 + 0.1001 refused, 0.1 + 0.1 stands.
    function _positionEdge(int256 sign) internal {
        ITradingAccount.RiskLimits memory risk;
        risk.maxPositionNotional = 12_000e6;
        _twoFillEdge(
            risk, sign * 0.1e18, sign * 0.1001e18, sign * 0.1e18, ITradingAccount.SessionPositionTooLarge.selector
        );
    }

    function test_signedBounds_positionCap_long() public {
        _positionEdge(1);
    }

    function test_signedBounds_positionCap_short() public {
        _positionEdge(-1);
    }

    /// @dev Headroom: value at least 3x maintenance. On exactly $5,000 that is a notional of $55,555.55 (0.925925
    /// BTC), reached in two fills: 0.5 + 0.426 (MMR x 3 = $5,000.40) refused, 0.5 + 0.4259 ($4,999.86) stands.
    function _headroomEdge(int256 sign) internal {
        ITradingAccount.RiskLimits memory risk;
        risk.minHeadroomBps = 20_000;
        _twoFillEdge(
            risk, sign * 0.5e18, sign * 0.426e18, sign * 0.4259e18, ITradingAccount.SessionHeadroomTooLow.selector
        );
    }

    function test_signedBounds_headroom_long() public {
        _headroomEdge(1);
    }

    function test_signedBounds_headroom_short() public {
        _headroomEdge(-1);
    }

    /// One order's notional, $31,000: a buy at its limit (0.5 BTC at 62,000 is exactly $31,000 and stands,
    /// 62,001 is refused before anything fills), a sell at its fill — the attacker's maker buys the victim's 0.5
    /// BTC sell (limit 54,000: $27,000) at 62,002, over the cap: refused; at 62,000 it stands.
    function test_signedBounds_orderNotional_buyAtLimit() public {
        _grantMaker();
        _refused(
            _batch(_victimTakes(true, 0.5e18, 62_001e18, 60_000e18)), ITradingAccount.SessionNotionalTooHigh.selector
        );
        venue.settle(_batch(_victimTakes(true, 0.5e18, 62_000e18, 60_000e18)));
        assertEq(_makerBtc(), 0.5e18);
    }

    function test_signedBounds_orderNotional_sellAtFill() public {
        _grantMaker();
        _refused(
            _batch(_victimTakes(false, 0.5e18, 54_000e18, 62_002e18)), ITradingAccount.SessionNotionalTooHigh.selector
        );
        venue.settle(_batch(_victimTakes(false, 0.5e18, 54_000e18, 62_000e18)));
        assertEq(_makerBtc(), -0.5e18);
    }

    /// Splitting one order over several fills of a batch never fills more than its size (the scope checked the
    /// order's whole size): 0.3 + 0.21 of a 0.5 BTC order is refused, 0.3 + 0.2 stands.
    function test_signedBounds_oneOrderSplitAcrossFills() public {
        _grantMaker();
        SignedOrder.Order memory o = _makerOrder(true, 0.5e18, 60_000e18);
        bytes memory sig = _signOrder(KEY_PK, o);
        ISignedOrderVenue.Fill memory a = _fill(o, _takerOrder(false, 0.3e18, 60_000e18), 0.3e18);
        SignedOrder.Order memory t = _takerOrder(false, 0.21e18, 60_000e18);
        ISignedOrderVenue.Fill memory b = ISignedOrderVenue.Fill(o, sig, t, _signOrder(TAKER_KEY_PK, t), 0.21e18);
        _refused(_batch(a, b), PerpVenue.OrderOverfilled.selector);
        b.size = 0.2e18;
        venue.settle(_batch(a, b));
        assertEq(_makerBtc(), 0.5e18);
    }

    /*//////////////////////////////////////////////////////////////
                                 BREAKER
    //////////////////////////////////////////////////////////////*/

    /// @dev A drawdown floor $100 under the victim's equity ($20,000: $5,000 margin + $15,000 wallet). The
    /// settler fills the victim's taker orders at the attacker's price, off the oracle within the band: each
    /// fill loses size x |price - oracle| + the taker fee. Two fills that each pass alone but together lose
    /// over $100 are refused; one losing just under $100 stands.
    function _breakerEdge(bool buys, uint128 insidePrice, uint128 pastPrice) internal {
        ITradingAccount.RiskLimits memory risk;
        risk.drawdownFloor = 19_900e6;
        _grantRisk(risk);
        assertEq(_equity(), 20_000e6);
        uint128 limit = buys ? 61_000e18 : 59_000e18;
        _refused(
            _batch(_victimTakes(buys, 0.05e18, limit, pastPrice), _victimTakes(buys, 0.05e18, limit, pastPrice)),
            ITradingAccount.SessionDrawdownBreached.selector
        );
        _refused(_batch(_victimTakes(buys, 0.1e18, limit, pastPrice)), ITradingAccount.SessionDrawdownBreached.selector);
        venue.settle(_batch(_victimTakes(buys, 0.1e18, limit, insidePrice)));
        assertGe(_equity(), 19_900e6, "the control stands above the floor");
        assertLt(_equity(), 19_902e6, "within $2 of it");
        assertFalse(sessions.getSession(key).tripped);
    }

    /// Long: 0.1 BTC bought at 60,970 loses $97 + $3.05 fee; at 60,960, $96 + $3.05.
    function test_signedBounds_breaker_long() public {
        _breakerEdge(true, 60_960e18, 60_970e18);
    }

    /// Short: 0.1 BTC sold at 59,030 loses $97 + $2.95 fee (inside, $99.95); at 59,020, $98 + $2.95.
    function test_signedBounds_breaker_short() public {
        _breakerEdge(false, 59_030e18, 59_020e18);
    }
}
