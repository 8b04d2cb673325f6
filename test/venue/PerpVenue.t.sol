// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../../contracts/venue/SignedPriceOracle.sol";
import {VenueTestBase} from "./VenueTestBase.sol";

/// @notice Every formula against numbers computed by hand in the comments (quote = 6-decimal USD).
contract PerpVenueTest is VenueTestBase {
    /*//////////////////////////////////////////////////////////////
                           DEPOSIT AND WITHDRAW
    //////////////////////////////////////////////////////////////*/

    function test_deposit_creditsCollateral() public {
        _deposit(alice, 5_000e6);
        assertEq(venue.collateralOf(alice), 5_000e6);
        assertEq(usd.balanceOf(alice), 995_000e6);
    }

    function test_deposit_zeroRefused() public {
        vm.prank(alice);
        vm.expectRevert(PerpVenue.ZeroAmount.selector);
        venue.depositMargin(0);
    }

    function test_withdraw_returnsTokens() public {
        _deposit(alice, 5_000e6);
        vm.prank(alice);
        venue.withdrawMargin(2_000e6);
        assertEq(venue.collateralOf(alice), 3_000e6);
        assertEq(usd.balanceOf(alice), 997_000e6);
    }

    function test_withdraw_moreThanCollateralRefused() public {
        _deposit(alice, 5_000e6);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.InsufficientCollateral.selector, int256(5_000e6), 5_001e6));
        venue.withdrawMargin(5_001e6);
    }

    function test_withdraw_mustKeepInitialMargin() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_100e18);
        // Collateral 4,970 (fee 30); IMR 3,000 + 1 reserve = 3,001: 1,969 can leave, 1,970 cannot.
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.InsufficientMargin.selector, int256(3_000e6), 3_001e6));
        venue.withdrawMargin(1_970e6);
        vm.prank(alice);
        venue.withdrawMargin(1_969e6);
        assertEq(venue.collateralOf(alice), 3_001e6);
    }

    /*//////////////////////////////////////////////////////////////
                                 ORDERS
    //////////////////////////////////////////////////////////////*/

    function test_order_feeAndRequirements() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_100e18);
        // N = 1 x 60,000 = 60,000; fee 0.05 % = 30; IMR 5 % = 3,000; MMR 3 % = 1,800; AV = 5,000 - 30.
        (int256 av, uint256 imr, uint256 mmr, PerpVenue.AccountState state) = venue.health(alice);
        assertEq(av, 4_970e6);
        assertEq(imr, 3_000e6);
        assertEq(mmr, 1_800e6);
        assertEq(uint8(state), uint8(PerpVenue.AccountState.Healthy));
        assertEq(venue.feesCollected(), 30e6);
        PerpVenue.Position memory p = venue.position(alice, BTC);
        assertEq(p.size, 1e18);
        assertEq(p.entryPrice, 60_000e18);
    }

    function test_order_limitNotMet() public {
        _deposit(alice, 5_000e6);
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.LimitPriceNotMet.selector, 60_000e18, 59_999e18));
        venue.placeOrder(BTC, 1e18, 59_999e18, false);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.LimitPriceNotMet.selector, 60_000e18, 60_001e18));
        venue.placeOrder(BTC, -1e18, 60_001e18, false);
        vm.stopPrank();
    }

    function test_order_limitOutsideBand() public {
        _deposit(alice, 5_000e6);
        vm.startPrank(alice);
        // The band is 10 %: a buy may not carry a limit above 66,000, a sell not below 54,000.
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.LimitPriceOutsideBand.selector, 60_000e18, 66_001e18));
        venue.placeOrder(BTC, 1e18, 66_001e18, false);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.LimitPriceOutsideBand.selector, 60_000e18, 53_999e18));
        venue.placeOrder(BTC, -1e18, 53_999e18, false);
        venue.placeOrder(BTC, 1e18, 66_000e18, false);
        vm.stopPrank();
    }

    function test_order_insufficientMargin() public {
        _deposit(alice, 3_000e6);
        // AV 2,970 after the fee < IMR 3,000 + reserve 1.
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.InsufficientMargin.selector, int256(2_970e6), 3_001e6));
        venue.placeOrder(BTC, 1e18, 60_000e18, false);
    }

    function test_order_reduceOnly() public {
        _deposit(alice, 10_000e6);
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.ReduceOnlyViolation.selector, int256(0), int256(-1e18)));
        venue.placeOrder(BTC, -1e18, 60_000e18, true);
        venue.placeOrder(BTC, 1e18, 60_000e18, false);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.ReduceOnlyViolation.selector, int256(1e18), int256(-2e18)));
        venue.placeOrder(BTC, -2e18, 60_000e18, true);
        venue.placeOrder(BTC, -0.4e18, 60_000e18, true);
        vm.stopPrank();
        assertEq(venue.position(alice, BTC).size, 0.6e18);
    }

    function test_order_maxPosition() public {
        _deposit(alice, 1_000_000e6);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.MaxPositionExceeded.selector, int256(1_001e18), 1_000e18));
        venue.placeOrder(ETH, 1_001e18, 3_000e18, false);
    }

    function test_order_realisedPnl() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 61_000e18);
        vm.prank(alice);
        venue.placeOrder(BTC, -1e18, 60_900e18, true);
        // 5,000 - 30 (fee) + 1,000 (PnL) - 30.5 (fee at 61,000).
        assertEq(venue.collateralOf(alice), 5_939.5e6);
        assertEq(venue.pool(), 10_000_000e6 - 1_000e6);
        assertEq(venue.openMarkets(alice), 0);
    }

    function test_order_averageEntry() public {
        _deposit(alice, 20_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 62_000e18);
        _trade(alice, BTC, 1e18, 62_000e18);
        assertEq(venue.position(alice, BTC).entryPrice, 61_000e18);
    }

    function test_order_flipRealisesThenReopens() public {
        _deposit(alice, 20_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 61_000e18);
        _trade(alice, BTC, -3e18, 61_000e18);
        PerpVenue.Position memory p = venue.position(alice, BTC);
        assertEq(p.size, -2e18);
        assertEq(p.entryPrice, 61_000e18);
        // 20,000 - 30 + 1,000 - 91.5 (fee on 3 x 61,000).
        assertEq(venue.collateralOf(alice), 20_878.5e6);
    }

    function test_cancelOrder_nothingRests() public {
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.OrderNotCancellable.selector, 7));
        venue.cancelOrder(BTC, 7);
    }

    function test_order_unlistedMarket() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.MarketNotListed.selector, 9));
        venue.placeOrder(9, 1e18, 1e18, false);
    }

    /*//////////////////////////////////////////////////////////////
                             ACCOUNT STATES
    //////////////////////////////////////////////////////////////*/

    function test_states_marginCallOncePerCrossing() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        // At 58,000: AV = 4,970 - 2,000 = 2,970 >= IMR 2,900: still healthy.
        _price(BTC, 58_000e18);
        assertEq(uint8(venue.poke(alice)), uint8(PerpVenue.AccountState.Healthy));
        // At 57,900: AV = 2,870 < IMR 2,895, >= MMR 1,737: margin call, announced once.
        _price(BTC, 57_900e18);
        vm.expectEmit(true, false, false, true, address(venue));
        emit PerpVenue.MarginCall(alice, 2_870e6, 2_895e6, 1_737e6);
        venue.poke(alice);
        vm.recordLogs();
        venue.poke(alice);
        assertEq(vm.getRecordedLogs().length, 0, "no second margin call without a new crossing");
    }

    function test_states_marginCallAllowsDepositAndReduceOnly() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 57_900e18);
        vm.startPrank(alice);
        // Adding 0.1 at 57,900: fee 2.895, so AV = 2,870 - 2.895 = 2,867.105 (+1 unit: the averaged entry
        // price rounds down); IMR = 5 % x 1.1 x 57,900 = 3,184.5, plus the 1 USD reserve.
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InsufficientMargin.selector, int256(2_867.105001e6), 3_185.5e6)
        );
        venue.placeOrder(BTC, 0.1e18, 58_000e18, false);
        venue.placeOrder(BTC, -0.5e18, 57_800e18, true);
        venue.depositMargin(1_000e6);
        vm.stopPrank();
        assertEq(uint8(venue.lastState(alice)), uint8(PerpVenue.AccountState.Healthy));
    }

    function test_states_liquidatableAndBankrupt() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        // At 56,700: AV = 1,670 < MMR 1,701.
        _price(BTC, 56_700e18);
        assertEq(uint8(venue.poke(alice)), uint8(PerpVenue.AccountState.Liquidatable));
        // At 54,000: AV = -1,030.
        _price(BTC, 54_000e18);
        assertEq(uint8(venue.poke(alice)), uint8(PerpVenue.AccountState.Bankrupt));
    }

    function test_portfolio_view() public {
        _deposit(alice, 10_000e6);
        _trade(alice, BTC, 0.1e18, 60_000e18);
        _trade(alice, ETH, -2e18, 3_000e18);
        _price(ETH, 2_900e18);
        PerpVenue.Portfolio memory pf = venue.portfolio(alice);
        assertEq(pf.positions.length, 2);
        assertEq(pf.positions[0].marketId, BTC);
        assertEq(pf.positions[1].marketId, ETH);
        assertEq(pf.positions[1].unrealisedPnl, 200e6);
        assertEq(pf.positions[1].notional, 5_800e6);
        // Fees: 3 (BTC) + 3 (ETH); AV = 10,000 - 6 + 200.
        assertEq(pf.accountValue, 10_194e6);
        // IMR = 5 % x (6,000 + 5,800) = 590; MMR = 3 % x 11,800 = 354.
        assertEq(pf.initialMargin, 590e6);
        assertEq(pf.maintenanceMargin, 354e6);
    }

    /*//////////////////////////////////////////////////////////////
                               LIQUIDATION
    //////////////////////////////////////////////////////////////*/

    function test_liquidate_healthyRefused() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.NotLiquidatable.selector, int256(4_970e6), 1_800e6));
        venue.liquidate(alice, BTC);
    }

    function test_liquidate_full() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 56_700e18);
        vm.prank(keeper);
        venue.liquidate(alice, BTC);
        // Realised -3,300; penalty 1 % x 56,700 = 567 to the keeper (within [1, 1,000]).
        assertEq(venue.collateralOf(alice), 4_970e6 - 3_300e6 - 567e6);
        assertEq(venue.collateralOf(keeper), 567e6);
        assertEq(venue.insuranceFund(), 10_000e6);
        assertEq(venue.position(alice, BTC).size, 0);
        assertEq(uint8(venue.lastState(alice)), uint8(PerpVenue.AccountState.Healthy));
    }

    function test_liquidate_partialImprovesHealth() public {
        _deposit(alice, 8_000e6);
        _trade(alice, BTC, 2e18, 60_000e18);
        _price(BTC, 57_000e18);
        (int256 avBefore,, uint256 mmrBefore,) = venue.health(alice);
        // AV = 7,940 - 6,000 = 1,940 < MMR 3,420; notional 114,000 > 100,000: a quarter closes.
        assertEq(avBefore, 1_940e6);
        vm.prank(keeper);
        venue.liquidate(alice, BTC);
        assertEq(venue.position(alice, BTC).size, 1.5e18);
        // Realised -1,500 on 0.5; penalty 1 % x 28,500 = 285.
        assertEq(venue.collateralOf(alice), 7_940e6 - 1_500e6 - 285e6);
        (int256 avAfter,, uint256 mmrAfter,) = venue.health(alice);
        assertEq(avAfter, 1_655e6);
        assertEq(mmrAfter, 2_565e6);
        assertGt(avAfter - int256(mmrAfter), avBefore - int256(mmrBefore), "health improved");
    }

    function test_liquidate_bankruptCoveredByInsurance() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 54_000e18);
        vm.prank(keeper);
        venue.liquidate(alice, BTC);
        // Collateral after the fill: 4,970 - 6,000 = -1,030. Nothing left to pay the 540 reward, so the
        // insurance fund pays it and then covers the 1,030 shortfall: 10,000 - 540 - 1,030 = 8,430.
        assertEq(venue.collateralOf(keeper), 540e6);
        assertEq(venue.collateralOf(alice), 0);
        assertEq(venue.insuranceFund(), 8_430e6);
        assertEq(venue.badDebt(), 0);
    }

    /// An account already below zero pays no penalty out of collateral its open losses have claimed: the
    /// keeper's reward comes from the insurance fund, which never rises on a bankruptcy.
    function test_liquidate_bankruptPaysNoPenaltyFromClaimedCollateral() public {
        _deposit(alice, 40_000e6);
        _trade(alice, BTC, 10e18, 60_000e18);
        _price(BTC, 55_000e18);
        (int256 av,,,) = venue.health(alice);
        // 39,700 after the fee, -50,000 open: AV -10,300.
        assertEq(av, -10_300e6);
        uint256 insurance = venue.insuranceFund();
        vm.prank(keeper);
        venue.liquidate(alice, BTC);
        assertEq(venue.position(alice, BTC).size, 7.5e18, "a quarter closes");
        // The fill realises -12,500 on 2.5 BTC: 27,200 left, all of it owed to the open losses; the 1,375
        // penalty is not charged, and the keeper's 1,000 (the maximum reward) comes from the fund.
        assertEq(venue.collateralOf(alice), 27_200e6);
        assertEq(venue.collateralOf(keeper), 1_000e6);
        assertEq(venue.insuranceFund(), insurance - 1_000e6);
        (int256 avAfter,,,) = venue.health(alice);
        assertEq(avAfter, av, "the shortfall is not deepened by a penalty");
        address[] memory accounts = new address[](3);
        (accounts[0], accounts[1], accounts[2]) = (alice, bob, keeper);
        _assertConserved(accounts);
    }

    function test_liquidate_badDebtWhenInsuranceRunsDry() public {
        PerpVenue.MarketParams memory p = _params();
        p.partialLiquidationNotional = type(uint128).max;
        venue.listMarket(2, p);
        _price(2, 1_000e18);
        _deposit(alice, 26_000e6);
        _trade(alice, 2, 500e18, 1_000e18);
        _price(2, 900e18);
        vm.prank(keeper);
        venue.liquidate(alice, 2);
        // Fee 250; fill realises -50,000: collateral -24,250. Reward = clamp(4,500) = 1,000 from insurance
        // (10,000 -> 9,000); the shortfall 24,250 takes the other 9,000 and leaves 15,250 of bad debt.
        assertEq(venue.collateralOf(keeper), 1_000e6);
        assertEq(venue.insuranceFund(), 0);
        assertEq(venue.badDebt(), 15_250e6);
        assertEq(venue.pool(), int256(10_000_000e6 + 50_000e6 - 15_250e6));
        address[] memory accounts = new address[](3);
        (accounts[0], accounts[1], accounts[2]) = (alice, bob, keeper);
        _assertConserved(accounts);
    }

    function test_liquidate_selfRefused() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 56_700e18);
        vm.prank(alice);
        vm.expectRevert(PerpVenue.SelfLiquidation.selector);
        venue.liquidate(alice, BTC);
    }

    /// Self-liquidation from a second address cannot turn a loss into a profit, even on dust.
    function test_liquidate_selfFromSecondAddressGainsNothing() public {
        address alt = makeAddr("alice-alt");
        // The smallest position the venue lets alice open: 0.0001 BTC (6 USD), IMR 0.30 + reserve 1.
        uint256 deposit = 1.303e6;
        _deposit(alice, deposit);
        _trade(alice, BTC, 0.0001e18, 60_000e18);
        _price(BTC, 40_000e18);
        vm.prank(alt);
        venue.liquidate(alice, BTC);
        uint256 afterwards = uint256(venue.collateralOf(alice)) + uint256(venue.collateralOf(alt));
        assertLt(afterwards, deposit, "the two addresses end with less than was put in");
    }

    function test_liquidate_stalePriceRefused() public {
        _deposit(alice, 5_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _price(BTC, 56_700e18);
        vm.warp(block.timestamp + 61);
        vm.prank(keeper);
        vm.expectPartialRevert(SignedPriceOracle.StalePrice.selector);
        venue.liquidate(alice, BTC);
    }

    /*//////////////////////////////////////////////////////////////
                                 FUNDING
    //////////////////////////////////////////////////////////////*/

    function test_funding_longsPayShorts() public {
        venue.setFundingRate(BTC, 2e10);
        _deposit(alice, 10_000e6);
        _deposit(bob, 10_000e6);
        _trade(alice, BTC, 1e18, 60_000e18);
        _trade(bob, BTC, -1e18, 60_000e18);
        uint256 opened = block.timestamp;
        vm.warp(opened + 3_599);
        _price(BTC, 60_000e18);
        // One hour at 2e10/s x 60,000: the index grows 4.32 USD per BTC.
        assertEq(venue.portfolio(alice).positions[0].fundingOwed, 4.32e6);
        assertEq(venue.portfolio(bob).positions[0].fundingOwed, -4.32e6);
        vm.prank(alice);
        venue.placeOrder(BTC, -1e18, 60_000e18, true);
        // 10,000 - 30 (open) - 4.32 (funding) - 30 (close).
        assertEq(venue.collateralOf(alice), 9_935.68e6);
    }

    function test_funding_rateClamped() public {
        int256 max = venue.MAX_FUNDING_RATE();
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.FundingRateTooHigh.selector, max + 1));
        venue.setFundingRate(BTC, max + 1);
        venue.setFundingRate(BTC, -max);
    }

    function test_admin_onlyOwner() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSignature("OwnableUnauthorizedAccount(address)", alice));
        venue.setFundingRate(BTC, 1);
    }

    function test_listMarket_refusesUnsafeParams() public {
        PerpVenue.MarketParams memory p = _params();
        p.liquidationPenalty = 0.03e18;
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.PenaltyNotBelowMmf)
        );
        venue.listMarket(3, p);
        p = _params();
        p.mmf = 0.05e18;
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.MarginFractions)
        );
        venue.listMarket(3, p);
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.MarketIdTooLarge)
        );
        venue.listMarket(64, _params());
        p = _params();
        p.takerFee = p.mmf;
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.FeeNotBelowMmf)
        );
        venue.listMarket(3, p);
        p = _params();
        p.maxLimitDeviation = 0;
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.LimitDeviation)
        );
        venue.listMarket(3, p);
        p = _params();
        p.maxPosition = 0;
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.ZeroMaxPosition)
        );
        venue.listMarket(3, p);
        vm.expectRevert(
            abi.encodeWithSelector(PerpVenue.InvalidMarketParams.selector, PerpVenue.ParamFault.RewardBounds)
        );
        venue.setLiquidationRewards(2, 1);
        // The same key's legitimate change goes through.
        venue.listMarket(3, _params());
        assertTrue(venue.market(3).listed);
    }
}
