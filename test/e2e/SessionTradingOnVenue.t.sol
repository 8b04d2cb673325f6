// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {VenueSessionBase} from "../utils/VenueSessionBase.sol";

/// @notice End to end: a TradingAccount on the canonical EntryPoint, trading on the real venue through a
/// session key scoped to it.
contract SessionTradingOnVenueTest is VenueSessionBase {
    /*//////////////////////////////////////////////////////////////
                                  TESTS
    //////////////////////////////////////////////////////////////*/

    function test_session_tradesOnVenue() public {
        _grant(false);
        _send(_sessionOp(_order(BTC, 0.5e18, 60_100e18, false)));
        PerpVenue.Position memory p = venue.position(address(account), BTC);
        assertEq(p.size, 0.5e18);
        assertEq(p.entryPrice, 60_000e18);
        // 5,000 deposited - 15 fee.
        assertEq(venue.collateralOf(address(account)), 4_985e6);
    }

    function test_session_refusedOutsideMarkets() public {
        _grant(false);
        PackedUserOperation memory op = _sessionOp(_order(ETH, 0.1e18, 3_010e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, ETH));
        _send(op);
    }

    function test_session_refusedOverSize() public {
        _grant(false);
        PackedUserOperation memory op = _sessionOp(_order(BTC, 0.6e18, 60_100e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionOrderTooLarge.selector, 0.6e18, 0.5e18));
        _send(op);
    }

    function test_session_refusedOverNotional() public {
        _grant(false);
        // 0.5 x 62,100 = 31,050 > 31,000; the venue's band would accept the limit, the scope does not.
        PackedUserOperation memory op = _sessionOp(_order(BTC, 0.5e18, 62_100e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 31_050e18, 31_000e18));
        _send(op);
    }

    function test_session_refusedAnyWithdraw() public {
        _grant(false);
        bytes memory cd =
            abi.encodeCall(BaseAccount.execute, (address(venue), 0, abi.encodeCall(IPerpVenue.withdrawMargin, (1e6))));
        PackedUserOperation memory op = _sessionOp(cd);
        _expectRefused(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(venue), IPerpVenue.withdrawMargin.selector
            )
        );
        _send(op);
        assertEq(venue.collateralOf(address(account)), 5_000e6);
    }

    function test_reduceOnlyKey_canOnlyShrink() public {
        _ownerOp(_order(BTC, 1e18, 60_100e18, false));
        _grant(true);
        PackedUserOperation memory grow = _sessionOp(_order(BTC, 0.1e18, 60_100e18, false));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionReduceOnlyRequired.selector));
        _send(grow);
        // Flagged reduce-only but adding to the long: it validates, and the venue refuses it at execution.
        vm.recordLogs();
        _send(_sessionOp(_order(BTC, 0.1e18, 60_100e18, true)));
        assertTrue(_sawRevertReason(), "the venue refused the growing order");
        assertEq(venue.position(address(account), BTC).size, 1e18);
        _send(_sessionOp(_order(BTC, -0.4e18, 59_900e18, true)));
        assertEq(venue.position(address(account), BTC).size, 0.6e18);
    }

    function test_marginCall_sessionKeyAddsCollateralAndReduces() public {
        _ownerOp(_order(BTC, 1e18, 60_100e18, false));
        _grant(true);
        // At 57,500: AV = 4,970 - 2,500 = 2,470 < IMR 2,875 and >= MMR 1,725.
        _price(57_500e18, 3_000e18);
        venue.poke(address(account));
        assertEq(uint8(venue.lastState(address(account))), uint8(PerpVenue.AccountState.MarginCall));
        bytes memory deposit =
            abi.encodeCall(BaseAccount.execute, (address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (300e6))));
        _send(_sessionOp(deposit));
        _send(_sessionOp(_order(BTC, -0.2e18, 57_400e18, true)));
        assertEq(uint8(venue.lastState(address(account))), uint8(PerpVenue.AccountState.Healthy));
        assertEq(venue.position(address(account), BTC).size, 0.8e18);
    }

    function test_selfLiquidationThroughSessionKey_gainsNothing() public {
        _ownerOp(_order(BTC, 1e18, 60_100e18, false));
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[1].selector = PerpVenue.liquidate.selector;
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute, (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, scope)))
            )
        );
        _price(56_700e18, 3_000e18);
        int256 before = venue.collateralOf(address(account));
        bytes memory cd = abi.encodeCall(
            BaseAccount.execute, (address(venue), 0, abi.encodeCall(PerpVenue.liquidate, (address(account), BTC)))
        );
        vm.recordLogs();
        _send(_sessionOp(cd));
        assertTrue(_sawRevertReason(), "the venue refuses self-liquidation");
        assertEq(venue.collateralOf(address(account)), before);
        assertEq(venue.position(address(account), BTC).size, 1e18);
    }
}
