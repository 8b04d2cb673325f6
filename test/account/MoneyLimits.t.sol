// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {UserOps} from "../../script/UserOps.sol";
import {TestPaymaster} from "../mocks/TestPaymaster.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice A stolen trading key cannot move money out through gas, batches or value: each channel tried by
/// an attacker who holds the key, chooses every gas field and fee price, submits the op itself and names
/// itself the beneficiary — each beside a positive control, the same key's legitimate op going through.
contract MoneyLimitsTest is AccountTestBase {
    address payable internal attacker = payable(address(0xA77AC));
    uint40 internal opUntil;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
    }

    /// @dev A session op with the attacker's gas fields, signed by the key.
    function _opWithGas(bytes memory callData, uint128 verificationGas, uint128 callGas, uint256 pvg, uint128 maxFee)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, callData),
            verificationGas,
            callGas
        );
        op.preVerificationGas = pvg;
        op.gasFees = bytes32((uint256(maxFee) << 128) | maxFee);
        _signSession(op, SESSION_PK, opUntil, sessions.getSession(sessionKey).grantId);
    }

    /// @dev The attacker submits `op` itself, naming itself the beneficiary.
    function _submitAsAttacker(PackedUserOperation memory op) internal {
        _handleFrom(op, attacker, attacker);
    }

    function _accountEth() internal view returns (uint256) {
        return address(account).balance + entryPoint.balanceOf(address(account));
    }

    /*//////////////////////////////////////////////////////////////
                         CHANNEL 1: GAS IS VALUE
    //////////////////////////////////////////////////////////////*/

    /// Huge gas fields at a huge fee price, self-submitted with the attacker as beneficiary: refused in
    /// validation, so nothing is paid; the same key's ordinary op pays its beneficiary at most the cap.
    function test_fee_hugeGasFieldsRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxUses = 1; // even a single-use key
        _grant(sessionKey, scope);
        uint256 ethBefore = _accountEth();

        PackedUserOperation memory op =
            _opWithGas(_order(0, 1e18, 3000e18, false), 5_000_000, 5_000_000, 5_000_000, 2_000 gwei);
        uint256 cost = uint256(15_000_000) * 2_000 gwei;
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionOpCostTooHigh.selector, cost, TEST_OP_COST)
        );
        _submitAsAttacker(op);
        assertEq(attacker.balance, 0, "the attacker earned nothing");
        assertEq(_accountEth(), ethBefore);

        // Positive control: the same key, ordinary gas, the same attacker as submitter and beneficiary.
        _submitAsAttacker(_opWithGas(_order(0, 1e18, 3000e18, false), 1_000_000, 1_000_000, 60_000, 10 gwei));
        assertEq(venue.orderCount(), 1);
        assertLe(attacker.balance, TEST_OP_COST, "paid at most the op's maximum cost");
        assertEq(ethBefore - _accountEth(), attacker.balance, "only the gas the beneficiary received left");
    }

    /// A preVerificationGas near 2^256 is refused, never wrapped into a small cost.
    function test_fee_overflowingGasRefused() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op = _opWithGas(_order(0, 1e18, 3000e18, false), 1, 1, type(uint256).max - 1, 1);
        vm.expectRevert(); // the EntryPoint itself refuses such gas values before the account is asked
        _submitAsAttacker(op);
        // Just inside the EntryPoint's 120-bit bound: the account computes the true cost and refuses it.
        op = _opWithGas(_order(0, 1e18, 3000e18, false), 1_000_000, 1, uint256(1) << 119, 1 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionOpCostTooHigh.selector, ((uint256(1) << 119) + 1_000_001) * 1 gwei, TEST_OP_COST
            )
        );
        _submitAsAttacker(op);
        assertEq(attacker.balance, 0);
    }

    /// Ops under the per-op cap still stop at the budget: n ops of the maximum cost pass, the next does not,
    /// and the beneficiary received no more than the budget in all.
    function test_fee_budgetBoundsManyOps() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.feeBudget = 3 * TEST_OP_COST;
        _grant(sessionKey, scope);
        uint256 ethBefore = _accountEth();
        for (uint256 i; i < 3; ++i) {
            _submitAsAttacker(_opWithGas(_order(0, 1e18, 3000e18, false), 1_000_000, 1_000_000, 60_000, 10 gwei));
        }
        assertEq(sessions.getSession(sessionKey).feeLeft, 0, "charged at the maximum, not refunded");
        PackedUserOperation memory op = _opWithGas(_order(0, 1e18, 3000e18, false), 100_000, 100_000, 60_000, 1 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionFeeBudgetExceeded.selector, 260_000 gwei, 0)
        );
        _submitAsAttacker(op);
        assertEq(venue.orderCount(), 3);
        assertLe(attacker.balance, 3 * TEST_OP_COST);
        assertEq(ethBefore - _accountEth(), attacker.balance);
    }

    /// The charge is the op's maximum cost rounded up to whole gwei.
    function test_fee_chargedAtMaximumRoundedUp() public {
        _grant(sessionKey, _tradingScope());
        uint256 before = sessions.getSession(sessionKey).feeLeft;
        // 2,060,001 gas at 1.5 gwei = 3,090,001.5 gwei: charged 3,090,002 gwei.
        _submitAsAttacker(_opWithGas(_order(0, 1e18, 3000e18, false), 1_000_000, 1_000_000, 60_001, 1.5 gwei));
        assertEq(before - sessions.getSession(sessionKey).feeLeft, 3_090_002 gwei);
    }

    /// A key with no fee budget pays for no op of its own.
    function test_fee_zeroBudgetPaysNothing() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.feeBudget = 0;
        scope.maxOpCost = 0;
        _grant(sessionKey, scope);
        PackedUserOperation memory op = _opWithGas(_order(0, 1e18, 3000e18, false), 100_000, 100_000, 50_000, 1 gwei);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionFeeBudgetExceeded.selector, 250_000 gwei, 0)
        );
        _submitAsAttacker(op);
    }

    /// Enable mode: the first op carries the owner's grant, and its gas is bounded by that same grant.
    function test_fee_enableModeHugeGasRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        PackedUserOperation memory op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            5_000_000,
            5_000_000
        );
        op.preVerificationGas = 5_000_000;
        op.gasFees = bytes32((uint256(2_000 gwei) << 128) | 2_000 gwei);
        _signEnable(op, SESSION_PK, opUntil, scope, digest, ownerSig);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionOpCostTooHigh.selector, uint256(15_000_000) * 2_000 gwei, TEST_OP_COST
            )
        );
        _submitAsAttacker(op);
        assertFalse(sessions.getSession(sessionKey).active, "a refused op stores no grant");

        // Positive control: the same grant with ordinary gas enables the key and trades.
        _submitAsAttacker(_enableOp(OWNER_PK, SESSION_PK, scope, _order(0, 1e18, 3000e18, false), opUntil));
        assertTrue(sessions.getSession(sessionKey).active);
        assertEq(venue.orderCount(), 1);
        assertLe(attacker.balance, TEST_OP_COST);
    }

    /// Sponsored ops go only through paymasters the owner listed; then the account pays nothing and the
    /// fee budget is untouched.
    function test_fee_paymasterMustBeListed() public {
        TestPaymaster listed = new TestPaymaster(entryPoint);
        TestPaymaster other = new TestPaymaster(entryPoint);
        listed.deposit{value: 10 ether}();
        other.deposit{value: 10 ether}();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.paymasters = new address[](1);
        scope.paymasters[0] = address(listed);
        scope.paymasterBudget = 10 * TEST_OP_COST;
        _grant(sessionKey, scope);
        uint256 feeBefore = sessions.getSession(sessionKey).feeLeft;
        uint256 ethBefore = _accountEth();

        PackedUserOperation memory op = _sponsored(address(other));
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionPaymasterNotAllowed.selector, address(other))
        );
        _submitAsAttacker(op);

        _submitAsAttacker(_sponsored(address(listed)));
        assertEq(venue.orderCount(), 1);
        assertEq(_accountEth(), ethBefore, "the account paid no gas");
        assertEq(sessions.getSession(sessionKey).feeLeft, feeBefore, "the budget is untouched");
        assertEq(sessions.getSession(sessionKey).paymasters[0], address(listed));
    }

    function _sponsored(address paymaster) internal view returns (PackedUserOperation memory op) {
        op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            1_000_000,
            1_000_000
        );
        op.paymasterAndData = abi.encodePacked(paymaster, uint128(100_000), uint128(0));
        _signSession(op, SESSION_PK, opUntil, sessions.getSession(sessionKey).grantId);
    }

    /// Grants name fees in whole gwei (they are kept in gwei), and refuse what does not fit.
    function test_grant_refusesOddFees() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.feeBudget = 1 ether + 1;
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.FeeNotWholeGwei)
        );
        sessions.grantSession(sessionKey, scope);
        scope.feeBudget = uint128(type(uint56).max) * 1 gwei + 1 gwei;
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.FeeTooLarge)
        );
        sessions.grantSession(sessionKey, scope);
    }

    /*//////////////////////////////////////////////////////////////
                   CHANNEL 2: BATCHES DO NOT MULTIPLY LIMITS
    //////////////////////////////////////////////////////////////*/

    function _orders(uint256 n) internal view returns (bytes memory) {
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](n);
        for (uint256 i; i < n; ++i) {
            calls[i] =
                BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false)));
        }
        return _batch(calls);
    }

    function test_batch_rateCountsCalls() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.rateCount = 3;
        scope.ratePeriod = 60;
        scope.maxOpTtl = 10;
        _grant(sessionKey, scope);
        uint40 until = uint40(block.timestamp + 10);
        PackedUserOperation memory four = _sessionOp(SESSION_PK, _orders(4), until);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionTooManyCalls.selector, 4, 3));
        _handle(four);
        // Three calls fill the window: one op of three, then a single order must wait for the next window.
        _handle(_sessionOp(SESSION_PK, _orders(3), until));
        assertEq(sessions.getSession(sessionKey).windowUsed, 3);
        PackedUserOperation memory one = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionRateLimited.selector,
                sessionKey,
                sessions.getSession(sessionKey).windowStart + 60
            )
        );
        _handle(one);
        assertEq(venue.orderCount(), 3);
    }

    function test_batch_usesCountCalls() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxUses = 3;
        _grant(sessionKey, scope);
        _handle(_sessionOp(SESSION_PK, _orders(2), opUntil));
        assertEq(sessions.getSession(sessionKey).usesLeft, 1);
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _orders(2), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionExhausted.selector, sessionKey));
        _handle(op);
        _handle(_sessionOp(SESSION_PK, _orders(1), opUntil));
        assertEq(venue.orderCount(), 3);
    }

    function test_batch_maxCallsPerOp() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxCallsPerOp = 2;
        _grant(sessionKey, scope);
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _orders(3), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionTooManyCalls.selector, 3, 2));
        _handle(op);
        _handle(_sessionOp(SESSION_PK, _orders(2), opUntil));
        assertEq(venue.orderCount(), 2);
    }

    function test_batch_valueBudgetSumsCalls() public {
        Sink sink = new Sink();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(sink), Sink.pay.selector, 0.5 ether);
        scope.valueBudget = 0.75 ether;
        _grant(sessionKey, scope);
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = BaseAccount.Call(address(sink), 0.5 ether, abi.encodeCall(Sink.pay, ()));
        calls[1] = calls[0];
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _batch(calls), opUntil);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionValueBudgetExceeded.selector, 1 ether, 0.75 ether)
        );
        _handle(op);
        // Positive control: one call of 0.5 goes; the next 0.5 is over what is left.
        _handle(_sessionOp(SESSION_PK, _exec(address(sink), 0.5 ether, abi.encodeCall(Sink.pay, ())), opUntil));
        assertEq(address(sink).balance, 0.5 ether);
        op = _sessionOp(SESSION_PK, _exec(address(sink), 0.5 ether, abi.encodeCall(Sink.pay, ())), opUntil);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionValueBudgetExceeded.selector, 0.5 ether, 0.25 ether)
        );
        _handle(op);
    }

    function test_grant_valuePermissionNeedsBudget() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(0xCAFE), bytes4(0x12345678), 1 ether);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.ValueWithoutBudget)
        );
        sessions.grantSession(sessionKey, scope);
    }

    /*//////////////////////////////////////////////////////////////
                   CHANNEL 3 (UNIT): THE SELL'S FILL NOTIONAL
    //////////////////////////////////////////////////////////////*/

    /// A sell fills at or above its limit: its notional is checked at the fill the venue reports.
    function test_sell_notionalCheckedAtFill() public {
        _grant(sessionKey, _tradingScope()); // 10 units, $100,000 per order
        // 10 units at a $9,000 limit pass validation ($90,000), then fill at $11,000 ($110,000): undone.
        venue.setFillPrice(11_000e18);
        vm.recordLogs();
        _handle(_sessionOp(SESSION_PK, _order(0, -10e18, 9_000e18, false), opUntil));
        assertEq(venue.orderCount(), 0, "the over-cap fill was undone");
        // Positive control: the same order filling at $10,000 is exactly at the cap.
        venue.setFillPrice(10_000e18);
        _handle(_sessionOp(SESSION_PK, _order(0, -10e18, 9_000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
    }

    /*//////////////////////////////////////////////////////////////
                                DENY LIST
    //////////////////////////////////////////////////////////////*/

    /// The deny list, as the README states it: every one refused for any target, and nothing else.
    function test_denyList_matchesTheReadme() public {
        string[13] memory denied = [
            "withdrawMargin(uint256)",
            "fundPool(uint256)",
            "fundInsurance(uint256)",
            "transfer(address,uint256)",
            "transferFrom(address,address,uint256)",
            "approve(address,uint256)",
            "increaseAllowance(address,uint256)",
            "approve(address,address,uint160,uint48)",
            "setApprovalForAll(address,bool)",
            "safeTransferFrom(address,address,uint256)",
            "safeTransferFrom(address,address,uint256,bytes)",
            "safeTransferFrom(address,address,uint256,uint256,bytes)",
            "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)"
        ];
        for (uint256 i; i < denied.length; ++i) {
            bytes4 sel = bytes4(keccak256(bytes(denied[i])));
            ITradingAccount.SessionScope memory scope = _tradingScope();
            scope.permissions[1] = _callPermission(address(venue), sel, 0);
            vm.prank(owner);
            vm.expectRevert(
                abi.encodeWithSelector(
                    ITradingAccount.InvalidPermission.selector, 1, ITradingAccount.PermissionFault.MovesFundsOut
                )
            );
            sessions.grantSession(sessionKey, scope);
        }
        // And the venue's ordinary functions stay grantable.
        ITradingAccount.SessionScope memory ok = _tradingScope();
        ok.permissions[1] = _callPermission(address(venue), bytes4(keccak256("liquidate(address,uint32)")), 0);
        _grant(sessionKey, ok);
    }
}

/// @notice A payable target for value-budget tests.
contract Sink {
    function pay() external payable {}
}
