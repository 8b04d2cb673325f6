// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ITradingAccount} from "../../../contracts/account/interfaces/ITradingAccount.sol";
import {AccountTestBase} from "../../utils/AccountTestBase.sol";
import {SessionAttacker} from "./SessionAttacker.sol";

/// @notice Whatever an attacker holding session keys does, value stays, dead keys stay dead, nothing
/// replays and every executed order is inside the live key's scope. foundry.toml: 256 runs x depth 50.
contract SessionInvariantTest is AccountTestBase {
    uint256 internal constant ENABLE_PK = 0xE7AB1E;

    SessionAttacker internal attacker;
    uint256 internal initialTokens;
    uint256 internal initialEth;

    function setUp() public override {
        super.setUp();
        ITradingAccount.SessionScope memory scope = _tradingScope();

        _grant(vm.addr(0x5E55), scope);
        _grant(vm.addr(0xDEAD5), scope);
        vm.prank(owner);
        account.revokeSession(vm.addr(0xDEAD5));
        ITradingAccount.SessionScope memory brief = _tradingScope();
        brief.validUntil = uint40(block.timestamp + 1);
        _grant(vm.addr(0xE1E1), brief);

        // A key enabled in its first op, then revoked: the attacker keeps the enable payload.
        address enableKey = vm.addr(ENABLE_PK);
        bytes32 grantDigest = account.grantDigest(enableKey, scope);
        PackedUserOperation memory op = _enableOp(OWNER_PK, ENABLE_PK, scope, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        _handle(op);
        vm.prank(owner);
        account.revokeSession(enableKey);
        bytes memory payload = new bytes(op.signature.length - 72);
        for (uint256 i; i < payload.length; ++i) payload[i] = op.signature[72 + i];

        vm.warp(block.timestamp + 2);
        attacker = new SessionAttacker(entryPoint, account, venue, usd, scope.validUntil, payload, grantDigest, ENABLE_PK);
        targetContract(address(attacker));

        initialTokens = usd.balanceOf(address(account)) + venue.margin(address(account));
        initialEth = address(account).balance + entryPoint.balanceOf(address(account)) + beneficiary.balance;
    }

    /// The handler is not vacuous: its in-scope moves really execute, its hostile ones are refused.
    function test_attacker_tradesInScopeAndIsRefusedOutside() public {
        // kind 0, arg 3e18: placeOrder(market 0, size -7e18, limit 0, reduceOnly): inside the scope.
        attacker.sendOp(0, 3e18, 0, 30);
        uint256 accepted = attacker.opsAccepted();
        attacker.sendOp(2, 1e6, 0, 30); // token transfer to the attacker
        attacker.sendOp(1, 1e6, 0, 30); // withdraw from the venue
        attacker.sendOp(5, 0, 0, 30); // take ownership
        assertEq(attacker.opsAccepted(), accepted, "hostile ops refused");
        assertEq(attacker.opsRefused(), 3);
        attacker.replay(0);
        assertEq(attacker.replayAccepted(), 0);
        assertEq(accepted, 1, "in-scope order accepted");
    }

    function invariant_noValueLeaves() public view {
        address loot = attacker.loot();
        assertEq(loot.balance, 0, "ETH reached the attacker");
        assertEq(usd.balanceOf(loot), 0, "tokens reached the attacker");
        assertEq(usd.allowance(address(account), loot), 0, "attacker got an allowance");
        assertEq(usd.balanceOf(address(account)) + venue.margin(address(account)), initialTokens, "collateral left");
        // ETH moves only as gas: out of the account and its deposit, into the beneficiary.
        assertEq(
            address(account).balance + entryPoint.balanceOf(address(account)) + beneficiary.balance,
            initialEth,
            "ETH left other than as gas"
        );
    }

    function invariant_deadKeysNeverValidate() public view {
        assertEq(attacker.revokedOrExpiredAccepted(), 0);
        assertFalse(account.getSession(vm.addr(0xDEAD5)).active);
        assertFalse(account.getSession(vm.addr(ENABLE_PK)).active);
    }

    function invariant_noOpAcceptedTwice() public view {
        assertEq(attacker.replayAccepted(), 0);
    }

    function invariant_ordersStayInScope() public view {
        assertEq(attacker.outOfScopeAccepted(), 0);
        uint256 n = venue.orderCount();
        for (uint256 i; i < n; ++i) {
            (address trader, uint32 market, int256 size, uint256 price,) = venue.orders(i);
            assertEq(trader, address(account));
            assertLt(market, 2);
            uint256 abs = size < 0 ? uint256(-size) : uint256(size);
            assertLe(abs, 10e18);
            assertLe(abs * price / 1e18, 100_000e18);
        }
    }

    function invariant_controlUnchanged() public view {
        assertEq(account.owner(), owner);
        assertEq(account.epoch(), 0);
    }
}
