// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "../orders/OrderTestBase.sol";

/// @notice Gas of settling signed-order fills with every on-chain check (both signatures, both keys' scopes with
/// rate and uses counters, leverage limit and drawdown breaker on the maker's key), in batches of 1, 16 and 64
/// fills, each fill a fresh maker order against a fresh taker order: `settle_N` is the batch, `perFill_N` the
/// batch over N. Written to snapshots/signed-orders.json (committed). Reproduce: `make gas`.
contract SignedOrderGasTest is OrderTestBase {
    function setUp() public override {
        super.setUp();
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.rateCount = 1000;
        scope.ratePeriod = 60;
        scope.maxUses = 100_000;
        scope.risk.maxLeverage = 500;
        scope.risk.maxDrawdownBps = 2_000;
        _grantMaker(scope);
        // One fill first, so both accounts hold a position and every counter word exists (the steady state of a
        // quoting key).
        _settleBatch(1, "");
    }

    /// @dev `n` fills of 0.001 BTC, the maker alternately selling and buying at the oracle price.
    function _settleBatch(uint256 n, string memory name) internal {
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](n);
        for (uint256 i; i < n; ++i) {
            bool makerBuys = i % 2 == 1;
            SignedOrder.Order memory m = _makerOrder(makerBuys, 0.001e18, 60_000e18);
            SignedOrder.Order memory t = _takerOrder(!makerBuys, 0.001e18, 60_000e18);
            fills[i] = _fill(m, t, 0.001e18);
        }
        venue.settle(fills);
        if (bytes(name).length != 0) {
            uint256 used = vm.snapshotGasLastCall("signed-orders", string.concat("settle_", name));
            vm.snapshotValue("signed-orders", string.concat("perFill_", name), used / n);
        }
    }

    function test_gas_settle_1() public {
        _settleBatch(1, "1");
    }

    function test_gas_settle_16() public {
        _settleBatch(16, "16");
    }

    function test_gas_settle_64() public {
        _settleBatch(64, "64");
    }
}
