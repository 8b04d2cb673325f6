// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

import {PerpVenue} from "../../../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../../../contracts/venue/SignedPriceOracle.sol";
import {TestUSD} from "../../../contracts/venue/TestUSD.sol";

/// @notice Invariant handler: traders deposit, withdraw and trade, prices walk and crash, funding accrues,
/// keepers liquidate. Ghosts record a liquidation of a healthy account or a partial one that hurt health.
contract VenueHandler is CommonBase, StdUtils {
    uint256 internal constant ORACLE_PK = 0x0AC1E;

    PerpVenue public immutable venue;
    SignedPriceOracle public immutable oracle;
    TestUSD public immutable usd;
    address[] public actors;

    uint256 public healthyLiquidated;
    uint256 public partialWorsened;
    uint256 public liquidations;
    uint256 public fills;

    constructor(PerpVenue venue_, SignedPriceOracle oracle_, TestUSD usd_, address[] memory actors_) {
        venue = venue_;
        oracle = oracle_;
        usd = usd_;
        actors = actors_;
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function deposit(uint256 who, uint256 amount) external {
        address a = _actor(who);
        amount = bound(amount, 1, 50_000e6);
        vm.prank(a);
        venue.depositMargin(amount);
    }

    function withdraw(uint256 who, uint256 amount) external {
        address a = _actor(who);
        int256 c = venue.collateralOf(a);
        if (c <= 0) return;
        amount = bound(amount, 1, uint256(c));
        vm.prank(a);
        try venue.withdrawMargin(amount) {} catch {}
    }

    function trade(uint256 who, uint256 marketSeed, int256 size, bool reduceOnly) external {
        address a = _actor(who);
        uint32 m = uint32(marketSeed % 2);
        size = bound(size, -20e18, 20e18);
        if (size == 0) return;
        (uint256 price,) = oracle.lastPrice(m);
        uint256 limit = size > 0 ? price * 101 / 100 : price * 99 / 100;
        vm.prank(a);
        try venue.placeOrder(m, size, limit, reduceOnly) {
            fills += 1;
        } catch {}
    }

    /// Moves one market's price by -15 %..+8 % (crashes more likely than rallies) and republishes both.
    function movePrice(uint256 marketSeed, uint256 move) external {
        uint32 m = uint32(marketSeed % 2);
        (uint256 price,) = oracle.lastPrice(m);
        uint256 bps = bound(move, 8_500, 10_800);
        _publish(m, price * bps / 10_000);
    }

    function fundAndWait(uint256 marketSeed, int256 rate, uint256 dt) external {
        uint32 m = uint32(marketSeed % 2);
        int256 max = venue.MAX_FUNDING_RATE();
        venue.setFundingRate(m, bound(rate, -max, max));
        vm.warp(block.timestamp + bound(dt, 1, 50));
        _publish(m, 0);
    }

    function liquidate(uint256 who, uint256 keeperSeed, uint256 marketSeed) external {
        address a = _actor(who);
        address keeper = _actor(keeperSeed);
        if (keeper == a) keeper = address(0x4EE9E2);
        uint32 m = uint32(marketSeed % 2);
        (int256 av,, uint256 mmr,) = venue.health(a);
        int256 sizeBefore = venue.position(a, m).size;
        vm.prank(keeper);
        try venue.liquidate(a, m) {
            liquidations += 1;
            if (av >= int256(mmr)) healthyLiquidated += 1;
            int256 sizeAfter = venue.position(a, m).size;
            if (sizeAfter != 0 && sizeBefore != 0) {
                (int256 av2,, uint256 mmr2,) = venue.health(a);
                if (av2 - int256(mmr2) < av - int256(mmr)) partialWorsened += 1;
            }
        } catch {}
    }

    function poke(uint256 who) external {
        venue.poke(_actor(who));
    }

    /// @dev Publishes `price` for `m` (0: keep) and refreshes the other market, one second later.
    function _publish(uint32 m, uint256 price) internal {
        vm.warp(block.timestamp + 1);
        for (uint32 id; id < 2; ++id) {
            (uint256 last,) = oracle.lastPrice(id);
            uint256 p = id == m && price != 0 ? price : last;
            SignedPriceOracle.PriceUpdate memory u = SignedPriceOracle.PriceUpdate(id, p, uint64(block.timestamp));
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(ORACLE_PK, oracle.updateDigest(u));
            oracle.submit(u, abi.encodePacked(r, s, v));
        }
    }
}
