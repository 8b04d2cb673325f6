// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {ExecutionCalldata} from "../../contracts/account/libraries/ExecutionCalldata.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Every session-key rule, each with an allowing and a denying case, through EntryPoint.handleOps.
contract SessionKeysTest is AccountTestBase {
    uint40 internal opUntil;

    function setUp() public override {
        super.setUp();
        _grant(sessionKey, _tradingScope());
        opUntil = uint40(block.timestamp + 30);
    }

    function _send(bytes memory callData) internal {
        _handle(_sessionOp(SESSION_PK, callData, opUntil));
    }

    /*//////////////////////////////////////////////////////////////
                        ALLOWED CALLS AND ORDER RULES
    //////////////////////////////////////////////////////////////*/

    function test_session_placesOrderInScope() public {
        _send(_order(1, -2e18, 3000e18, false));
        assertEq(venue.orderCount(), 1);
        (address trader, uint32 market, int256 size, uint256 price, bool reduceOnly) = venue.orders(0);
        assertEq(trader, address(account));
        assertEq(market, 1);
        assertEq(size, -2e18);
        assertEq(price, 3000e18);
        assertFalse(reduceOnly);
    }

    function test_session_permittedSelectorOnOtherTargetRefused() public {
        bytes memory inner = abi.encodeCall(IPerpVenue.cancelOrder, (0, 1));
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(usd), IPerpVenue.cancelOrder.selector
            )
        );
        _send(_exec(address(usd), 0, inner));
    }

    function test_session_cancelPermitted() public {
        _send(_exec(address(venue), 0, abi.encodeCall(IPerpVenue.cancelOrder, (0, 1))));
        assertEq(venue.cancels(), 1);
    }

    function test_session_unpermittedSelectorRefused() public {
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(venue), IPerpVenue.withdrawMargin.selector
            )
        );
        _send(_exec(address(venue), 0, abi.encodeCall(IPerpVenue.withdrawMargin, (1e6))));
    }

    function test_session_depositMarginPermitted() public {
        _send(_exec(address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (250e6))));
        assertEq(venue.margin(address(account)), 250e6);
    }

    function test_session_marketAllowed() public {
        _send(_order(0, 1e18, 3000e18, false));
        _send(_order(1, 1e18, 3000e18, false));
        assertEq(venue.orderCount(), 2);
    }

    function test_session_marketNotAllowed() public {
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, 2));
        _send(_order(2, 1e18, 3000e18, false));
    }

    function test_session_marketAbove63NotAllowed() public {
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, 64));
        _send(_order(64, 1e18, 3000e18, false));
    }

    function test_session_sizeAtLimit() public {
        _send(_order(0, -10e18, 1000e18, false));
        assertEq(venue.orderCount(), 1);
    }

    function test_session_sizeOverLimit() public {
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionOrderTooLarge.selector, 10e18 + 1, 10e18));
        _send(_order(0, -(10e18 + 1), 1000e18, false));
    }

    function test_session_notionalAtLimit() public {
        // 10 units x $10,000 = $100,000, exactly the cap.
        _send(_order(0, 10e18, 10_000e18, false));
        assertEq(venue.orderCount(), 1);
    }

    function test_session_notionalOverLimit() public {
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 100_000e18 + 5, 100_000e18)
        );
        _send(_order(0, 5e18, 20_000e18 + 1, false));
    }

    function test_session_hugeLimitPriceRefused() public {
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, type(uint256).max, 100_000e18)
        );
        _send(_order(0, 1, type(uint256).max, false));
    }

    function test_session_reduceOnlyRequired() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[0].reduceOnly = true;
        _grant(sessionKey, scope);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionReduceOnlyRequired.selector));
        _send(_order(0, -1e18, 3000e18, false));
    }

    function test_session_reduceOnlyOrderPasses() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[0].reduceOnly = true;
        _grant(sessionKey, scope);
        _send(_order(0, -1e18, 3000e18, true));
        (,,,, bool reduceOnly) = venue.orders(0);
        assertTrue(reduceOnly);
    }

    /*//////////////////////////////////////////////////////////////
                              NATIVE VALUE
    //////////////////////////////////////////////////////////////*/

    function test_session_orderWithValueRefused() public {
        bytes memory data = abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false));
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionValueTooHigh.selector, 1, 0));
        _send(_exec(address(venue), 1, data));
    }

    function test_session_valueWithinCap() public {
        ValueSink sink = new ValueSink();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(sink), ValueSink.pay.selector, 0.5 ether);
        scope.valueBudget = 1 ether;
        _grant(sessionKey, scope);
        _send(_exec(address(sink), 0.5 ether, abi.encodeCall(ValueSink.pay, ())));
        assertEq(address(sink).balance, 0.5 ether);
    }

    function test_session_valueOverCap() public {
        ValueSink sink = new ValueSink();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(sink), ValueSink.pay.selector, 0.5 ether);
        scope.valueBudget = 1 ether;
        _grant(sessionKey, scope);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionValueTooHigh.selector, 0.5 ether + 1, 0.5 ether)
        );
        _send(_exec(address(sink), 0.5 ether + 1, abi.encodeCall(ValueSink.pay, ())));
    }

    function test_session_plainEthTransferRefused() public {
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionCallNotPermitted.selector, address(0xCAFE), bytes4(0))
        );
        _send(_exec(address(0xCAFE), 1 ether, ""));
    }

    /*//////////////////////////////////////////////////////////////
                                 BATCHES
    //////////////////////////////////////////////////////////////*/

    function test_session_batchAllInScope() public {
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](3);
        calls[0] = _c(abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false)));
        calls[1] = _c(abi.encodeCall(IPerpVenue.placeOrder, (1, -1e18, 3000e18, false)));
        calls[2] = _c(abi.encodeCall(IPerpVenue.cancelOrder, (0, 0)));
        _send(abi.encodeCall(BaseAccount.executeBatch, (calls)));
        assertEq(venue.orderCount(), 2);
        assertEq(venue.cancels(), 1);
    }

    function test_session_batchWithOneBadCallRefused() public {
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](3);
        calls[0] = _c(abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false)));
        calls[1] = _c(abi.encodeCall(IPerpVenue.withdrawMargin, (1e6)));
        calls[2] = _c(abi.encodeCall(IPerpVenue.cancelOrder, (0, 0)));
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(venue), IPerpVenue.withdrawMargin.selector
            )
        );
        _send(abi.encodeCall(BaseAccount.executeBatch, (calls)));
    }

    function test_session_emptyBatchValidates() public {
        _send(abi.encodeCall(BaseAccount.executeBatch, (new BaseAccount.Call[](0))));
        assertEq(venue.orderCount(), 0);
    }

    /*//////////////////////////////////////////////////////////////
                          WHAT A SESSION NEVER DOES
    //////////////////////////////////////////////////////////////*/

    function test_session_mayNotCallAccountDirectly() public {
        bytes memory cd = abi.encodeCall(ISessionManager.grantSession, (sessionKey, _tradingScope()));
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionSelectorNotAllowed.selector, ISessionManager.grantSession.selector
            )
        );
        _send(cd);
    }

    function test_session_mayNotCallAccountThroughExecute() public {
        bytes memory inner = abi.encodeCall(ISessionManager.revokeAllSessions, ());
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector,
                address(account),
                ISessionManager.revokeAllSessions.selector
            )
        );
        _send(_exec(address(account), 0, inner));
    }

    function test_session_mayNotTransferTokens() public {
        bytes memory inner = abi.encodeCall(usd.transfer, (sessionKey, 1e6));
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(usd), usd.transfer.selector
            )
        );
        _send(_exec(address(usd), 0, inner));
    }

    function test_grant_refusesFundMovingSelectors() public {
        bytes4[4] memory banned = [
            usd.transfer.selector, usd.approve.selector, usd.transferFrom.selector, IPerpVenue.withdrawMargin.selector
        ];
        for (uint256 i; i < banned.length; ++i) {
            ITradingAccount.SessionScope memory scope = _tradingScope();
            scope.permissions[1] = _callPermission(address(usd), banned[i], 0);
            vm.prank(owner);
            vm.expectRevert(
                abi.encodeWithSelector(
                    ITradingAccount.InvalidPermission.selector, 1, ITradingAccount.PermissionFault.MovesFundsOut
                )
            );
            sessions.grantSession(sessionKey, scope);
        }
    }

    function test_grant_refusesAccountAndEntryPointTargets() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(account), ISessionManager.revokeSession.selector, 0);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                ITradingAccount.InvalidPermission.selector, 1, ITradingAccount.PermissionFault.TargetIsAccount
            )
        );
        sessions.grantSession(sessionKey, scope);

        scope.permissions[1] = _callPermission(address(entryPoint), bytes4(keccak256("withdrawTo(address,uint256)")), 0);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                ITradingAccount.InvalidPermission.selector, 1, ITradingAccount.PermissionFault.TargetIsEntryPoint
            )
        );
        sessions.grantSession(sessionKey, scope);
    }

    /*//////////////////////////////////////////////////////////////
                          VALIDITY AND PER-OP EXPIRY
    //////////////////////////////////////////////////////////////*/

    function test_window_beforeValidAfterRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.validAfter = uint40(T0 + 1 hours);
        _grant(sessionKey, scope);
        _expectFailedOp("AA22 expired or not due");
        _send(_order(0, 1e18, 3000e18, false));

        // validAfter is exclusive, as everywhere in ERC-4337.
        vm.warp(T0 + 1 hours + 1);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30)));
        assertEq(venue.orderCount(), 1);
    }

    function test_window_afterValidUntilRefused() public {
        vm.warp(T0 + 8 hours + 1);
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
    }

    function test_opExpiry_expiredOpRefused() public {
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        vm.warp(opUntil + 1);
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
    }

    function test_opExpiry_tooFarAheadNotYetValid() public {
        // maxOpTtl is 60 s: an op that claims to live until now + 120 becomes valid only at now + 60.
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 120));
        vm.warp(block.timestamp + 59);
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
        vm.warp(block.timestamp + 1);
        _handle(op);
        assertEq(venue.orderCount(), 1);
    }

    function test_opExpiry_fullTtlUsable() public {
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 60));
        _handle(op);
        assertEq(venue.orderCount(), 1);
    }

    function test_opExpiry_required() public {
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidOpExpiry.selector, 0));
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), 0));
    }

    function test_opExpiry_beyond40BitsRefused() public {
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        op.signature[1] = 0x10; // the top byte of the 48-bit field: the key never signed that
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidOpExpiry.selector, uint48(opUntil) | (uint48(0x10) << 40))
        );
        _handle(op);
    }

    function test_opExpiry_cappedBySessionEnd() public {
        vm.warp(T0 + 8 hours - 10);
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        vm.warp(T0 + 8 hours + 1);
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
    }

    /// Audit class: validUntil = 0 means "forever" in ERC-4337; never for a session key.
    function test_grant_refusesValidUntilZero() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.validUntil = 0;
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.ValidUntilInPast)
        );
        sessions.grantSession(address(0x1234), scope);
    }

    /*//////////////////////////////////////////////////////////////
                            RATE AND USE LIMITS
    //////////////////////////////////////////////////////////////*/

    function _rateLimited(uint16 count, uint24 period, uint32 maxUses, uint16 ttl) internal {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxOpTtl = ttl;
        scope.rateCount = count;
        scope.ratePeriod = period;
        scope.maxUses = maxUses;
        _grant(sessionKey, scope);
    }

    function test_rate_withinWindow() public {
        _rateLimited(3, 60, 0, 10);
        uint40 until = uint40(block.timestamp + 10);
        for (uint256 i; i < 3; ++i) {
            _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until));
        }
        assertEq(venue.orderCount(), 3);
        assertEq(sessions.getSession(sessionKey).windowUsed, 3);
    }

    function test_rate_fullWindowRefusesOpThatExpiresFirst() public {
        _rateLimited(3, 60, 0, 10);
        uint40 until = uint40(block.timestamp + 10);
        for (uint256 i; i < 3; ++i) {
            _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until));
        }
        uint40 next = sessions.getSession(sessionKey).windowStart + 60;
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionRateLimited.selector, sessionKey, next));
        _handle(op);
        // In the next window the key trades again.
        vm.warp(next + 1);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 10)));
        assertEq(venue.orderCount(), 4);
    }

    function test_rate_fullWindowPushesValidAfterToNext() public {
        // ttl 60 over 20 s windows of 2 ops: right now the windows inside the ttl hold 4 ops, no more.
        _rateLimited(2, 20, 0, 60);
        uint40 until = uint40(block.timestamp + 30);
        for (uint256 i; i < 4; ++i) {
            _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until));
        }
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until);
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
        // The same op is due once its window opens.
        uint40 next = sessions.getSession(sessionKey).windowStart + 20;
        vm.warp(next + 1);
        _handle(op);
        assertEq(venue.orderCount(), 5);
    }

    function test_rate_idleKeyCannotBankWindows() public {
        _rateLimited(2, 10, 0, 10);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 10)));
        vm.warp(block.timestamp + 2 hours);
        uint40 until = uint40(block.timestamp + 10);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until));
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until));
        // Two hours of idle windows do not turn into a burst: the third op waits for the next window.
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until);
        _expectFailedOp("AA22 expired or not due");
        _handle(op);
        vm.warp(sessions.getSession(sessionKey).windowStart + 10 + 1);
        _handle(op);
        assertEq(venue.orderCount(), 4);
    }

    function test_uses_capReached() public {
        _rateLimited(0, 0, 2, 60);
        _send(_order(0, 1e18, 3000e18, false));
        _send(_order(0, 1e18, 3000e18, false));
        assertEq(sessions.getSession(sessionKey).usesLeft, 0);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionExhausted.selector, sessionKey));
        _send(_order(0, 1e18, 3000e18, false));
    }

    function test_grant_refusesHalfRateLimit() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.rateCount = 5;
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.HalfRateLimit)
        );
        sessions.grantSession(sessionKey, scope);
    }

    /*//////////////////////////////////////////////////////////////
                          REVOCATION AND LISTING
    //////////////////////////////////////////////////////////////*/

    function test_revoke_oneKey() public {
        address other = vm.addr(0x0DD);
        _grant(other, _tradingScope());
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _send(_order(0, 1e18, 3000e18, false));
        // The other key still trades.
        _handle(_sessionOp(0x0DD, _order(0, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
    }

    function test_revoke_allKeysByEpoch() public {
        address other = vm.addr(0x0DD);
        _grant(other, _tradingScope());
        _handle(_ownerOp(_exec(address(account), 0, abi.encodeCall(ISessionManager.revokeAllSessions, ()))));
        assertEq(account.epoch(), 1);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _send(_order(0, 1e18, 3000e18, false));
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, other));
        _handle(_sessionOp(0x0DD, _order(0, 1e18, 3000e18, false), opUntil));
        // A fresh grant after the panic button works again.
        _grant(sessionKey, _tradingScope());
        _send(_order(0, 1e18, 3000e18, false));
        assertEq(venue.orderCount(), 1);
    }

    function test_revoke_refusesStranger() public {
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        sessions.revokeSession(sessionKey);
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        sessions.revokeAllSessions();
    }

    /// Audit class: ops signed by a key before its revocation and sent after, even after a re-grant.
    function test_revoke_opsSignedBeforeRevokeStayDead() public {
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _handle(op);
        // Re-granting the same key does not revive the old op: it signed over the old grantId.
        _grant(sessionKey, _tradingScope());
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_rotation_overlap() public {
        uint256 nextPk = 0x2E55;
        address next = vm.addr(nextPk);
        _grant(next, _tradingScope());
        // Both keys trade during the overlap.
        _send(_order(0, 1e18, 3000e18, false));
        _handle(_sessionOp(nextPk, _order(0, 1e18, 3000e18, false), opUntil));
        // Then the old one is let go.
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _send(_order(0, 1e18, 3000e18, false));
        assertEq(venue.orderCount(), 2);
    }

    function test_listing_keysScopesAndUses() public {
        _rateLimited(5, 60, 100, 60);
        _send(_order(0, 1e18, 3000e18, false));
        address[] memory keys = sessions.sessionKeys();
        assertEq(keys.length, 1);
        assertEq(keys[0], sessionKey);
        ITradingAccount.SessionInfo memory info = sessions.getSession(sessionKey);
        assertTrue(info.active);
        assertEq(info.grantId, 2);
        assertEq(info.validUntil, T0 + 8 hours);
        assertEq(info.rateCount, 5);
        assertEq(info.ratePeriod, 60);
        assertEq(info.windowUsed, 1);
        assertEq(info.usesLeft, 99);
        assertEq(info.permissions.length, 3);
        assertEq(info.permissions[0].target, address(venue));
        assertEq(info.permissions[0].selector, IPerpVenue.placeOrder.selector);
        assertEq(info.permissions[0].marketMask, 0x3);
        assertEq(info.permissions[0].maxOrderSize, 10e18);
        assertEq(info.permissions[0].maxOrderNotional, 100_000e18);
        assertEq(info.permissions[1].selector, IPerpVenue.cancelOrder.selector);
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        info = sessions.getSession(sessionKey);
        assertFalse(info.active);
        assertEq(info.permissions.length, 0);
    }

    function test_regrant_dropsOldPermissions() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions = new ITradingAccount.CallPermission[](1);
        scope.permissions[0] = _orderPermission(0x1, 1e18, 10_000e18, false);
        _grant(sessionKey, scope);
        _expectValidationRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(venue), IPerpVenue.cancelOrder.selector
            )
        );
        _send(_exec(address(venue), 0, abi.encodeCall(IPerpVenue.cancelOrder, (0, 1))));
    }

    /*//////////////////////////////////////////////////////////////
                               NONCE LANES
    //////////////////////////////////////////////////////////////*/

    function test_lanes_parallelStreams() public {
        PackedUserOperation memory a = _op(
            address(account),
            _sessionNonce(sessionKey, 1),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false))
        );
        PackedUserOperation memory b = _op(
            address(account),
            _sessionNonce(sessionKey, 2),
            UserOps.forSession(sessionKey, _order(1, 1e18, 3000e18, false))
        );
        _signSession(a, SESSION_PK, opUntil, 1);
        _signSession(b, SESSION_PK, opUntil, 1);
        // Lane 2 goes first: lanes do not wait for each other.
        _handle(b);
        _handle(a);
        assertEq(venue.orderCount(), 2);
    }

    function test_lanes_otherKeysLaneRefused() public {
        address other = vm.addr(0x0DD);
        _grant(other, _tradingScope());
        // The session key signs an op on the other key's lane: it validates as the other key and fails.
        PackedUserOperation memory op =
            _op(address(account), _sessionNonce(other, 0), UserOps.forSession(other, _order(0, 1e18, 3000e18, false)));
        _signSession(op, SESSION_PK, opUntil, 2);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_lanes_defaultLaneHasNoKey() public {
        PackedUserOperation memory op =
            _op(address(account), 0, UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)));
        _signSession(op, SESSION_PK, opUntil, 1);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.NoSessionKeyInNonce.selector));
        _handle(op);
    }

    function test_lanes_nonceNotReusable() public {
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        _handle(op);
        _expectFailedOp("AA25 invalid account nonce");
        _handle(op);
    }

    /*//////////////////////////////////////////////////////////////
                           MALFORMED CALLDATA
    //////////////////////////////////////////////////////////////*/

    function test_calldata_nonCanonicalOffsetRefused() public {
        bytes memory inner = abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false));
        // execute(target, value, data) with the data offset moved one word on and a decoy word in between.
        bytes memory cd = abi.encodePacked(
            BaseAccount.execute.selector,
            abi.encode(address(venue), uint256(0), uint256(0x80), uint256(0), inner.length),
            inner
        );
        _expectValidationRevert(abi.encodeWithSelector(ExecutionCalldata.MalformedCalldata.selector));
        _send(cd);
    }

    function test_calldata_dirtyAddressRefused() public {
        bytes memory inner = abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false));
        bytes memory cd = abi.encodeCall(BaseAccount.execute, (address(venue), 0, inner));
        cd[4] = 0x01; // a bit above the 160 address bits
        _expectValidationRevert(abi.encodeWithSelector(ExecutionCalldata.MalformedCalldata.selector));
        _send(cd);
    }

    function test_calldata_truncatedRefused() public {
        bytes memory cd = _order(0, 1e18, 3000e18, false);
        assembly {
            mstore(cd, 100)
        }
        _expectValidationRevert(abi.encodeWithSelector(ExecutionCalldata.MalformedCalldata.selector));
        _send(cd);
    }

    function test_calldata_badBoolInOrderRefused() public {
        bytes memory inner = abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false));
        inner[inner.length - 1] = 0x02;
        _expectValidationRevert(abi.encodeWithSelector(ExecutionCalldata.MalformedCalldata.selector));
        _send(_exec(address(venue), 0, inner));
    }

    function _c(bytes memory data) internal view returns (BaseAccount.Call memory c) {
        c.target = address(venue);
        c.data = data;
    }
}

/// @notice A payable target for value-cap tests.
contract ValueSink {
    function pay() external payable {}
}
