// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Atomic rotation: a key hands its session to the successor the owner committed, in one op of its
/// own; the owner rotates in one call. The successor gets the same scope and what was left of every budget and
/// counter — never more — and the old key is dead.
contract RotationTest is AccountTestBase {
    uint256 internal constant NEXT_PK = 0x5E57;
    uint256 internal constant NEXT_P256_PK = 0xC0FFEE;
    uint40 internal opUntil;
    address internal next;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
        next = vm.addr(NEXT_PK);
    }

    function _commit(address key, address successor) internal {
        vm.prank(owner);
        sessions.commitSuccessor(key, successor);
    }

    function _handOverOp(uint256 pk, bool p256) internal view returns (PackedUserOperation memory) {
        address key = p256 ? _p256Id(pk) : vm.addr(pk);
        return _keyOp(pk, p256, abi.encodeCall(ISessionManager.rotateToSuccessor, (key)), opUntil);
    }

    function test_rotation_keyHandsOverToCommittedSuccessor() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxUses = 5;
        uint32 grantId = _grant(sessionKey, scope);
        _commit(sessionKey, next);
        assertEq(sessions.successorOf(sessionKey), next);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil));
        // A queued order of the old key, signed before the hand-over.
        PackedUserOperation memory stale = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        stale.nonce = _sessionNonce(sessionKey, 1);
        _signSession(stale, SESSION_PK, opUntil, grantId);

        _handle(_handOverOp(SESSION_PK, false));

        ITradingAccount.SessionInfo memory info = sessions.getSession(next);
        assertTrue(info.active);
        assertEq(info.grantId, grantId, "same grant");
        assertEq(info.usesLeft, 4, "uses left, not reset");
        assertEq(info.feeLeft, scope.feeBudget - 2 * TEST_OP_COST, "fee budget left after both ops");
        assertFalse(sessions.getSession(sessionKey).active, "old key dead");
        assertEq(sessions.successorOf(sessionKey), address(0));

        _handle(_sessionOp(NEXT_PK, _order(1, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 2);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _handle(stale);
        assertEq(venue.orderCount(), 2);
    }

    function test_rotation_toP256SuccessorAndBack() public {
        _grant(sessionKey, _tradingScope());
        address p256Next = _p256Id(NEXT_P256_PK);
        _commit(sessionKey, p256Next);
        _handle(_handOverOp(SESSION_PK, false));
        _handle(_p256SessionOp(NEXT_P256_PK, _order(0, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
        // The P-256 key hands over in turn, signed with the P-256 curve.
        _commit(p256Next, next);
        _handle(_handOverOp(NEXT_P256_PK, true));
        assertTrue(sessions.getSession(next).active);
        assertFalse(sessions.getSession(p256Next).active);
    }

    function test_rotation_withoutCommitmentRefused() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op = _handOverOp(SESSION_PK, false);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.NoSuccessor.selector, sessionKey));
        _handle(op);
        // Positive control: with a commitment the same key hands over.
        _commit(sessionKey, next);
        _handle(_handOverOp(SESSION_PK, false));
        assertTrue(sessions.getSession(next).active);
    }

    function test_rotation_keyCannotHandOverAnotherKey() public {
        _grant(sessionKey, _tradingScope());
        _grant(vm.addr(0x5E58), _tradingScope());
        _commit(vm.addr(0x5E58), next);
        PackedUserOperation memory op =
            _keyOp(SESSION_PK, false, abi.encodeCall(ISessionManager.rotateToSuccessor, (vm.addr(0x5E58))), opUntil);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionKeyMismatch.selector, vm.addr(0x5E58), sessionKey)
        );
        _handle(op);
        // Nor wrap it, nor pick its own successor, nor call the owner's rotation.
        op = _keyOp(SESSION_PK, false, abi.encodeCall(ISessionManager.rotateSession, (sessionKey, next)), opUntil);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionSelectorNotAllowed.selector, ISessionManager.rotateSession.selector
            )
        );
        _handle(op);
        op = _keyOp(
            SESSION_PK, false, abi.encodeCall(ISessionManager.commitSuccessor, (sessionKey, vm.addr(0xE71))), opUntil
        );
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionSelectorNotAllowed.selector, ISessionManager.commitSuccessor.selector
            )
        );
        _handle(op);
    }

    function test_rotation_nonCanonicalCalldataRefused() public {
        _grant(sessionKey, _tradingScope());
        _commit(sessionKey, next);
        bytes memory cd = abi.encodePacked(abi.encodeCall(ISessionManager.rotateToSuccessor, (sessionKey)), uint8(0));
        PackedUserOperation memory op = _keyOp(SESSION_PK, false, cd, opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.MalformedCalldata.selector));
        _handle(op);
        cd = abi.encodeWithSelector(
            ISessionManager.rotateToSuccessor.selector, uint256(uint160(sessionKey)) | (1 << 200)
        );
        op = _keyOp(SESSION_PK, false, cd, opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.MalformedCalldata.selector));
        _handle(op);
    }

    function test_rotation_ownerRotatesInOneCall() public {
        _grant(sessionKey, _tradingScope());
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, address(0xBAD)));
        sessions.rotateSession(sessionKey, next);
        vm.prank(owner);
        sessions.rotateSession(sessionKey, next);
        assertTrue(sessions.getSession(next).active);
        assertFalse(sessions.getSession(sessionKey).active);
    }

    function test_rotation_outsidersCannotReachIt() public {
        _grant(sessionKey, _tradingScope());
        _commit(sessionKey, next);
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, address(0xBAD)));
        sessions.rotateToSuccessor(sessionKey);
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        sessions.rotateToSuccessor(sessionKey);
    }

    function test_rotation_refusesLiveSuccessorZeroAndSelf() public {
        _grant(sessionKey, _tradingScope());
        _grant(next, _tradingScope());
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.SuccessorInUse.selector, next));
        sessions.rotateSession(sessionKey, next);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.InvalidSuccessor.selector, address(0)));
        sessions.rotateSession(sessionKey, address(0));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.InvalidSuccessor.selector, sessionKey));
        sessions.rotateSession(sessionKey, sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.InvalidSuccessor.selector, sessionKey));
        sessions.commitSuccessor(sessionKey, sessionKey);
        vm.stopPrank();
    }

    function test_rotation_newGrantOrRevokeClearsCommitment() public {
        _grant(sessionKey, _tradingScope());
        _commit(sessionKey, next);
        _grant(sessionKey, _tradingScope());
        assertEq(sessions.successorOf(sessionKey), address(0), "a new grant is a new decision");
        _commit(sessionKey, next);
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        assertEq(sessions.successorOf(sessionKey), address(0));
    }

    function test_rotation_revokeAllStillKillsTheSuccessor() public {
        _grant(sessionKey, _tradingScope());
        _commit(sessionKey, next);
        _handle(_handOverOp(SESSION_PK, false));
        vm.prank(owner);
        sessions.revokeAllSessions();
        assertFalse(sessions.getSession(next).active, "the successor keeps the grant id, and dies with it");
    }

    /// The old key's hand-over and one more of its orders in one bundle, submitted by the key holder to a
    /// beneficiary of its choosing: both ops are validated (and charged) before either runs, so the order runs
    /// nothing once the hand-over has executed, and the successor inherits both charges.
    function test_rotation_aHandOverAndAnOrderInOneBundle() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        uint32 grantId = _grant(sessionKey, scope);
        _commit(sessionKey, next);
        PackedUserOperation[] memory ops = new PackedUserOperation[](2);
        ops[0] = _handOverOp(SESSION_PK, false);
        ops[1] = _op(
            address(account),
            _sessionNonce(sessionKey, 1),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false))
        );
        _signSession(ops[1], SESSION_PK, opUntil, grantId);
        address attacker = address(0xA77AC);
        vm.prank(attacker, attacker);
        entryPoint.handleOps(ops, payable(attacker));
        assertEq(venue.orderCount(), 0, "the old key's order ran nothing");
        assertEq(sessions.getSession(next).feeLeft, scope.feeBudget - 2 * TEST_OP_COST);
        assertFalse(sessions.getSession(sessionKey).active);
    }

    /// @dev Everything `getSession` reports but the bookkeeping that names the key.
    function _authority(address key) internal view returns (bytes memory) {
        ITradingAccount.SessionInfo memory info = sessions.getSession(key);
        return abi.encode(info);
    }

    /// Rotation never widens authority: whatever the scope and however much the old key spent, the successor's
    /// session is exactly what the old key had left (every field `getSession` reports, permissions and
    /// paymasters included), and the two keys together can make no more calls than the grant allowed.
    function testFuzz_rotation_neverWidensAuthority(
        uint8 usedBefore,
        uint32 maxUses,
        uint16 rateCount,
        uint16 maxLeverage,
        uint64 maxPosition,
        uint16 maxDrawdownBps,
        bool reduceOnly,
        bool p256Successor
    ) public {
        maxUses = uint32(bound(maxUses, 1, 40));
        usedBefore = uint8(bound(usedBefore, 0, maxUses));
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxUses = maxUses;
        scope.rateCount = uint16(bound(rateCount, 0, 60));
        scope.ratePeriod = scope.rateCount == 0 ? 0 : 1;
        scope.risk.maxLeverage = uint16(bound(maxLeverage, 0, 5000));
        scope.risk.maxPositionNotional = maxPosition;
        scope.risk.maxDrawdownBps = uint16(bound(maxDrawdownBps, 0, 9999));
        scope.permissions[0].reduceOnly = reduceOnly;
        _grant(sessionKey, scope);
        for (uint256 i; i < usedBefore; ++i) {
            vm.warp(block.timestamp + 1);
            _handle(
                _sessionOp(
                    SESSION_PK,
                    _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, i))),
                    uint40(block.timestamp + 30)
                )
            );
        }
        address successor = p256Successor ? _p256Id(NEXT_P256_PK) : next;
        bytes memory before = _authority(sessionKey);
        vm.prank(owner);
        sessions.rotateSession(sessionKey, successor);

        assertEq(keccak256(_authority(successor)), keccak256(before), "the successor holds exactly what was left");
        assertFalse(sessions.getSession(sessionKey).active);
        uint256 left = maxUses - usedBefore;
        for (uint256 i; i < left; ++i) {
            vm.warp(block.timestamp + 1);
            _handle(
                p256Successor
                    ? _p256SessionOp(
                        NEXT_P256_PK,
                        _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (1, i))),
                        uint40(block.timestamp + 30)
                    )
                    : _sessionOp(
                        NEXT_PK,
                        _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (1, i))),
                        uint40(block.timestamp + 30)
                    )
            );
        }
        vm.warp(block.timestamp + 1);
        PackedUserOperation memory over = p256Successor
            ? _p256SessionOp(
                NEXT_P256_PK,
                _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (2, 0))),
                uint40(block.timestamp + 30)
            )
            : _sessionOp(
                NEXT_PK,
                _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (2, 0))),
                uint40(block.timestamp + 30)
            );
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionExhausted.selector, successor));
        _handle(over);
        assertEq(venue.cancels(), maxUses, "both keys together made exactly maxUses calls");
    }
}
