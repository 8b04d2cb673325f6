// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {UserOps} from "../../script/UserOps.sol";
import {TestPaymaster} from "../mocks/TestPaymaster.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice A stolen key cannot drain a paymaster its owner listed: each listed paymaster may be charged at most
/// the scope's `paymasterMaxOpCost` for one of the key's ops and `paymasterBudget` for all of them, counted at
/// the EntryPoint's prefund (every gas limit, the paymaster's own included, x maxFeePerGas) in validation.
/// The attacker holds the key, chooses every gas field, the fee price and the batch shape, submits the ops
/// itself and names itself the beneficiary; each attack sits beside a positive control.
contract PaymasterCapTest is AccountTestBase {
    address payable internal attacker = payable(address(0xA77AC));
    uint40 internal opUntil;
    TestPaymaster internal pm;
    TestPaymaster internal pm2;

    /// 2,060,000 gas at 10 gwei, the per-op cap of these tests.
    uint128 internal constant CAP = TEST_OP_COST;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
        pm = new TestPaymaster(entryPoint);
        pm2 = new TestPaymaster(entryPoint);
        pm.deposit{value: 50 ether}();
        pm2.deposit{value: 50 ether}();
    }

    /// @dev The trading scope listing `pm` and `pm2`, each with `maxOpCost` per op and `budget` in all.
    function _scope(uint128 maxOpCost, uint128 budget) internal view returns (ITradingAccount.SessionScope memory s) {
        s = _tradingScope();
        s.paymasters = new address[](2);
        s.paymasters[0] = address(pm);
        s.paymasters[1] = address(pm2);
        s.paymasterMaxOpCost = maxOpCost;
        s.paymasterBudget = budget;
    }

    /// @dev A sponsored order on `lane`, with the attacker's gas fields and one fee price for both fee fields.
    function _sponsoredOp(address paymaster, uint32 lane, uint128[5] memory gas, uint128 fee)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, lane),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            gas[0],
            gas[1]
        );
        op.preVerificationGas = gas[2];
        op.gasFees = bytes32((uint256(fee) << 128) | fee);
        op.paymasterAndData = abi.encodePacked(paymaster, gas[3], gas[4]);
        _signSession(op, SESSION_PK, opUntil, sessions.getSession(sessionKey).grantId);
    }

    /// @dev Gas fields [verification, call, preVerification, paymaster verification, paymaster postOp] that
    /// make exactly `total` gas with the paymaster's part `pmGas`.
    function _gas(uint128 total, uint128 pmGas) internal pure returns (uint128[5] memory g) {
        g = [uint128(1_000_000), uint128(1_000_000), total - 2_000_000 - pmGas, pmGas, uint128(0)];
    }

    function _left(address paymaster) internal view returns (uint256 left) {
        (,, left) = sessions.paymasterAllowance(sessionKey, paymaster);
    }

    function _spent(TestPaymaster p) internal view returns (uint256) {
        return 50 ether - entryPoint.balanceOf(address(p));
    }

    /// The reported drain: huge gas fields at a huge fee price through a listed paymaster, the attacker as
    /// beneficiary. With no per-op cap and a budget of 100 ETH it works (the control: over 2 ETH paid out by
    /// the paymaster); with the cap it is refused in validation and the paymaster pays nothing.
    function test_paymasterCap_hugeGasDrainRefused() public {
        uint128[5] memory huge = [uint128(1_000_000), 1_000_000, 1_200_000, 100_000, 0];
        uint256 cost = uint256(3_300_000) * 2_000 gwei;

        // Control: the attack as it was, under a budget large enough not to stop it.
        _grant(sessionKey, _scope(0, 100 ether));
        _handleFrom(_sponsoredOp(address(pm), 0, huge, 2_000 gwei), attacker, attacker);
        assertGt(attacker.balance, 2 ether, "without a cap the key turns the paymaster's deposit into gas");
        assertEq(_spent(pm), attacker.balance);
        uint256 earned = attacker.balance;

        // The cap: the same op is refused and pays nobody.
        _grant(sessionKey, _scope(CAP, 10 * CAP));
        PackedUserOperation memory op = _sponsoredOp(address(pm), 0, huge, 2_000 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionPaymasterOpCostTooHigh.selector, address(pm), cost, CAP)
        );
        _handleFrom(op, attacker, attacker);
        assertEq(attacker.balance, earned, "the attacker earned nothing more");
        assertEq(_left(address(pm)), 10 * CAP, "nothing charged");
    }

    /// The per-op cap at its edge, the paymaster's own gas limits counted: exactly the cap passes; one more gas
    /// in preVerificationGas, or in the paymaster's verification or postOp limit, is refused.
    function test_paymasterCap_perOpCapAtItsEdge() public {
        _grant(sessionKey, _scope(CAP, 10 * CAP));
        uint256 over = uint256(2_060_001) * 10 gwei;
        uint128[5][3] memory oneOver = [
            [uint128(1_000_000), 1_000_000, 30_001, 30_000, 0],
            [uint128(1_000_000), 1_000_000, 30_000, 30_001, 0],
            [uint128(1_000_000), 1_000_000, 30_000, 30_000, 1]
        ];
        for (uint256 i; i < 3; ++i) {
            PackedUserOperation memory op = _sponsoredOp(address(pm), 0, oneOver[i], 10 gwei);
            _expectValidationRevert(
                abi.encodeWithSelector(ITradingAccount.SessionPaymasterOpCostTooHigh.selector, address(pm), over, CAP)
            );
            _handleFrom(op, attacker, attacker);
        }
        // Control: exactly the cap.
        _handleFrom(_sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei), attacker, attacker);
        assertEq(venue.orderCount(), 1);
        assertEq(_left(address(pm)), 9 * CAP, "charged the op's maximum cost");
        assertLe(_spent(pm), CAP, "the paymaster paid at most the cap");
    }

    /// Ops each under the per-op cap stop at the budget, whatever the fee price the key names: three ops at
    /// the maximum pass, the fourth is refused, and the paymaster paid at most the budget in all.
    function test_paymasterCap_budgetBoundsManyOps() public {
        _grant(sessionKey, _scope(0, 3 * CAP));
        // The same maximum cost through different shapes: less gas at a higher price each time.
        uint128[5][3] memory shapes = [
            [uint128(1_000_000), 1_000_000, 30_000, 30_000, 0],
            [uint128(490_000), 490_000, 20_000, 30_000, 0],
            [uint128(235_000), 235_000, 10_000, 30_000, 5_000]
        ];
        uint128[3] memory fees = [uint128(10 gwei), 20 gwei, 40 gwei];
        for (uint256 i; i < 3; ++i) {
            _handleFrom(_sponsoredOp(address(pm), 0, shapes[i], fees[i]), attacker, attacker);
        }
        assertEq(venue.orderCount(), 3);
        uint256 left = _left(address(pm));
        assertEq(left, 0, "charged each op at its maximum");
        PackedUserOperation memory op =
            _sponsoredOp(address(pm), 0, [uint128(1_000_000), 960_000, 30_000, 30_000, 0], 1 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionPaymasterBudgetExceeded.selector, address(pm), 2_020_000 gwei, left
            )
        );
        _handleFrom(op, attacker, attacker);
        assertEq(venue.orderCount(), 3);
        assertLe(_spent(pm), 3 * CAP, "the paymaster paid at most the budget");
        assertEq(_spent(pm), attacker.balance, "all of it to the beneficiary the key chose, and no more");
    }

    /// Any gas fields and fee price the key names: the op is refused in validation (the paymaster pays nothing
    /// and nothing is charged), or it goes through, charged its prefund rounded up to whole gwei, within the cap,
    /// and the paymaster pays the beneficiary no more than that.
    function testFuzz_paymasterCap_anyGasAndFee(uint24 vgl, uint24 cgl, uint24 pvg, uint24 pmGas, uint24 feeGwei)
        public
    {
        _grant(sessionKey, _scope(CAP, 10 * CAP));
        uint128[5] memory g = [
            uint128(bound(vgl, 200_000, 3_000_000)),
            uint128(bound(cgl, 200_000, 3_000_000)),
            uint128(bound(pvg, 0, 3_000_000)),
            uint128(bound(pmGas, 30_000, 3_000_000)),
            uint128(0)
        ];
        uint128 fee = uint128(bound(feeGwei, 1, 100)) * 1 gwei;
        PackedUserOperation memory op = _sponsoredOp(address(pm), 0, g, fee);
        uint256 cost = uint256(g[0] + g[1] + g[2] + g[3]) * fee;
        uint256 deposit = entryPoint.balanceOf(address(pm));
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(attacker, attacker);
        try entryPoint.handleOps(ops, attacker) {
            assertLe(cost, CAP, "only an op within the cap goes through");
            assertEq(_left(address(pm)), 10 * CAP - cost, "charged its prefund (whole gwei here)");
            assertLe(deposit - entryPoint.balanceOf(address(pm)), cost, "the paymaster paid at most the prefund");
        } catch {
            assertEq(entryPoint.balanceOf(address(pm)), deposit, "a refused op costs the paymaster nothing");
            assertEq(_left(address(pm)), 10 * CAP, "and charges nothing");
        }
    }

    /// Batch shape: two ops of the key in one bundle (two nonce lanes), each within the per-op cap, together
    /// over the budget. The second is refused in validation, so the bundle is refused whole; with a budget
    /// for both (the control) both go.
    function test_paymasterCap_twoOpsInOneBundleShareTheBudget() public {
        _grant(sessionKey, _scope(CAP, CAP + CAP / 2));
        PackedUserOperation[] memory ops = new PackedUserOperation[](2);
        ops[0] = _sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei);
        ops[1] = _sponsoredOp(address(pm), 1, _gas(2_060_000, 30_000), 10 gwei);
        vm.expectRevert(
            abi.encodeWithSelector(
                IEntryPoint.FailedOpWithRevert.selector,
                1,
                "AA23 reverted",
                abi.encodeWithSelector(
                    ITradingAccount.SessionPaymasterBudgetExceeded.selector, address(pm), CAP, CAP / 2
                )
            )
        );
        vm.prank(attacker, attacker);
        entryPoint.handleOps(ops, attacker);
        assertEq(_spent(pm), 0);

        // Control: a budget for both.
        _grant(sessionKey, _scope(CAP, 2 * CAP));
        ops[0] = _sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei);
        ops[1] = _sponsoredOp(address(pm), 1, _gas(2_060_000, 30_000), 10 gwei);
        vm.prank(attacker, attacker);
        entryPoint.handleOps(ops, attacker);
        assertEq(venue.orderCount(), 2);
        assertEq(_left(address(pm)), 0);
        assertLe(_spent(pm), 2 * CAP);
    }

    /// Each listed paymaster has its own budget, and a sponsored op touches neither the other paymaster's nor
    /// the account's own fee budget.
    function test_paymasterCap_budgetsAreSeparate() public {
        _grant(sessionKey, _scope(CAP, CAP));
        uint256 feeLeft = sessions.getSession(sessionKey).feeLeft;
        _handleFrom(_sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei), attacker, attacker);
        assertEq(_left(address(pm)), 0);
        assertEq(_left(address(pm2)), CAP, "the other paymaster's budget is untouched");
        assertEq(sessions.getSession(sessionKey).feeLeft, feeLeft, "the account's own budget is untouched");
        PackedUserOperation memory op = _sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionPaymasterBudgetExceeded.selector, address(pm), CAP, 0)
        );
        _handleFrom(op, attacker, attacker);
        // Control: the other paymaster still sponsors.
        _handleFrom(_sponsoredOp(address(pm2), 0, _gas(2_060_000, 30_000), 10 gwei), attacker, attacker);
        assertEq(venue.orderCount(), 2);
    }

    /// Rotation hands the successor what is left at each paymaster, never a fresh budget.
    function test_paymasterCap_rotationDoesNotRefill() public {
        _grant(sessionKey, _scope(CAP, 2 * CAP));
        _handleFrom(_sponsoredOp(address(pm), 0, _gas(2_060_000, 30_000), 10 gwei), attacker, attacker);
        address next = vm.addr(0xBEEF);
        vm.prank(owner);
        sessions.rotateSession(sessionKey, next);
        (bool listed, uint256 maxOpCost, uint256 left) = sessions.paymasterAllowance(next, address(pm));
        assertTrue(listed);
        assertEq(maxOpCost, CAP);
        assertEq(left, CAP, "what the old key left, not the whole budget");
        (listed,,) = sessions.paymasterAllowance(sessionKey, address(pm));
        assertFalse(listed, "the old key lists nothing");
    }

    /// Enable mode: a first op that carries its own grant is sponsored under that grant's cap.
    function test_paymasterCap_enableModeHugeGasRefused() public {
        ITradingAccount.SessionScope memory scope = _scope(CAP, 10 * CAP);
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        PackedUserOperation memory op = _enableSponsored(scope, digest, ownerSig, 2_000 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionPaymasterOpCostTooHigh.selector,
                address(pm),
                uint256(2_060_000) * 2_000 gwei,
                CAP
            )
        );
        _handleFrom(op, attacker, attacker);
        assertFalse(sessions.getSession(sessionKey).active, "a refused op stores no grant");
        // Control: the same grant at an ordinary price enables the key, sponsored.
        _handleFrom(_enableSponsored(scope, digest, ownerSig, 10 gwei), attacker, attacker);
        assertTrue(sessions.getSession(sessionKey).active);
        assertEq(_left(address(pm)), 9 * CAP);
    }

    function _enableSponsored(
        ITradingAccount.SessionScope memory scope,
        bytes32 digest,
        bytes memory ownerSig,
        uint128 fee
    ) internal view returns (PackedUserOperation memory op) {
        op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            1_000_000,
            1_000_000
        );
        op.preVerificationGas = 30_000;
        op.gasFees = bytes32((uint256(fee) << 128) | fee);
        op.paymasterAndData = abi.encodePacked(address(pm), uint128(30_000), uint128(0));
        _signEnable(op, SESSION_PK, opUntil, scope, digest, ownerSig);
    }

    /// Grants: listed paymasters need a budget; the caps are whole gwei and fit the entry.
    function test_paymasterCap_grantRefusesAnUnboundedPaymaster() public {
        ITradingAccount.SessionScope memory scope = _scope(CAP, 0);
        _expectGrantFault(scope, ITradingAccount.ScopeFault.NoPaymasterBudget);
        scope.paymasterBudget = CAP + 1;
        _expectGrantFault(scope, ITradingAccount.ScopeFault.FeeNotWholeGwei);
        scope.paymasterBudget = uint128(type(uint56).max) * 1 gwei + 1 gwei;
        _expectGrantFault(scope, ITradingAccount.ScopeFault.FeeTooLarge);
        scope.paymasterBudget = CAP;
        scope.paymasterMaxOpCost = 1;
        _expectGrantFault(scope, ITradingAccount.ScopeFault.FeeNotWholeGwei);
        // Controls: a bounded paymaster, and no paymaster with no budget.
        scope.paymasterMaxOpCost = 0;
        _grant(sessionKey, scope);
        (bool listed, uint256 maxOpCost, uint256 left) = sessions.paymasterAllowance(sessionKey, address(pm2));
        assertTrue(listed);
        assertEq(maxOpCost, 0);
        assertEq(left, CAP);
        _grant(sessionKey, _tradingScope());
        (listed,,) = sessions.paymasterAllowance(sessionKey, address(pm));
        assertFalse(listed);
    }

    function _expectGrantFault(ITradingAccount.SessionScope memory scope, ITradingAccount.ScopeFault fault) internal {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, fault));
        sessions.grantSession(sessionKey, scope);
    }
}
