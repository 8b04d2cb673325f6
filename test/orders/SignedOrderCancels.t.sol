// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {UserOps} from "../../script/UserOps.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice Cancels at three grains — one order (a bitmap word at the venue), every order of a key (its order
/// epoch) and the grant (revoke) — each refused fill beside its positive control.
contract SignedOrderCancelsTest is OrderTestBase {
    function setUp() public override {
        super.setUp();
        _grantMaker();
    }

    /// @dev An op of the maker key whose callData is `callData` itself (no executeSession), valid 30 s.
    function _keyCallOp(bytes memory callData) internal view returns (PackedUserOperation memory op) {
        op = _op(entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)), callData);
        uint48 until = uint48(block.timestamp + 30);
        bytes32 digest = UserOps.sessionDigest(
            entryPoint.getUserOpHash(op), until, UserOps.grantBinding(sessions.getSession(key).grantId)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(KEY_PK, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
    }

    /// One bitmap write cancels many orders: the key itself (from its own address, paying its own gas), the
    /// account's owner (an owner call through the account) or a key op of the account may set bits; a third
    /// party may not. Orders whose bits are clear still settle.
    function test_cancel_bitmap() public {
        SignedOrder.Order memory a = _makerOrder(false, 0.1e18, 60_000e18); // nonce 0
        SignedOrder.Order memory b = _makerOrder(false, 0.2e18, 60_000e18); // nonce 1
        SignedOrder.Order memory c = _makerOrder(false, 0.1e18, 60_000e18); // nonce 2
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.NotOrderOwner.selector, address(0xBAD)));
        venue.cancelOrders(address(account), key, 0, 1);

        vm.prank(key);
        venue.cancelOrders(address(account), key, 0, 1); // a
        _settleExpect(_fill(a, taker, 0.1e18), abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, _hash(a)));
        _settle(_fill(b, taker, 0.1e18));

        // The key through an op of its own (protective: no executeSession, no counted call).
        _send(_keyCallOp(abi.encodeCall(ISessionManager.cancelSignedOrders, (key, address(venue), 0, 1 << 2))));
        _settleExpect(_fill(c, taker, 0.1e18), abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, _hash(c)));

        // The owner: a whole word (256 nonces) in one write; b's remaining size dies with it.
        vm.prank(owner);
        account.execute(
            address(venue),
            0,
            abi.encodeCall(ISignedOrderVenue.cancelOrders, (address(account), key, 0, type(uint256).max))
        );
        _settleExpect(_fill(b, taker, 0.1e18), abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, _hash(b)));
        assertEq(venue.cancelledOrders(address(account), key, 0), type(uint256).max);
    }

    /// A key's cancel op names a venue it may trade on; elsewhere the account would call an arbitrary contract.
    function test_cancel_keyOpOnlyAtItsVenues() public {
        bytes memory callData = abi.encodeCall(ISessionManager.cancelSignedOrders, (key, address(usd), 0, 1));
        PackedUserOperation memory op = _keyCallOp(callData);
        _expectRefused(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector,
                address(usd),
                ISessionManager.cancelSignedOrders.selector
            )
        );
        _send(op);
        // Another key's orders: the op must name its own key.
        op = _keyCallOp(abi.encodeCall(ISessionManager.cancelSignedOrders, (takerKey, address(venue), 0, 1)));
        _expectRefused(abi.encodeWithSelector(ITradingAccount.SessionKeyMismatch.selector, takerKey, key));
        _send(op);
    }

    /// Bumping the key's order epoch kills every order it signed before; orders under the new epoch settle.
    /// The key does it in an op of its own, even past its dead-man deadline and with its rate window full.
    function test_epochBump_byTheKeyPastDeadlineAndRate() public {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.rateCount = 1;
        scope.ratePeriod = 3600;
        _grantMaker(scope);
        vm.prank(owner);
        sessions.heartbeat(key, 60);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        SignedOrder.Order memory old = _makerOrder(false, 0.2e18, 60_000e18);
        SignedOrder.Order memory oldReduce = _makerOrder(true, 0.1e18, 60_000e18);
        oldReduce.reduceOnly = true;
        _settle(_fill(old, taker, 0.1e18)); // fills the rate window
        vm.warp(block.timestamp + 61); // past the deadline
        _price(60_000e18, 3_000e18);
        _send(_keyCallOp(abi.encodeCall(ISessionManager.bumpOrderEpoch, (key))));
        assertEq(sessions.orderEpoch(key), 1);
        SignedOrder.Order memory reduce = _makerOrder(true, 0.1e18, 60_000e18);
        reduce.reduceOnly = true;
        SignedOrder.Order memory takerSell = _takerOrder(false, 1e18, 60_000e18);
        // The old order (even reduce-only) is dead; a new reduce-only order passes the deadline and the rate.
        _settleExpect(
            _fill(oldReduce, takerSell, 0.1e18),
            abi.encodeWithSelector(ITradingAccount.OrderEpochMismatch.selector, 0, 1)
        );
        _settle(_fill(reduce, takerSell, 0.1e18));
        assertEq(_makerBtc(), 0);
    }

    /// The owner bumps the epoch too; a third party may not.
    function test_epochBump_byTheOwner() public {
        SignedOrder.Order memory old = _makerOrder(false, 0.2e18, 60_000e18);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        vm.prank(owner);
        sessions.bumpOrderEpoch(key);
        _settleExpect(
            _fill(old, taker, 0.1e18), abi.encodeWithSelector(ITradingAccount.OrderEpochMismatch.selector, 0, 1)
        );
        _settle(_fill(_makerOrder(false, 0.2e18, 60_000e18), taker, 0.1e18));
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, address(0xBAD)));
        sessions.bumpOrderEpoch(key);
    }

    /// Revoking the grant kills the key's orders; granting the key again does not revive them (the grant id).
    function test_revoke_andRegrant_killOldOrders() public {
        SignedOrder.Order memory old = _makerOrder(false, 0.2e18, 60_000e18);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        _settle(_fill(old, taker, 0.05e18));
        vm.prank(owner);
        sessions.revokeSession(key);
        _settleExpect(
            _fill(old, taker, 0.05e18), abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, key)
        );
        uint32 grantId = _grantMaker();
        _settleExpect(
            _fill(old, taker, 0.05e18),
            abi.encodeWithSelector(ITradingAccount.OrderGrantMismatch.selector, old.grantId, grantId)
        );
        _settle(_fill(_makerOrder(false, 0.2e18, 60_000e18), taker, 0.05e18));
        // revokeAllSessions (the panic button) kills them all the same.
        SignedOrder.Order memory live = _makerOrder(false, 0.2e18, 60_000e18);
        vm.prank(owner);
        sessions.revokeAllSessions();
        _settleExpect(
            _fill(live, taker, 0.05e18), abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, key)
        );
    }

    /// Past the session's end no fill settles, reduce-only or not.
    function test_sessionWindow_refusedAfterValidUntil() public {
        SignedOrder.Order memory o = _makerOrder(false, 0.2e18, 60_000e18);
        o.expiry = uint64((block.timestamp + 10 hours) * 1000);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        taker.expiry = o.expiry;
        ITradingAccount.SessionInfo memory info = sessions.getSession(key);
        vm.warp(info.validUntil + 1);
        _price(60_000e18, 3_000e18);
        _settleExpect(
            _fill(o, taker, 0.1e18),
            abi.encodeWithSelector(ITradingAccount.SessionOutsideWindow.selector, info.validAfter, info.validUntil)
        );
    }
}
