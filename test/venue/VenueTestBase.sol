// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../../contracts/venue/SignedPriceOracle.sol";
import {TestUSD} from "../../contracts/venue/TestUSD.sol";

/// @notice A venue with BTC (0) and ETH (1) listed at IMF 5 %, MMF 3 %, fee 0.05 %, penalty 1 %, a funded
/// pool and insurance fund, and helpers that sign oracle updates with a registered key.
abstract contract VenueTestBase is Test {
    uint256 internal constant ORACLE_PK = 0x0AC1E;
    uint32 internal constant BTC = 0;
    uint32 internal constant ETH = 1;
    uint256 internal constant T0 = 1_800_000_000;

    TestUSD internal usd;
    SignedPriceOracle internal oracle;
    PerpVenue internal venue;
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal keeper = makeAddr("keeper");

    function setUp() public virtual {
        vm.warp(T0);
        usd = new TestUSD(address(this));
        oracle = new SignedPriceOracle(address(this), 60);
        oracle.setSigner(vm.addr(ORACLE_PK), true);
        venue = new PerpVenue(address(this), usd, oracle);
        venue.listMarket(BTC, _params());
        venue.listMarket(ETH, _params());
        _price(BTC, 60_000e18);
        _price(ETH, 3_000e18);
        usd.mint(address(this), 20_000_000e6);
        usd.approve(address(venue), type(uint256).max);
        venue.fundPool(10_000_000e6);
        venue.fundInsurance(10_000e6);
        _fund(alice, 1_000_000e6);
        _fund(bob, 1_000_000e6);
    }

    function _params() internal pure returns (PerpVenue.MarketParams memory p) {
        p.imf = 0.05e18;
        p.mmf = 0.03e18;
        p.takerFee = 0.0005e18;
        p.liquidationPenalty = 0.01e18;
        p.maxLimitDeviation = 0.1e18;
        p.maxPosition = 1_000e18;
        p.partialLiquidationNotional = 100_000e6;
    }

    function _fund(address who, uint256 amount) internal {
        usd.mint(who, amount);
        vm.prank(who);
        usd.approve(address(venue), type(uint256).max);
    }

    function _signedUpdate(uint32 marketId, uint256 price, uint64 publishTime, uint256 pk)
        internal
        view
        returns (SignedPriceOracle.PriceUpdate memory u, bytes memory sig)
    {
        u = SignedPriceOracle.PriceUpdate(marketId, price, publishTime);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, oracle.updateDigest(u));
        sig = abi.encodePacked(r, s, v);
    }

    /// @dev One second later, a signed price for `marketId` (others are re-published, so none goes stale).
    function _price(uint32 marketId, uint256 price) internal {
        vm.warp(block.timestamp + 1);
        (SignedPriceOracle.PriceUpdate memory u, bytes memory sig) =
            _signedUpdate(marketId, price, uint64(block.timestamp), ORACLE_PK);
        oracle.submit(u, sig);
        for (uint32 id; id < 2; ++id) {
            if (id == marketId) continue;
            (uint256 last, uint64 at) = oracle.lastPrice(id);
            if (last != 0 && at < block.timestamp) {
                (u, sig) = _signedUpdate(id, last, uint64(block.timestamp), ORACLE_PK);
                oracle.submit(u, sig);
            }
        }
    }

    function _deposit(address who, uint256 amount) internal {
        vm.prank(who);
        venue.depositMargin(amount);
    }

    function _trade(address who, uint32 marketId, int256 size, uint256 limit) internal {
        vm.prank(who);
        venue.placeOrder(marketId, size, limit, false);
    }

    /// @dev Σ internal balances == tokens held == deposits - withdrawals, to the unit.
    function _assertConserved(address[] memory accounts) internal view {
        int256 sum = venue.pool() + int256(venue.insuranceFund()) + int256(venue.feesCollected());
        for (uint256 i; i < accounts.length; ++i) {
            sum += venue.collateralOf(accounts[i]);
        }
        assertEq(sum, int256(usd.balanceOf(address(venue))), "internal balances == tokens held");
        assertEq(
            usd.balanceOf(address(venue)), venue.totalDeposits() - venue.totalWithdrawals(), "tokens == net deposits"
        );
    }
}
