// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ITradingAccount} from "../../../contracts/account/interfaces/ITradingAccount.sol";
import {TestPaymaster} from "../../mocks/TestPaymaster.sol";
import {AccountTestBase} from "../../utils/AccountTestBase.sol";
import {SessionAttacker} from "./SessionAttacker.sol";

/// @notice Whatever an attacker holding session keys does — any calls and batch shape, any gas fields and fee
/// prices, any paymaster, any submitter and beneficiary — value leaves only within the live key's budgets, dead
/// keys stay dead, nothing replays, calls stay within the call-counted rate and uses, and every executed order
/// is inside the scope. foundry.toml: 256 runs x depth 50.
contract SessionInvariantTest is AccountTestBase {
    uint256 internal constant ENABLE_PK = 0xE7AB1E;
    uint16 internal constant RATE = 5;
    uint24 internal constant PERIOD = 20;
    uint16 internal constant TTL = 30;
    uint32 internal constant USES = 40;
    uint128 internal constant FEE_BUDGET = 3 * TEST_OP_COST;
    uint128 internal constant VALUE_BUDGET = 0.3 ether;
    uint128 internal constant PAYMASTER_BUDGET = 4 * TEST_OP_COST;

    SessionAttacker internal attacker;
    address internal sink;
    uint256 internal initialTokens;
    uint256 internal initialEth;
    address internal listedPaymaster;

    function setUp() public override {
        super.setUp();
        sink = address(new InvariantSink());
        TestPaymaster listed = new TestPaymaster(entryPoint);
        listedPaymaster = address(listed);
        TestPaymaster other = new TestPaymaster(entryPoint);
        listed.deposit{value: 50 ether}();
        other.deposit{value: 50 ether}();

        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxOpTtl = TTL;
        scope.rateCount = RATE;
        scope.ratePeriod = PERIOD;
        scope.maxUses = USES;
        scope.maxCallsPerOp = 4;
        scope.feeBudget = FEE_BUDGET;
        scope.valueBudget = VALUE_BUDGET;
        scope.permissions[1] = _callPermission(sink, InvariantSink.pay.selector, 0.1 ether);
        scope.paymasters = new address[](1);
        scope.paymasters[0] = address(listed);
        scope.paymasterBudget = PAYMASTER_BUDGET;

        _grant(vm.addr(0x5E55), scope);
        _grant(vm.addr(0xDEAD5), scope);
        vm.prank(owner);
        sessions.revokeSession(vm.addr(0xDEAD5));
        ITradingAccount.SessionScope memory brief = _tradingScope();
        brief.validUntil = uint40(block.timestamp + 1);
        _grant(vm.addr(0xE1E1), brief);

        // A key enabled in its first op, then revoked: the attacker keeps the enable payload.
        address enableKey = vm.addr(ENABLE_PK);
        bytes32 grantDigest = sessions.grantDigest(enableKey, scope);
        PackedUserOperation memory op =
            _enableOp(OWNER_PK, ENABLE_PK, scope, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        _handle(op);
        vm.prank(owner);
        sessions.revokeSession(enableKey);
        bytes memory payload = new bytes(op.signature.length - 72);
        for (uint256 i; i < payload.length; ++i) {
            payload[i] = op.signature[72 + i];
        }

        vm.warp(block.timestamp + 2);
        attacker = new SessionAttacker(
            entryPoint,
            account,
            venue,
            usd,
            sink,
            address(listed),
            address(other),
            scope.validUntil,
            payload,
            grantDigest,
            ENABLE_PK
        );
        targetContract(address(attacker));

        initialTokens = usd.balanceOf(address(account)) + venue.margin(address(account));
        initialEth = _accountEth();
    }

    function _accountEth() internal view returns (uint256) {
        return address(account).balance + entryPoint.balanceOf(address(account));
    }

    function _gas(uint8 routing) internal pure returns (SessionAttacker.Gas memory g) {
        g = SessionAttacker.Gas(1_000_000, 1_000_000, 60_000, 10 gwei, 1 gwei, routing);
    }

    /// The handler is not vacuous: its in-scope moves really execute, its hostile ones are refused.
    function test_attacker_tradesInScopeAndIsRefusedOutside() public {
        // kind 0, arg 3e18: placeOrder(market 0, size -7e18, limit 0, reduceOnly): inside the scope.
        attacker.sendOp(0, 3e18, 1, 0, 30, _gas(3));
        uint256 accepted = attacker.opsAccepted();
        attacker.sendOp(2, 1e6, 1, 0, 30, _gas(3)); // token transfer to the attacker
        attacker.sendOp(1, 1e6, 1, 0, 30, _gas(3)); // withdraw from the venue
        attacker.sendOp(5, 0, 1, 0, 30, _gas(3)); // take ownership
        attacker.sendOp(9, 1e6, 1, 0, 30, _gas(3)); // fund the venue's pool with the account's tokens
        // The gas channel: huge fields at a huge price, paid to the attacker.
        attacker.sendOp(
            0, 3e18, 1, 0, 30, SessionAttacker.Gas(20_000_000, 20_000_000, 20_000_000, 10_000 gwei, 10_000 gwei, 3)
        );
        // The batch channel: six orders in one op.
        attacker.sendOp(0, 3e18, 6, 0, 30, _gas(3));
        assertEq(attacker.opsAccepted(), accepted, "hostile ops refused");
        assertEq(attacker.opsRefused(), 6);
        attacker.replay(0);
        assertEq(attacker.replayAccepted(), 0);
        assertEq(accepted, 1, "in-scope order accepted");
        // A sponsored op through the listed paymaster goes, and the account pays nothing for it.
        uint256 eth = _accountEth();
        attacker.sendOp(0, 4e18, 1, 0, 30, _gas(3 | 4));
        assertEq(attacker.opsAccepted(), 2);
        assertEq(_accountEth(), eth);
        // The gas channel through the listed paymaster: refused by the key's paymaster budget.
        uint256 deposit = entryPoint.balanceOf(listedPaymaster);
        attacker.sendOp(
            0, 4e18, 1, 0, 30, SessionAttacker.Gas(20_000_000, 20_000_000, 20_000_000, 10_000 gwei, 10_000 gwei, 3 | 4)
        );
        assertEq(attacker.opsAccepted(), 2);
        assertEq(entryPoint.balanceOf(listedPaymaster), deposit, "the paymaster paid nothing");
    }

    /// Money: ETH leaves the account (balance and EntryPoint deposit) only as gas within the live key's fee
    /// budget and as value within its value budget; tokens leave only into the venue.
    function invariant_moneyWithinBudgets() public view {
        address loot = attacker.loot();
        assertEq(usd.balanceOf(loot), 0, "tokens reached the attacker");
        assertEq(usd.allowance(address(account), loot), 0, "attacker got an allowance");
        assertEq(usd.balanceOf(address(account)) + venue.margin(address(account)), initialTokens, "collateral left");
        assertLe(initialEth - _accountEth(), FEE_BUDGET + VALUE_BUDGET, "ETH beyond the budgets");
        assertLe(sink.balance, VALUE_BUDGET, "value beyond the value budget");
    }

    /// The listed paymaster is charged only within the paymaster budget of the three keys ever granted the
    /// scope (the live key, the revoked one, the one enabled in its first op and revoked), whatever gas fields,
    /// fee price, submitter and beneficiary the attacker chooses.
    function invariant_paymasterSpendWithinBudget() public view {
        assertLe(50 ether - entryPoint.balanceOf(listedPaymaster), 3 * PAYMASTER_BUDGET, "paymaster overcharged");
    }

    /// Calls, not ops, are counted: total calls within maxUses, and in any interval [a, b] at most
    /// rateCount x (1 + ceil((b - a + maxOpTtl + 1) / ratePeriod)) calls (the README's burst bound).
    function invariant_callsWithinRateAndUses() public view {
        uint256 n = attacker.callLogLength();
        uint256 total;
        for (uint256 i; i < n; ++i) {
            total += attacker.callCounts(i);
        }
        assertLe(total, USES, "more calls than maxUses");
        for (uint256 i; i < n; ++i) {
            uint256 a = attacker.callTimes(i);
            uint256 calls;
            for (uint256 j = i; j < n; ++j) {
                uint256 b = attacker.callTimes(j);
                calls += attacker.callCounts(j);
                uint256 windows = 1 + (b - a + TTL + 1 + PERIOD - 1) / PERIOD;
                assertLe(calls, RATE * windows, "burst over the bound");
            }
        }
    }

    function invariant_deadKeysNeverValidate() public view {
        assertEq(attacker.revokedOrExpiredAccepted(), 0);
        assertFalse(sessions.getSession(vm.addr(0xDEAD5)).active);
        assertFalse(sessions.getSession(vm.addr(ENABLE_PK)).active);
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
        assertEq(sessions.pendingOwner(), address(0));
    }
}

/// @notice A payable target the live key may send a little value to.
contract InvariantSink {
    function pay() external payable {}
}
