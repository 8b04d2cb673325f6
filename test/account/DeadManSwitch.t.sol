// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice The dead-man switch: a key arms a heartbeat; if it is not renewed in time, the key's risk-raising
/// ops stop validating (the EntryPoint refuses them as expired — validation never reads the clock) while its
/// protective ops still run; the next heartbeat re-arms it.
contract DeadManSwitchTest is AccountTestBase {
    uint256 internal constant P256_PK = 0xC0FFEE;

    function _heartbeatOp(uint256 pk, bool p256, uint32 interval) internal view returns (PackedUserOperation memory) {
        address key = p256 ? _p256Id(pk) : vm.addr(pk);
        return _keyOp(pk, p256, abi.encodeCall(ISessionManager.heartbeat, (key, interval)), _soon());
    }

    function _soon() internal view returns (uint40) {
        return uint40(block.timestamp + 30);
    }

    function _risky() internal view returns (PackedUserOperation memory) {
        return _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), _soon());
    }

    function test_deadMan_tripsToProtectiveOnlyAndRearms() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        assertEq(sessions.heartbeatDeadline(sessionKey), block.timestamp + 60);
        _handle(_risky());
        assertEq(venue.orderCount(), 1, "armed and renewed: trades");

        vm.warp(block.timestamp + 61);
        PackedUserOperation memory op = _risky();
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
        // Protective ops still run: a reduce-only order, a cancel, a deposit.
        _handle(_sessionOp(SESSION_PK, _order(0, -1e18, 2900e18, true), _soon()));
        _handle(_sessionOp(SESSION_PK, _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, 1))), _soon()));
        assertEq(venue.orderCount(), 2);
        assertEq(venue.cancels(), 1);

        // The next heartbeat re-arms the key.
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        _handle(_risky());
        assertEq(venue.orderCount(), 3);
    }

    function test_deadMan_queuedOrderSignedBeforeTheDeadlineDiesAfterIt() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        // Signed while the switch is live, with an expiry past its deadline; held back by a relayer.
        vm.warp(block.timestamp + 50);
        PackedUserOperation memory held = _risky();
        vm.warp(block.timestamp + 11);
        _expectFailedOp("AA22 expired or not due");
        _handle(held);
        assertEq(venue.orderCount(), 0);
    }

    function test_deadMan_p256Key() public {
        address key = _p256Id(P256_PK);
        _grant(key, _tradingScope());
        _handle(_heartbeatOp(P256_PK, true, 30));
        vm.warp(block.timestamp + 31);
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), _soon());
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
        _handle(_heartbeatOp(P256_PK, true, 30));
        _handle(_p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), _soon()));
        assertEq(venue.orderCount(), 1);
    }

    function test_deadMan_badIntervalsAndOtherKeysRefused() public {
        _grant(sessionKey, _tradingScope());
        _grant(vm.addr(0x5E58), _tradingScope());
        PackedUserOperation memory op = _heartbeatOp(SESSION_PK, false, 0);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidHeartbeatInterval.selector, 0));
        _handle(op);
        op = _heartbeatOp(SESSION_PK, false, 7 days + 1);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidHeartbeatInterval.selector, 7 days + 1));
        _handle(op);
        op = _keyOp(SESSION_PK, false, abi.encodeCall(ISessionManager.heartbeat, (vm.addr(0x5E58), 60)), _soon());
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionKeyMismatch.selector, vm.addr(0x5E58), sessionKey)
        );
        _handle(op);
        assertEq(sessions.heartbeatDeadline(vm.addr(0x5E58)), 0);
        // Positive control: the longest interval is accepted.
        _handle(_heartbeatOp(SESSION_PK, false, 7 days));
        assertEq(sessions.heartbeatDeadline(sessionKey), block.timestamp + 7 days);
    }

    function test_deadMan_onlyTheOwnerDisarms() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        PackedUserOperation memory op =
            _keyOp(SESSION_PK, false, abi.encodeCall(ISessionManager.disarmHeartbeat, (sessionKey)), _soon());
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionSelectorNotAllowed.selector, ISessionManager.disarmHeartbeat.selector
            )
        );
        _handle(op);
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        sessions.disarmHeartbeat(sessionKey);

        vm.prank(owner);
        sessions.disarmHeartbeat(sessionKey);
        assertEq(sessions.heartbeatDeadline(sessionKey), 0);
        vm.warp(block.timestamp + 1 hours);
        _handle(_risky());
        assertEq(venue.orderCount(), 1, "disarmed: no deadline");
    }

    function test_deadMan_newGrantStartsDisarmedAndRevokeClears() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        _grant(sessionKey, _tradingScope());
        assertEq(sessions.heartbeatDeadline(sessionKey), 0);
        vm.warp(block.timestamp + 1 hours);
        _handle(_risky());
        assertEq(venue.orderCount(), 1);
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        assertEq(sessions.heartbeatDeadline(sessionKey), 0);
    }

    function test_deadMan_heartbeatNeedsALiveSession() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        sessions.heartbeat(sessionKey, 60);
    }

    function test_deadMan_successorInheritsTheSwitch() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        address next = vm.addr(0x5E57);
        vm.prank(owner);
        sessions.rotateSession(sessionKey, next);
        assertEq(sessions.heartbeatDeadline(next), block.timestamp + 60, "rotation cannot shed the switch");
    }

    /// @dev A session op of `SESSION_PK` on `lane` making `calls`.
    function _laneOp(uint32 lane, bytes memory calls) internal view returns (PackedUserOperation memory op) {
        op = _op(address(account), _sessionNonce(sessionKey, lane), UserOps.forSession(sessionKey, calls));
        _signSession(op, SESSION_PK, _soon(), sessions.getSession(sessionKey).grantId);
    }

    /// Past the deadline, neither the batch's shape, nor another nonce lane, nor who submits the op and to which
    /// beneficiary lets a risk-raising call through; a batch of protective calls still passes.
    function test_deadMan_batchesLanesAndSubmittersDoNotEscapeIt() public {
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        vm.warp(block.timestamp + 61);
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = BaseAccount.Call(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, 1)));
        calls[1] = BaseAccount.Call(address(venue), 0, abi.encodeCall(venue.placeOrder, (0, 1e18, 3000e18, false)));
        PackedUserOperation memory op = _laneOp(7, _batch(calls));
        address attacker = address(0xA77AC);
        _expectFailedOp("AA22 expired or not due");
        _handleFrom(op, attacker, payable(attacker));
        // Positive control: the same shape with the order reduce-only, on another lane.
        calls[1] = BaseAccount.Call(address(venue), 0, abi.encodeCall(venue.placeOrder, (0, -1e18, 2900e18, true)));
        _handleFrom(_laneOp(9, _batch(calls)), attacker, payable(attacker));
        assertEq(venue.cancels(), 1);
        assertEq(venue.orderCount(), 1);
    }

    /// @dev A session op of `SESSION_PK` on `lane` making the one venue call `order`, with the gas limits and fee
    /// prices its signer chose.
    function _gassedOp(
        bytes memory order,
        uint32 lane,
        uint128 verificationGas,
        uint128 callGas,
        uint128 preVerificationGas,
        uint128 maxFee,
        uint128 tip
    ) internal view returns (PackedUserOperation memory op) {
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](1);
        calls[0] = BaseAccount.Call(address(venue), 0, order);
        op = _op(address(account), _sessionNonce(sessionKey, lane), UserOps.forSession(sessionKey, _batch(calls)));
        op.accountGasLimits = bytes32((uint256(verificationGas) << 128) | callGas);
        op.preVerificationGas = preVerificationGas;
        op.gasFees = bytes32((uint256(tip) << 128) | maxFee);
        _signSession(op, SESSION_PK, _soon(), sessions.getSession(sessionKey).grantId);
    }

    /// Past the deadline, no choice of the op's gas limits and fee prices (within the key's cost limit) lets a
    /// risk-raising order through either; a reduce-only order with the same fields still passes.
    function testFuzz_deadMan_gasFieldsAndFeesDoNotEscapeIt(
        uint128 verificationGas,
        uint128 callGas,
        uint128 preVerificationGas,
        uint128 maxFee,
        uint128 tip
    ) public {
        verificationGas = uint128(bound(verificationGas, 400_000, 1_000_000));
        callGas = uint128(bound(callGas, 300_000, 1_000_000));
        preVerificationGas = uint128(bound(preVerificationGas, 21_000, 60_000));
        maxFee = uint128(bound(maxFee, 1 gwei, 10 gwei));
        tip = uint128(bound(tip, 0, maxFee));
        _grant(sessionKey, _tradingScope());
        _handle(_heartbeatOp(SESSION_PK, false, 60));
        vm.warp(block.timestamp + 61);
        address attacker = address(0xA77AC);
        PackedUserOperation memory op = _gassedOp(
            abi.encodeCall(venue.placeOrder, (0, 1e18, 3000e18, false)),
            3,
            verificationGas,
            callGas,
            preVerificationGas,
            maxFee,
            tip
        );
        _expectFailedOp("AA22 expired or not due");
        _handleFrom(op, attacker, payable(attacker));
        // Positive control: the same fields on a reduce-only order.
        op = _gassedOp(
            abi.encodeCall(venue.placeOrder, (0, -1e18, 2900e18, true)),
            4,
            verificationGas,
            callGas,
            preVerificationGas,
            maxFee,
            tip
        );
        _handleFrom(op, attacker, payable(attacker));
        assertEq(venue.orderCount(), 1);
    }
}
