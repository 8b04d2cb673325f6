// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {SimpleAccount} from "@account-abstraction/contracts/accounts/SimpleAccount.sol";
import {SimpleAccountFactory} from "@account-abstraction/contracts/accounts/SimpleAccountFactory.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Gas of whole `handleOps` calls, TradingAccount beside the reference SimpleAccount v0.8 in the
/// same run, written to snapshots/account.json (committed). Reproduce: `make gas`.
/// Each "steady" figure is the second op of its kind, so both accounts pay the same warm costs (an
/// EntryPoint deposit and a used nonce lane) and neither pays first-use storage.
contract AccountGasTest is AccountTestBase {
    SimpleAccountFactory internal simpleFactory;

    function setUp() public override {
        super.setUp();
        simpleFactory = new SimpleAccountFactory(entryPoint);
    }

    function _orderCall() internal view returns (bytes memory) {
        return _order(0, 1e18, 3000e18, false);
    }

    function _handleMeasured(PackedUserOperation memory op, string memory name) internal {
        _handle(op);
        vm.snapshotGasLastCall("account", name);
    }

    function test_gas_deployInFirstOp_trading() public {
        uint256 pk = 0xB0B;
        address sender = factory.getAddress(vm.addr(pk), 0);
        vm.deal(sender, 1 ether);
        PackedUserOperation memory op = _op(sender, 0, _orderCall());
        op.initCode = abi.encodePacked(address(factory), abi.encodeCall(factory.createAccount, (vm.addr(pk), 0)));
        op.signature = _sign(pk, entryPoint.getUserOpHash(op));
        _handleMeasured(op, "deployInFirstOp_TradingAccount");
        assertEq(TradingAccount(payable(sender)).owner(), vm.addr(pk));
    }

    function test_gas_deployInFirstOp_simple() public {
        (address sender, PackedUserOperation memory op) = _simpleFirstOp(0xB0B);
        _handleMeasured(op, "deployInFirstOp_SimpleAccount");
        assertEq(SimpleAccount(payable(sender)).owner(), vm.addr(0xB0B));
    }

    function test_gas_ownerOp_trading() public {
        _handle(_ownerOp(_orderCall()));
        _handleMeasured(_ownerOp(_orderCall()), "ownerOrder_TradingAccount");
        assertEq(venue.orderCount(), 2);
    }

    function test_gas_ownerOp_simple() public {
        (address sender, PackedUserOperation memory op) = _simpleFirstOp(0xB0B);
        _handle(op);
        op = _op(sender, 1, _orderCall());
        op.signature = _sign(0xB0B, entryPoint.getUserOpHash(op));
        _handleMeasured(op, "ownerOrder_SimpleAccount");
        assertEq(venue.orderCount(), 2);
    }

    /// @dev A SimpleAccount's first op, deploying it through its factory and placing one order.
    function _simpleFirstOp(uint256 pk) internal returns (address sender, PackedUserOperation memory op) {
        sender = simpleFactory.getAddress(vm.addr(pk), 0);
        vm.deal(sender, 1 ether);
        op = _op(sender, 0, _orderCall());
        op.initCode =
            abi.encodePacked(address(simpleFactory), abi.encodeCall(simpleFactory.createAccount, (vm.addr(pk), 0)));
        op.signature = _sign(pk, entryPoint.getUserOpHash(op));
    }

    /// A trading key with market, size, notional and validity rules (the scope shape of the baseline
    /// comparisons: no counters to update).
    function test_gas_sessionOp_trading() public {
        _measureSessionOrder(_tradingScope(), "sessionOrder_TradingAccount");
    }

    /// The same key with a rate limit and a total-uses cap, which cost one storage write per op.
    function test_gas_sessionOp_rateLimited() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.rateCount = 50;
        scope.ratePeriod = 1;
        scope.maxUses = 100_000;
        _measureSessionOrder(scope, "sessionOrderRateLimited_TradingAccount");
    }

    function _measureSessionOrder(ITradingAccount.SessionScope memory scope, string memory name) internal {
        _grant(sessionKey, scope);
        _handle(_ownerOp(_orderCall()));
        uint40 until = uint40(block.timestamp + 30);
        _handle(_sessionOp(SESSION_PK, _orderCall(), until));
        _handleMeasured(_sessionOp(SESSION_PK, _orderCall(), until), name);
        assertEq(venue.orderCount(), 3);
    }

    function test_gas_sessionBatch_trading() public {
        _grant(sessionKey, _tradingScope());
        _handle(_sessionOp(SESSION_PK, _orderCall(), uint40(block.timestamp + 30)));
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.cancelOrder, (0, 0)));
        calls[1] = BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (0, 2e18, 3000e18, false)));
        bytes memory cd = abi.encodeCall(BaseAccount.executeBatch, (calls));
        _handleMeasured(_sessionOp(SESSION_PK, cd, uint40(block.timestamp + 30)), "sessionCancelReplace_TradingAccount");
        assertEq(venue.cancels(), 1);
    }

    function test_gas_enableInFirstOp_trading() public {
        _handle(_ownerOp(_orderCall()));
        _handleMeasured(
            _enableOp(OWNER_PK, SESSION_PK, _tradingScope(), _orderCall(), uint40(block.timestamp + 30)),
            "enableAndOrder_TradingAccount"
        );
        assertTrue(sessions.getSession(sessionKey).active);
    }

    /// The trading key of `sessionOrder_TradingAccount` as a P-256 key (HSM, enclave), verified by the EIP-7951
    /// precompile: the delta is the curve (precompile 6,900 vs ecrecover 3,000) and the 63 more signature bytes.
    function test_gas_sessionOp_p256() public {
        uint256 pk = 0xC0FFEE;
        _grant(_p256Id(pk), _tradingScope());
        _handle(_ownerOp(_orderCall()));
        uint40 until = uint40(block.timestamp + 30);
        _handle(_p256SessionOp(pk, _orderCall(), until));
        _handleMeasured(_p256SessionOp(pk, _orderCall(), until), "sessionOrderP256_TradingAccount");
        assertEq(venue.orderCount(), 3);
    }

    function test_gas_ownerOp_p256() public {
        uint256 pk = 0xC0FFEE;
        account = factory.createAccount(_p256Id(pk), 1);
        vm.deal(address(account), 1 ether);
        for (uint256 i; i < 2; ++i) {
            PackedUserOperation memory op =
                _op(address(account), entryPoint.getNonce(address(account), 0), _orderCall());
            op.signature = _signP256Owner(pk, entryPoint.getUserOpHash(op));
            if (i == 0) _handle(op);
            else _handleMeasured(op, "ownerOrderP256_TradingAccount");
        }
        assertEq(venue.orderCount(), 2);
    }

    function test_gas_enableInFirstOp_p256() public {
        uint256 pk = 0xC0FFEE;
        _handle(_ownerOp(_orderCall()));
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes memory ownerSig = _sign(OWNER_PK, sessions.grantDigest(_p256Id(pk), scope));
        _handleMeasured(
            _p256EnableOp(ownerSig, pk, scope, _orderCall(), uint40(block.timestamp + 30)),
            "enableAndOrderP256_TradingAccount"
        );
        assertTrue(sessions.getSession(_p256Id(pk)).active);
    }

    /// A key's dead-man switch renewal (`heartbeat(key, 60)` as the key's own op), and an order of a key whose
    /// switch is armed (one more storage read in validation).
    function test_gas_heartbeat() public {
        _grant(sessionKey, _tradingScope());
        uint40 until = uint40(block.timestamp + 30);
        _handle(_sessionOp(SESSION_PK, _orderCall(), until));
        bytes memory beat = abi.encodeCall(ISessionManager.heartbeat, (sessionKey, 60));
        _handle(_keyOp(SESSION_PK, false, beat, until));
        _handleMeasured(_keyOp(SESSION_PK, false, beat, until), "heartbeat_TradingAccount");
        _handleMeasured(_sessionOp(SESSION_PK, _orderCall(), until), "sessionOrderHeartbeatArmed_TradingAccount");
        assertEq(sessions.heartbeatDeadline(sessionKey), block.timestamp + 60);
    }

    /// A key's hand-over to its committed successor, as the key's own op (the trading scope: three rules moved).
    function test_gas_handOver() public {
        _grant(sessionKey, _tradingScope());
        address next = vm.addr(0x5E57);
        vm.prank(owner);
        sessions.commitSuccessor(sessionKey, next);
        uint40 until = uint40(block.timestamp + 30);
        _handle(_sessionOp(SESSION_PK, _orderCall(), until));
        _handleMeasured(
            _keyOp(SESSION_PK, false, abi.encodeCall(ISessionManager.rotateToSuccessor, (sessionKey)), until),
            "handOverToSuccessor_TradingAccount"
        );
        assertTrue(sessions.getSession(next).active);
    }
}
