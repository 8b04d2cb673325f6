// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {VenueTestBase} from "../VenueTestBase.sol";
import {VenueHandler} from "./VenueHandler.sol";

/// @notice No sequence of deposits, withdrawals, orders, funding, price moves and liquidations creates or
/// destroys collateral; healthy accounts are never liquidated; partial liquidations never hurt health.
contract VenueInvariantTest is VenueTestBase {
    VenueHandler internal handler;
    address[] internal everyone;

    function setUp() public override {
        super.setUp();
        address[] memory actors = new address[](4);
        actors[0] = alice;
        actors[1] = bob;
        actors[2] = makeAddr("carol");
        actors[3] = makeAddr("dave");
        _fund(actors[2], 1_000_000e6);
        _fund(actors[3], 1_000_000e6);
        handler = new VenueHandler(venue, oracle, usd, actors);
        // The handler sets funding rates, as the venue owner does.
        venue.transferOwnership(address(handler));
        targetContract(address(handler));
        for (uint256 i; i < 4; ++i) {
            everyone.push(actors[i]);
        }
        everyone.push(address(0x4EE9E2));
    }

    function invariant_collateralConserved() public view {
        _assertConserved(everyone);
    }

    function invariant_healthyNeverLiquidated() public view {
        assertEq(handler.healthyLiquidated(), 0);
    }

    function invariant_partialLiquidationNeverHurts() public view {
        assertEq(handler.partialWorsened(), 0);
    }

    /// The handler is not vacuous: it fills orders, and a crash makes liquidations happen.
    function test_handler_fillsAndLiquidates() public {
        handler.deposit(0, 4_000e6);
        handler.trade(0, 0, 1e18, false);
        assertEq(handler.fills(), 1);
        for (uint256 i; i < 3; ++i) {
            handler.movePrice(0, 0);
        }
        handler.liquidate(0, 1, 0);
        assertEq(handler.liquidations(), 1);
        _assertConserved(everyone);
    }
}
