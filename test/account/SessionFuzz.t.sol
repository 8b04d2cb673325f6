// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Fuzzing over scopes, calldata and signatures, each checked against a plain model of the rules.
contract SessionFuzzTest is AccountTestBase {
    function _tryHandle(PackedUserOperation memory op) internal returns (bool ok) {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        try entryPoint.handleOps(ops, beneficiary) {
            ok = true;
        } catch {
            ok = false;
        }
    }

    /// Order rules: the account accepts an order iff the model does, and refuses with the model's reason.
    function testFuzz_orderRules(
        uint32 marketId,
        int128 size,
        uint128 limitPrice,
        bool reduceOnly,
        uint64 mask,
        uint88 maxSize,
        uint96 maxNotional,
        bool requireReduce
    ) public {
        mask = mask | 1; // grants refuse an empty allowlist
        maxSize = uint88(bound(maxSize, 1, type(uint88).max));
        maxNotional = uint96(bound(maxNotional, 1, type(uint96).max));
        marketId = uint32(bound(marketId, 0, 80));
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[0] = _orderPermission(mask, maxSize, maxNotional, requireReduce);
        _grant(sessionKey, scope);

        uint256 absSize = size < 0 ? uint256(-int256(size)) : uint256(int256(size));
        uint256 notional = absSize * limitPrice / 1e18;
        bytes memory reason;
        if (marketId >= 64 || (mask >> marketId) & 1 == 0) {
            reason = abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, marketId);
        } else if (absSize > maxSize) {
            reason = abi.encodeWithSelector(ITradingAccount.SessionOrderTooLarge.selector, absSize, maxSize);
        } else if (notional > maxNotional) {
            reason = abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, notional, maxNotional);
        } else if (requireReduce && !reduceOnly) {
            reason = abi.encodeWithSelector(ITradingAccount.SessionReduceOnlyRequired.selector);
        }

        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(marketId, size, limitPrice, reduceOnly), uint40(block.timestamp + 30));
        if (reason.length != 0) _expectValidationRevert(reason);
        _handle(op);
        assertEq(venue.orderCount(), reason.length == 0 ? 1 : 0);
    }

    /// Arbitrary calldata from a session key never moves ETH or tokens out, and never validates unless it
    /// is a canonical execute of a permitted call.
    function testFuzz_randomCalldataMovesNothing(bytes calldata callData) public {
        _grant(sessionKey, _tradingScope());
        uint256 eth = address(account).balance + entryPoint.balanceOf(address(account));
        uint256 tokens = usd.balanceOf(address(account)) + venue.margin(address(account));
        bool ok = _tryHandle(_sessionOp(SESSION_PK, callData, uint40(block.timestamp + 30)));
        if (ok) {
            // Only gas left: what the account holds plus its deposit dropped by what the beneficiary earned.
            assertEq(address(account).balance + entryPoint.balanceOf(address(account)) + beneficiary.balance, eth);
        } else {
            assertEq(address(account).balance + entryPoint.balanceOf(address(account)), eth);
        }
        assertEq(usd.balanceOf(address(account)) + venue.margin(address(account)), tokens);
    }

    /// Random bytes as an owner signature never validate.
    function testFuzz_randomOwnerSignatureRefused(bytes calldata sig) public {
        PackedUserOperation memory op = _op(address(account), 0, _order(0, 1e18, 3000e18, false));
        op.signature = sig;
        assertFalse(_tryHandle(op));
        assertEq(venue.orderCount(), 0);
    }

    /// Random 65-byte owner signatures never validate (the only valid one is vanishingly unlikely).
    function testFuzz_random65ByteSignatureRefused(bytes32 r, bytes32 s, uint8 v) public {
        PackedUserOperation memory op = _op(address(account), 0, _order(0, 1e18, 3000e18, false));
        op.signature = abi.encodePacked(r, s, v);
        assertFalse(_tryHandle(op));
        assertEq(venue.orderCount(), 0);
    }

    /// A session signature with any byte flipped never validates.
    function testFuzz_tamperedSessionSignatureRefused(uint256 index, uint8 flip) public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        index = bound(index, 0, op.signature.length - 1);
        flip = uint8(bound(flip, 1, 255));
        op.signature[index] = bytes1(uint8(op.signature[index]) ^ flip);
        assertFalse(_tryHandle(op));
        assertEq(venue.orderCount(), 0);
    }

    /// Scope validation: a grant is stored iff the model accepts its window, ttl and rate fields.
    function testFuzz_grantScopeChecks(uint40 validAfter, uint40 validUntil, uint16 ttl, uint16 count, uint24 period)
        public
    {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.validAfter = validAfter;
        scope.validUntil = validUntil;
        scope.maxOpTtl = ttl;
        scope.rateCount = count;
        scope.ratePeriod = period;
        bool ok = validUntil > block.timestamp && validUntil > validAfter && ttl != 0 && ((count == 0) == (period == 0));
        vm.prank(owner);
        if (!ok) vm.expectPartialRevert(ITradingAccount.InvalidScope.selector);
        sessions.grantSession(sessionKey, scope);
        assertEq(sessions.getSession(sessionKey).active, ok);
    }

    /// Native value: a call goes through iff its value is within the permission's cap.
    function testFuzz_valueCap(uint96 cap, uint96 value) public {
        value = uint96(bound(value, 0, 10 ether));
        Payee payee = new Payee();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.permissions[1] = _callPermission(address(payee), Payee.take.selector, cap);
        scope.valueBudget = 10 ether;
        _grant(sessionKey, scope);
        PackedUserOperation memory op = _sessionOp(
            SESSION_PK, _exec(address(payee), value, abi.encodeCall(Payee.take, ())), uint40(block.timestamp + 30)
        );
        if (value > cap) {
            _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionValueTooHigh.selector, value, cap));
        }
        _handle(op);
        assertEq(address(payee).balance, value > cap ? 0 : value);
    }

    /// Op expiry: an op signed to expire at `until` is accepted exactly within [until - ttl, until].
    function testFuzz_opExpiryWindow(uint16 ttl, uint32 ahead, uint32 wait) public {
        ttl = uint16(bound(ttl, 1, 3600));
        ahead = uint32(bound(ahead, 0, 7200));
        wait = uint32(bound(wait, 0, 7200));
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxOpTtl = ttl;
        _grant(sessionKey, scope);
        uint40 until = uint40(block.timestamp + ahead);
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), until);
        vm.warp(block.timestamp + wait);
        bool due = block.timestamp + ttl >= until && block.timestamp <= until;
        if (!due) _expectFailedOp("AA22 expired or not due");
        _handle(op);
        assertEq(venue.orderCount(), due ? 1 : 0);
    }
}

/// @notice A payable target for value-cap fuzzing.
contract Payee {
    function take() external payable {}
}
