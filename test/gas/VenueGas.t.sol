// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SignedPriceOracle} from "../../contracts/venue/SignedPriceOracle.sol";
import {VenueTestBase} from "../venue/VenueTestBase.sol";

/// @notice Gas of the venue's main calls, written to snapshots/venue.json (committed). Reproduce: `make gas`.
contract VenueGasTest is VenueTestBase {
    function test_gas_deposit() public {
        _deposit(alice, 1_000e6);
        vm.prank(alice);
        venue.depositMargin(5_000e6);
        vm.snapshotGasLastCall("venue", "depositMargin");
    }

    function test_gas_placeOrder() public {
        _deposit(alice, 10_000e6);
        _trade(alice, BTC, 0.1e18, 60_000e18);
        vm.prank(alice);
        venue.placeOrder(BTC, 0.1e18, 60_000e18, false);
        vm.snapshotGasLastCall("venue", "placeOrder_addToPosition");
        vm.prank(alice);
        venue.placeOrder(BTC, -0.2e18, 60_000e18, true);
        vm.snapshotGasLastCall("venue", "placeOrder_close");
    }

    function test_gas_liquidate() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 56_700e18);
        vm.prank(keeper);
        venue.liquidate(alice, BTC);
        vm.snapshotGasLastCall("venue", "liquidate_full");
    }

    function test_gas_oracleUpdate() public {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 61_000e18, uint64(block.timestamp), ORACLE_PK);
        oracle.submit(u, sig);
        vm.snapshotGasLastCall("venue", "oracleSubmit");
    }
}
