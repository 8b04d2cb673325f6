// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {VenueSessionBase} from "../utils/VenueSessionBase.sol";

/// @notice Gas of whole `handleOps` calls placing one order on the real venue, owner op beside session ops with
/// the money limits: the fee budget alone, then the post-execution limits (which read the venue), then the
/// drawdown breaker. Written to snapshots/session-limits.json. Reproduce: `make gas`.
/// Each figure is the second op of its kind (an EntryPoint deposit and a used nonce lane, as in AccountGas).
contract SessionLimitsGasTest is VenueSessionBase {
    function _grantWith(ITradingAccount.RiskLimits memory risk) internal {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.risk = risk;
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute, (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, scope)))
            )
        );
    }

    function _measure(string memory name) internal {
        _send(_sessionOp(_order(BTC, 0.01e18, 60_100e18, false)));
        _send(_sessionOp(_order(BTC, 0.01e18, 60_100e18, false)));
        vm.snapshotGasLastCall("session-limits", name);
        assertEq(venue.position(address(account), BTC).size, 0.02e18);
    }

    function test_gas_ownerOrder() public {
        _ownerOp(_order(BTC, 0.01e18, 60_100e18, false));
        _ownerOp(_order(BTC, 0.01e18, 60_100e18, false));
        vm.snapshotGasLastCall("session-limits", "ownerOrder");
        assertEq(venue.position(address(account), BTC).size, 0.02e18);
    }

    function test_gas_sessionOrderFeeBudget() public {
        ITradingAccount.RiskLimits memory none;
        _grantWith(none);
        _measure("sessionOrder_feeBudget");
    }

    function test_gas_sessionOrderRiskLimits() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        risk.maxPositionNotional = 20_000e6;
        risk.minHeadroomBps = 5_000;
        _grantWith(risk);
        _measure("sessionOrder_riskLimits");
    }

    function test_gas_sessionOrderRiskLimitsAndBreaker() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        risk.maxPositionNotional = 20_000e6;
        risk.minHeadroomBps = 5_000;
        risk.maxDrawdownBps = 1_500;
        _grantWith(risk);
        _measure("sessionOrder_riskLimitsAndBreaker");
    }
}
