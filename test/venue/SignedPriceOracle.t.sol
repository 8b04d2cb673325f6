// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SignedPriceOracle} from "../../contracts/venue/SignedPriceOracle.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {VenueTestBase} from "./VenueTestBase.sol";

/// @notice Signed price updates: who may sign, what is refused, and how trading reacts to stale prices.
contract SignedPriceOracleTest is VenueTestBase {
    function test_submit_anyoneRelaysSignedUpdate() public {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 61_000e18, uint64(block.timestamp), ORACLE_PK);
        vm.prank(makeAddr("relayer"));
        oracle.submit(u, sig);
        (uint256 price, uint64 at) = oracle.freshPrice(BTC);
        assertEq(price, 61_000e18);
        assertEq(at, block.timestamp);
    }

    function test_submit_unregisteredSignerRefused() public {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 1e18, uint64(block.timestamp), 0xBAD);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.UnknownSigner.selector, vm.addr(0xBAD)));
        oracle.submit(u, sig);
    }

    function test_submit_alteredUpdateRefused() public {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 61_000e18, uint64(block.timestamp), ORACLE_PK);
        u.price = 1e18;
        vm.expectPartialRevert(SignedPriceOracle.UnknownSigner.selector);
        oracle.submit(u, sig);
    }

    function test_submit_unsignedRefused() public {
        vm.warp(block.timestamp + 1);
        SignedPriceOracle.PriceUpdate memory u = SignedPriceOracle.PriceUpdate(BTC, 61_000e18, uint64(block.timestamp));
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.UnknownSigner.selector, address(0)));
        oracle.submit(u, "");
    }

    function test_submit_zeroPriceRefused() public {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 0, uint64(block.timestamp), ORACLE_PK);
        vm.expectRevert(SignedPriceOracle.ZeroPrice.selector);
        oracle.submit(u, sig);
    }

    function test_submit_staleRefused() public {
        vm.warp(block.timestamp + 100);
        uint64 old = uint64(block.timestamp - 61);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) = _signedUpdate(BTC, 61_000e18, old, ORACLE_PK);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.StaleUpdate.selector, old, block.timestamp));
        oracle.submit(u, sig);
    }

    function test_submit_futureRefused() public {
        uint64 ahead = uint64(block.timestamp + 16);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) = _signedUpdate(BTC, 61_000e18, ahead, ORACLE_PK);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.FutureUpdate.selector, ahead, block.timestamp));
        oracle.submit(u, sig);
    }

    function test_submit_nonMonotonicRefused() public {
        (, uint64 latest) = oracle.lastPrice(BTC);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) = _signedUpdate(BTC, 61_000e18, latest, ORACLE_PK);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.NonMonotonicUpdate.selector, latest, latest));
        oracle.submit(u, sig);
    }

    function test_trading_refusesStalePrice() public {
        _deposit(alice, 5_000e6);
        vm.warp(block.timestamp + 61);
        vm.prank(alice);
        vm.expectPartialRevert(SignedPriceOracle.StalePrice.selector);
        venue.placeOrder(BTC, 1e18, 60_000e18, false);
    }

    function test_trading_refusesMissingPrice() public {
        venue.listMarket(5, _params());
        _deposit(alice, 5_000e6);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.NoPrice.selector, 5));
        venue.placeOrder(5, 1e18, 60_000e18, false);
    }

    function test_signers_onlyOwnerManages() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSignature("OwnableUnauthorizedAccount(address)", alice));
        oracle.setSigner(alice, true);
        oracle.setSigner(vm.addr(ORACLE_PK), false);
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(BTC, 61_000e18, uint64(block.timestamp), ORACLE_PK);
        vm.expectRevert(abi.encodeWithSelector(SignedPriceOracle.UnknownSigner.selector, vm.addr(ORACLE_PK)));
        oracle.submit(u, sig);
    }

    function test_testUsd_onlyOwnerMints() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSignature("OwnableUnauthorizedAccount(address)", alice));
        usd.mint(alice, 1);
        assertEq(usd.decimals(), 6);
    }
}
