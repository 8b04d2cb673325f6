// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {Vm} from "forge-std/Test.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {VenueSessionBase} from "../utils/VenueSessionBase.sol";

/// @notice A stolen key's exposure on the real venue: post-execution leverage, position and headroom limits, the
/// sell fill checked against the notional cap, and the drawdown breaker — each attack beside its positive
/// control. The account holds 5,000 tUSD of margin; BTC is at 60,000 (IMF 5 %, MMF 3 %).
contract RiskLimitsOnVenueTest is VenueSessionBase {
    address internal accomplice = address(0xACC0);

    function setUp() public override {
        super.setUp();
        // The accomplice's address has margin of its own on the venue (a liquidator needs none, but it is
        // realistic) and nothing else.
        usd.mint(accomplice, 1_000e6);
        vm.startPrank(accomplice);
        usd.approve(address(venue), type(uint256).max);
        venue.depositMargin(1_000e6);
        vm.stopPrank();
    }

    /// @dev A trading key on BTC up to 1 BTC and $70,000 an order, with `risk`.
    function _grantRisk(ITradingAccount.RiskLimits memory risk) internal {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderSize = 1e18;
        scope.permissions[0].maxOrderNotional = 70_000e18;
        scope.risk = risk;
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute, (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, scope)))
            )
        );
    }

    /// @dev Sends a session op and returns the revert data of its execution (empty if it went through).
    function _sendAndReadRevert(bytes memory callData) internal returns (bytes memory reason) {
        vm.recordLogs();
        _send(_sessionOp(callData));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 topic = keccak256("UserOperationRevertReason(bytes32,address,uint256,bytes)");
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(entryPoint) && logs[i].topics[0] == topic) {
                (, reason) = abi.decode(logs[i].data, (uint256, bytes));
            }
        }
    }

    function _btc() internal view returns (int256) {
        return venue.position(address(account), BTC).size;
    }

    /*//////////////////////////////////////////////////////////////
                                LEVERAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev A key under `risk` opens `over` (undone after execution with `err`, nothing left), then `within`
    /// (stands): a buy with a ceiling $100 over the price, a sell with a floor $100 under it. Every exposure limit
    /// counts |size|, so each is tried on both sides with the same figures.
    function _capHolds(ITradingAccount.RiskLimits memory risk, int256 over, int256 within, bytes4 err) internal {
        _grantRisk(risk);
        uint256 limit = within > 0 ? 60_100e18 : 59_900e18;
        assertEq(bytes4(_sendAndReadRevert(_order(BTC, over, limit, false))), err);
        assertEq(_btc(), 0);
        assertEq(_sendAndReadRevert(_order(BTC, within, limit, false)).length, 0, "the control stands");
        assertEq(_btc(), within);
    }

    /// 0.5 BTC = $30,000 on ~$4,985 of value is 6x: undone. Positive control: 0.2 BTC = $12,000, 2.4x.
    function test_leverage_capStopsLeveringUp() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300; // 3x
        _capHolds(risk, 0.5e18, 0.2e18, ITradingAccount.SessionLeverageTooHigh.selector);
    }

    /// The cap counts a short's notional as a long's.
    function test_leverage_capStopsLeveringUp_short() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        _capHolds(risk, -0.5e18, -0.2e18, ITradingAccount.SessionLeverageTooHigh.selector);
    }

    /// The issue's attack: lever the account to the venue's maximum with the stolen key, let the price move,
    /// liquidate it from a second address and keep the reward. Under a 3x cap the account can never be walked
    /// near maintenance: a 10 % move leaves it far above, and the accomplice's liquidation is refused.
    function test_leverage_stolenKeyCannotSetUpALiquidation() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        risk.minHeadroomBps = 5_000;
        _grantRisk(risk);
        // The venue would allow ~0.8 BTC (20x): refused.
        assertEq(
            bytes4(_sendAndReadRevert(_order(BTC, 0.8e18, 60_100e18, false))),
            ITradingAccount.SessionLeverageTooHigh.selector
        );
        // The most the key may take, 3x.
        _send(_sessionOp(_order(BTC, 0.24e18, 60_100e18, false)));
        assertEq(_btc(), 0.24e18);
        _price(54_000e18, 3_000e18); // 10 % against the long
        vm.prank(accomplice);
        vm.expectPartialRevert(PerpVenue.NotLiquidatable.selector);
        venue.liquidate(address(account), BTC);
        assertEq(venue.collateralOf(accomplice), 1_000e6, "the accomplice gained nothing");
        // The README's bound: at leverage L = 14,400 / 4,992.8 = 2.88, liquidation needs a move of at least
        // (1/L - MMF) / (1 - MMF) = 32.7 %, a price under 40,410. At 41,000 (31.7 % down) it is refused...
        _price(41_000e18, 3_000e18);
        vm.prank(accomplice);
        vm.expectPartialRevert(PerpVenue.NotLiquidatable.selector);
        venue.liquidate(address(account), BTC);
        // ... at 40,000 (33.3 % down) the bound is crossed and the liquidation goes through.
        _price(40_000e18, 3_000e18);
        vm.prank(accomplice);
        venue.liquidate(address(account), BTC);
        assertGt(venue.collateralOf(accomplice), 1_000e6);
    }

    /// The same attack with no limits on the key: it works, which is what the limits above prevent.
    function test_leverage_withoutLimitsTheAttackWorks() public {
        ITradingAccount.RiskLimits memory none;
        _grantRisk(none);
        _send(_sessionOp(_order(BTC, 0.8e18, 60_100e18, false)));
        assertEq(_btc(), 0.8e18);
        _price(55_000e18, 3_000e18); // 8 % against the long: below maintenance at 16x
        vm.prank(accomplice);
        venue.liquidate(address(account), BTC);
        assertGt(venue.collateralOf(accomplice), 1_000e6, "the accomplice was paid a reward");
    }

    /// @dev The README's bound (WAD): the smallest adverse move after which an account whose key last raised risk
    /// at leverage `leverage` (hundredths) can be liquidated. From the venue's margin model, for one position of
    /// notional N and value AV (N <= L x AV after the op, fee paid): a long is liquidatable once
    /// AV - N d < MMF N (1 - d), i.e. d > (AV/N - MMF) / (1 - MMF) >= (1/L - MMF) / (1 - MMF); a short once
    /// AV - N u < MMF N (1 + u), i.e. u > (1/L - MMF) / (1 + MMF) — its requirement grows with the adverse move.
    function _liquidationBound(uint256 leverage, uint256 mmf, bool long) internal pure returns (uint256) {
        return (100e18 / leverage - mmf) * 1e18 / (long ? 1e18 - mmf : 1e18 + mmf);
    }

    /// @dev The attack at the edge of a 3x cap: the key takes the largest position the cap lets through (one
    /// step more is undone), then the accomplice tries to liquidate just inside the bound (refused) and just past
    /// it (paid). `size` is signed; prices are checked to lie within 0.01 % of the bound, on either side.
    function _attackAtTheCap(int256 size, uint256 limit, uint256 insidePrice, uint256 pastPrice) internal {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        _grantRisk(risk);
        int256 step = size > 0 ? int256(0.0001e18) : -0.0001e18;
        assertEq(
            bytes4(_sendAndReadRevert(_order(BTC, size + step, limit, false))),
            ITradingAccount.SessionLeverageTooHigh.selector,
            "one step over the cap is undone"
        );
        assertEq(_sendAndReadRevert(_order(BTC, size, limit, false)).length, 0);
        assertEq(_btc(), size);

        bool long = size > 0;
        uint256 bound = _liquidationBound(300, 0.03e18, long);
        uint256 boundPrice = long ? 60_000e18 * (1e18 - bound) / 1e18 : 60_000e18 * (1e18 + bound) / 1e18;
        // `insidePrice` is a smaller adverse move than the bound, `pastPrice` a larger one, both within $6.
        assertTrue(long ? insidePrice > boundPrice : insidePrice < boundPrice, "inside the bound");
        assertTrue(long ? pastPrice < boundPrice : pastPrice > boundPrice, "past the bound");
        assertApproxEqAbs(insidePrice, boundPrice, 6e18);
        assertApproxEqAbs(pastPrice, boundPrice, 6e18);

        assertGt(_liquidateOnlyPast(accomplice, insidePrice, pastPrice), 0, "past the bound the accomplice is paid");
    }

    /// A long at the edge of 3x (0.2496 BTC = $14,976 on $4,992.51 after the fee): the bound is a fall of
    /// (1/3 - 3 %) / 97 % = 31.27 %, to $41,237.11. At $41,238 the liquidation is refused, at $41,234 it goes through.
    function test_liquidationBound_long_atTheCap() public {
        _attackAtTheCap(0.2496e18, 60_100e18, 41_238e18, 41_234e18);
    }

    /// The same on the short side: the bound is a rise of (1/3 - 3 %) / 103 % = 29.45 %, to $77,669.90 — less
    /// than the long's 31.27 % (a rise to $78,763), which the README used to state for both sides.
    function test_liquidationBound_short_atTheCap() public {
        _attackAtTheCap(-0.2496e18, 59_900e18, 77_669e18, 77_673e18);
        assertLt(
            77_673e18, 60_000e18 * (1e18 + _liquidationBound(300, 0.03e18, true)) / 1e18, "the long bound is false"
        );
    }

    /// The short attack with no limits on the key: 0.8 BTC short (9.6x) is liquidatable after an 8 % rise.
    function test_liquidationBound_short_withoutLimitsTheAttackWorks() public {
        ITradingAccount.RiskLimits memory none;
        _grantRisk(none);
        _send(_sessionOp(_order(BTC, -0.8e18, 59_900e18, false)));
        assertEq(_btc(), -0.8e18);
        _price(64_800e18, 3_000e18);
        vm.prank(accomplice);
        venue.liquidate(address(account), BTC);
        assertGt(venue.collateralOf(accomplice), 1_000e6, "the accomplice was paid a reward");
    }

    /// Limits apply to ops that raise risk: once the price has moved the account over the cap, the key can still
    /// reduce.
    function test_leverage_reducingAlwaysAllowed() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        _grantRisk(risk);
        _send(_sessionOp(_order(BTC, 0.24e18, 60_100e18, false)));
        _price(57_000e18, 3_000e18); // value falls, leverage rises over 3x
        assertEq(
            bytes4(_sendAndReadRevert(_order(BTC, 0.01e18, 57_100e18, false))),
            ITradingAccount.SessionLeverageTooHigh.selector
        );
        assertEq(_sendAndReadRevert(_order(BTC, -0.1e18, 56_900e18, true)).length, 0);
        assertEq(_btc(), 0.14e18);
    }

    /*//////////////////////////////////////////////////////////////
                          POSITION AND HEADROOM
    //////////////////////////////////////////////////////////////*/

    /// $24,000 over the $20,000 cap: undone; $18,000 stands.
    function test_position_capPerMarket() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxPositionNotional = 20_000e6;
        _capHolds(risk, 0.4e18, 0.3e18, ITradingAccount.SessionPositionTooLarge.selector);
    }

    function test_position_capPerMarket_short() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxPositionNotional = 20_000e6;
        _capHolds(risk, -0.4e18, -0.3e18, ITradingAccount.SessionPositionTooLarge.selector);
    }

    /// Value at least 3x maintenance. 1 BTC: MMR $1,800, value ~$4,970 < $5,400: undone. 0.9 BTC: MMR $1,620,
    /// x3 = $4,860 <= ~$4,973: stands.
    function test_headroom_keepsTheAccountAboveMaintenance() public {
        ITradingAccount.RiskLimits memory risk;
        risk.minHeadroomBps = 20_000;
        _capHolds(risk, 1e18, 0.9e18, ITradingAccount.SessionHeadroomTooLow.selector);
    }

    function test_headroom_keepsTheAccountAboveMaintenance_short() public {
        ITradingAccount.RiskLimits memory risk;
        risk.minHeadroomBps = 20_000;
        _capHolds(risk, -1e18, -0.9e18, ITradingAccount.SessionHeadroomTooLow.selector);
    }

    /*//////////////////////////////////////////////////////////////
                          SELL FILL VS NOTIONAL
    //////////////////////////////////////////////////////////////*/

    /// A sell's limit is a floor, so a low limit passes validation; its notional is checked at the fill.
    function test_sell_fillOverCapUndone() public {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderNotional = 29_000e18;
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute, (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, scope)))
            )
        );
        // 0.5 BTC at a 55,000 floor: $27,500 at the limit, but it fills at 60,000: $30,000 > $29,000.
        bytes memory reason = _sendAndReadRevert(_order(BTC, -0.5e18, 55_000e18, false));
        assertEq(reason, abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 30_000e18, 29_000e18));
        assertEq(_btc(), 0);
        // Positive control: 0.48 BTC fills at $28,800.
        _send(_sessionOp(_order(BTC, -0.48e18, 55_000e18, false)));
        assertEq(_btc(), -0.48e18);
    }

    /// A buy's notional is checked at its limit, which a buy fills at or under — also when it closes a short: a
    /// 0.5 BTC buy at a $63,000 ceiling ($31,500) is refused in validation though it only reduces; at $61,000
    /// ($30,500, within the $31,000 cap) it closes the short.
    function test_buy_closingAShortCheckedAtTheLimit() public {
        _grant(false); // 0.5 BTC and $31,000 an order
        _send(_sessionOp(_order(BTC, -0.5e18, 59_900e18, false)));
        assertEq(_btc(), -0.5e18);
        PackedUserOperation memory op = _sessionOp(_order(BTC, 0.5e18, 63_000e18, true));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 31_500e18, 31_000e18));
        _send(op);
        assertEq(_btc(), -0.5e18);
        _send(_sessionOp(_order(BTC, 0.5e18, 61_000e18, true)));
        assertEq(_btc(), 0);
    }

    /*//////////////////////////////////////////////////////////////
                                 BREAKER
    //////////////////////////////////////////////////////////////*/

    /// The breaker measures equity: the wallet's 15,000 tUSD plus the venue value (5,000 of margin).
    function test_breaker_tripsOnDrawdownAndRearms() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxDrawdownBps = 300; // 3 % from the high-water mark
        _grantRisk(risk);
        _send(_sessionOp(_order(BTC, 0.25e18, 60_100e18, false)));
        uint64 mark = sessions.getSession(key).highWaterMark;
        assertEq(mark, 19_992.5e6, "the mark is the equity after the key's op: 15,000 + 5,000 - the 7.5 fee");

        // 60,000 -> 57,000: equity 19,242.5, below 97 % of the mark (19,392.7). The next risk-raising op is undone
        // and trips it.
        _price(57_000e18, 3_000e18);
        vm.expectEmit(true, false, false, false, address(account));
        emit ITradingAccount.SessionBreakerTripped(key, 0, 0, 0);
        assertEq(_sendAndReadRevert(_order(BTC, 0.01e18, 57_100e18, false)).length, 0, "the op completes, undone");
        assertEq(_btc(), 0.25e18);
        assertTrue(sessions.getSession(key).tripped);

        // Degraded: opening refused in validation, protective calls pass.
        PackedUserOperation memory op = _sessionOp(_order(BTC, 0.01e18, 57_100e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionProtectiveOnly.selector, key));
        _send(op);
        _send(_sessionOp(_order(BTC, -0.05e18, 56_900e18, true)));
        _send(
            _sessionOp(
                abi.encodeCall(
                    BaseAccount.execute, (address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (100e6)))
                )
            )
        );
        assertEq(_btc(), 0.2e18);

        // Only the owner re-arms it; the mark starts again.
        vm.prank(key);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, key));
        sessions.rearmSession(key);
        vm.prank(owner);
        sessions.rearmSession(key);
        assertFalse(sessions.getSession(key).tripped);
        _send(_sessionOp(_order(BTC, 0.01e18, 57_100e18, false)));
        assertEq(_btc(), 0.21e18);
    }

    /// The breaker on a short: a rise is the drawdown. 0.25 BTC short, then 60,000 -> 63,000 loses $750, more than
    /// 3 % of the mark (equity 19,992.5): the next opening order is undone and trips it.
    function test_breaker_tripsOnDrawdown_short() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxDrawdownBps = 300;
        _grantRisk(risk);
        _send(_sessionOp(_order(BTC, -0.25e18, 59_900e18, false)));
        _price(63_000e18, 3_000e18);
        assertEq(_sendAndReadRevert(_order(BTC, -0.01e18, 62_900e18, false)).length, 0, "the op completes, undone");
        assertEq(_btc(), -0.25e18);
        assertTrue(sessions.getSession(key).tripped);
        PackedUserOperation memory op = _sessionOp(_order(BTC, -0.01e18, 62_900e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionProtectiveOnly.selector, key));
        _send(op);
        _send(_sessionOp(_order(BTC, 0.05e18, 63_100e18, true)));
        assertEq(_btc(), -0.2e18, "reducing the short still goes");
    }

    /// A protective op that finds the account below the threshold trips the breaker too (and stands).
    function test_breaker_protectiveOpTripsIt() public {
        ITradingAccount.RiskLimits memory risk;
        risk.drawdownFloor = 19_800e6; // equity: 15,000 in the wallet + the venue value
        _grantRisk(risk);
        _send(_sessionOp(_order(BTC, 0.25e18, 60_100e18, false)));
        _price(58_000e18, 3_000e18); // equity 19,492.5 < 19,800
        _send(_sessionOp(_order(BTC, -0.05e18, 57_900e18, true)));
        assertEq(_btc(), 0.2e18, "the reducing order stands");
        assertTrue(sessions.getSession(key).tripped);
    }

    /// @dev The stolen key's run: it buys 0.25 BTC under a 2.5 % drawdown breaker, optionally deposits the
    /// wallet's 15,000 tUSD into margin, trades on through a fall to 58,100 (a loss of $475 from the mark:
    /// inside 2.5 %, so it may still raise risk) and tries again at 57,900 (past it: undone, and the breaker
    /// trips). Returns the equity the breaker tripped at and the venue value then.
    function _tradeDown(bool depositWallet) internal returns (int256 equity, int256 venueValue) {
        ITradingAccount.RiskLimits memory risk;
        risk.maxDrawdownBps = 250;
        _grantRisk(risk);
        _send(_sessionOp(_order(BTC, 0.25e18, 60_100e18, false)));
        if (depositWallet) {
            bytes memory deposit = abi.encodeCall(IPerpVenue.depositMargin, (15_000e6));
            _send(_sessionOp(abi.encodeCall(BaseAccount.execute, (address(venue), 0, deposit))));
            assertEq(usd.balanceOf(address(account)), 0, "the wallet is in margin");
        }
        assertEq(sessions.getSession(key).highWaterMark, 19_992.5e6, "the deposit does not move the mark");

        _price(58_100e18, 3_000e18);
        assertEq(_sendAndReadRevert(_order(BTC, 0.01e18, 58_200e18, false)).length, 0, "inside the drawdown");
        assertFalse(sessions.getSession(key).tripped);
        assertEq(_btc(), 0.26e18);

        _price(57_900e18, 3_000e18);
        _send(_sessionOp(_order(BTC, 0.01e18, 58_000e18, false)));
        assertTrue(sessions.getSession(key).tripped, "past the drawdown");
        assertEq(_btc(), 0.26e18, "the op that crossed it is undone");
        (venueValue,,,) = venue.accountRisk(address(account));
        equity = venueValue + int256(usd.balanceOf(address(account)));
    }

    /// The attack: a stolen key deposits the wallet into margin, where the breaker used not to look, and trades it
    /// down. The breaker measures equity, so it trips at the same loss with and without the deposit ($527.3 from
    /// the mark of 19,992.5, past 2.5 % = $499.8), and lets the key trade while the loss is inside it.
    function test_breaker_depositingTheWalletWidensNothing() public {
        uint256 clean = vm.snapshotState();
        (int256 equityWithout, int256 venueWithout) = _tradeDown(false);
        vm.revertToState(clean);
        (int256 equityWith, int256 venueWith) = _tradeDown(true);
        assertEq(equityWith, equityWithout, "the same equity at the trip");
        assertEq(venueWith - venueWithout, 15_000e6, "though the venue holds the wallet's 15,000 more");
        assertEq(equityWith, 19_465.209501e6);
    }

    /// A venue that cannot name its collateral token leaves the equity unknown: the op is undone with
    /// `SessionVenueUnreadable` (never counted as a drawdown), and nothing trips. Positive control: readable again,
    /// the same order goes through.
    function test_breaker_unreadableCollateralUndoesTheOp() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxDrawdownBps = 250;
        _grantRisk(risk);
        vm.mockCallRevert(address(venue), abi.encodeCall(IPerpVenue.collateralToken, ()), "");
        assertEq(
            _sendAndReadRevert(_order(BTC, 0.25e18, 60_100e18, false)),
            abi.encodeWithSelector(ITradingAccount.SessionVenueUnreadable.selector, address(venue))
        );
        assertEq(_btc(), 0);
        assertFalse(sessions.getSession(key).tripped);
        assertEq(sessions.getSession(key).highWaterMark, 0);
        vm.clearMockedCalls();
        assertEq(_sendAndReadRevert(_order(BTC, 0.25e18, 60_100e18, false)).length, 0);
        assertEq(_btc(), 0.25e18);
    }

    function test_grant_refusesFullDrawdown() public {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.risk.maxDrawdownBps = 10_000;
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.DrawdownTooLarge)
        );
        sessions.grantSession(key, scope);
    }
}
