// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

import {TradingAccount} from "../../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../../contracts/account/interfaces/ISessionManager.sol";
import {IPerpVenue} from "../../../contracts/venue/IPerpVenue.sol";
import {TestUSD} from "../../../contracts/venue/TestUSD.sol";
import {UserOps} from "../../../script/UserOps.sol";
import {RecordingVenue} from "../../mocks/RecordingVenue.sol";

/// @notice Invariant handler: an attacker who holds a live session key (and the keys of a revoked and an
/// expired session) and controls everything a key holder really controls — the calls and batch shape, every
/// gas field and fee price, the paymaster, who submits the op and which beneficiary is paid — plus foreign
/// nonce lanes, time warps and replays of executed ops and of an enable-mode grant. Ghost variables record
/// anything that should never happen, and every call the live key got executed, with its time.
contract SessionAttacker is CommonBase, StdCheats, StdUtils {
    uint256 public constant LIVE_PK = 0x5E55;
    uint256 public constant REVOKED_PK = 0xDEAD5;
    uint256 public constant EXPIRED_PK = 0xE1E1;

    IEntryPoint public immutable entryPoint;
    TradingAccount public immutable account;
    ISessionManager public immutable sessions;
    RecordingVenue public immutable venue;
    TestUSD public immutable usd;
    address public immutable sink;
    address public immutable listedPaymaster;
    address public immutable otherPaymaster;
    address payable public immutable loot = payable(address(0x1007));
    address payable public immutable bundler = payable(address(0xB0B));
    uint40 public immutable liveUntil;

    /// Ghosts: each must stay zero.
    uint256 public revokedOrExpiredAccepted;
    uint256 public replayAccepted;
    uint256 public outOfScopeAccepted;

    uint256 public opsAccepted;
    uint256 public opsRefused;
    /// Calls of the live key that executed, and when (one entry per op).
    uint256[] public callTimes;
    uint256[] public callCounts;
    PackedUserOperation[] internal _executed;
    /// The enable payload (abi.encode(scope, ownerSignature)) and grant digest used once at set-up.
    bytes internal _enablePayload;
    bytes32 internal _enableGrantDigest;
    uint256 internal _enableKeyPk;

    /// @notice What the attacker chooses about an op besides its calls.
    struct Gas {
        uint128 verificationGas;
        uint128 callGas;
        uint256 preVerificationGas;
        uint128 maxFee;
        uint128 tip;
        /// bit 0: pay the attacker's `loot` (else an honest bundler); bit 1: the attacker submits (else the
        /// bundler); bits 2-3: 0 no paymaster, 1 the listed one, 2 an unlisted one.
        uint8 routing;
    }

    constructor(
        IEntryPoint entryPoint_,
        TradingAccount account_,
        RecordingVenue venue_,
        TestUSD usd_,
        address sink_,
        address listedPaymaster_,
        address otherPaymaster_,
        uint40 liveUntil_,
        bytes memory enablePayload_,
        bytes32 enableGrantDigest_,
        uint256 enableKeyPk_
    ) {
        entryPoint = entryPoint_;
        account = account_;
        sessions = ISessionManager(address(account_));
        venue = venue_;
        usd = usd_;
        sink = sink_;
        listedPaymaster = listedPaymaster_;
        otherPaymaster = otherPaymaster_;
        liveUntil = liveUntil_;
        _enablePayload = enablePayload_;
        _enableGrantDigest = enableGrantDigest_;
        _enableKeyPk = enableKeyPk_;
    }

    /*//////////////////////////////////////////////////////////////
                                 ACTIONS
    //////////////////////////////////////////////////////////////*/

    /// A session op with attacker-chosen calls, batch size, lane, expiry and gas, signed by the live key.
    function sendOp(uint8 kind, uint256 arg, uint8 batch, uint32 lane, uint16 ttl, Gas memory gas) external {
        _sendAs(LIVE_PK, _callData(kind, arg, batch), lane, ttl, gas, false);
    }

    /// The same, signed by the revoked or the expired key: must never validate.
    function sendAsDeadKey(bool revoked, uint8 kind, uint256 arg, uint32 lane, uint16 ttl, Gas memory gas) external {
        _sendAs(revoked ? REVOKED_PK : EXPIRED_PK, _callData(kind, arg, 1), lane, ttl, gas, true);
    }

    /// An op on another key's lane (or the owner's), signed by the live key.
    function sendOnForeignLane(uint8 kind, uint256 arg, uint192 nonceKey) external {
        address key = vm.addr(LIVE_PK);
        if (uint160(nonceKey >> 32) == uint160(key)) nonceKey ^= uint192(1) << 100;
        address declared = address(uint160(nonceKey >> 32));
        PackedUserOperation memory op = UserOps.build(
            address(account),
            entryPoint.getNonce(address(account), nonceKey),
            UserOps.forSession(declared, _callData(kind, arg, 1)),
            1_000_000,
            1_000_000
        );
        _signSession(op, LIVE_PK, uint40(block.timestamp + 30));
        if (_try(op, bundler, bundler)) outOfScopeAccepted += 1;
    }

    /// Re-sends an op that was already executed.
    function replay(uint256 index) external {
        if (_executed.length == 0) return;
        PackedUserOperation memory op = _executed[bound(index, 0, _executed.length - 1)];
        if (_try(op, loot, loot)) replayAccepted += 1;
    }

    /// Replays the owner's enable-mode grant (used at set-up, then the key was revoked).
    function replayEnable(uint8 kind, uint256 arg) external {
        address key = vm.addr(_enableKeyPk);
        PackedUserOperation memory op = UserOps.build(
            address(account),
            entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)),
            UserOps.forSession(key, _callData(kind, arg, 1)),
            1_000_000,
            1_000_000
        );
        uint40 until = uint40(block.timestamp + 30);
        // The key re-signs for this op; the grant (scope and owner signature) is the old one.
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, _enableGrantDigest);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(_enableKeyPk, digest);
        op.signature = UserOps.enableSignature(until, abi.encodePacked(r, s, v), _enablePayload);
        if (_try(op, loot, loot)) replayAccepted += 1;
    }

    /// Moves time forward (sometimes past the live session's end).
    function warp(uint32 dt) external {
        vm.warp(block.timestamp + bound(dt, 1, 2 hours));
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _sendAs(uint256 pk, bytes memory callData, uint32 lane, uint16 ttl, Gas memory gas, bool mustFail)
        internal
    {
        address key = vm.addr(pk);
        PackedUserOperation memory op = UserOps.build(
            address(account),
            entryPoint.getNonce(address(account), account.sessionNonceKey(key, lane % 4)),
            UserOps.forSession(key, callData),
            uint128(bound(gas.verificationGas, 0, 20_000_000)),
            uint128(bound(gas.callGas, 0, 20_000_000))
        );
        op.preVerificationGas = bound(gas.preVerificationGas, 0, 20_000_000);
        uint128 maxFee = uint128(bound(gas.maxFee, 0, 10_000 gwei));
        op.gasFees = bytes32((uint256(bound(gas.tip, 0, maxFee)) << 128) | maxFee);
        uint8 paymaster = (gas.routing >> 2) % 3;
        if (paymaster != 0) {
            address pm = paymaster == 1 ? listedPaymaster : otherPaymaster;
            op.paymasterAndData = abi.encodePacked(pm, uint128(200_000), uint128(0));
        }
        _signSession(op, pk, uint40(block.timestamp + bound(ttl, 0, 90)));
        address payable payee = gas.routing & 1 != 0 ? loot : bundler;
        address submitter = gas.routing & 2 != 0 ? loot : bundler;
        bool ok = _try(op, submitter, payee);
        if (ok && mustFail) revokedOrExpiredAccepted += 1;
        if (ok && block.timestamp > liveUntil) revokedOrExpiredAccepted += 1;
        if (ok) {
            _executed.push(op);
            if (pk == LIVE_PK) {
                callTimes.push(block.timestamp);
                callCounts.push(_countCalls(callData));
            }
        }
    }

    function _try(PackedUserOperation memory op, address submitter, address payable payee) internal returns (bool ok) {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(submitter, submitter);
        try entryPoint.handleOps(ops, payee) {
            ok = true;
            opsAccepted += 1;
        } catch {
            opsRefused += 1;
        }
    }

    /// Hostile and ordinary call menus; `batch` (1..6) repeats the chosen call in an executeBatch.
    function _callData(uint8 kind, uint256 arg, uint8 batch) internal view returns (bytes memory) {
        BaseAccount.Call memory c = _call(kind % 12, arg);
        uint256 n = bound(batch, 1, 6);
        if (n == 1 && arg % 2 == 0) return abi.encodeCall(BaseAccount.execute, (c.target, c.value, c.data));
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](n);
        for (uint256 i; i < n; ++i) {
            calls[i] = c;
        }
        return abi.encodeCall(BaseAccount.executeBatch, (calls));
    }

    function _call(uint8 kind, uint256 arg) internal view returns (BaseAccount.Call memory c) {
        if (kind == 0) return BaseAccount.Call(address(venue), 0, _placeOrder(arg));
        if (kind == 1) {
            return BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.withdrawMargin, (arg % 1e12)));
        }
        if (kind == 2) return BaseAccount.Call(address(usd), 0, abi.encodeCall(usd.transfer, (loot, arg % 1e12)));
        if (kind == 3) return BaseAccount.Call(loot, arg % 10 ether, "");
        if (kind == 4) {
            return BaseAccount.Call(address(account), 0, abi.encodeCall(ISessionManager.revokeAllSessions, ()));
        }
        if (kind == 5) {
            return
                BaseAccount.Call(address(account), 0, abi.encodeCall(ISessionManager.transferOwnership, (loot, true)));
        }
        if (kind == 6) {
            return BaseAccount.Call(address(venue), arg % 2, abi.encodeCall(IPerpVenue.depositMargin, (arg % 1e9)));
        }
        if (kind == 7) {
            return BaseAccount.Call(address(usd), 0, abi.encodeCall(usd.approve, (loot, type(uint256).max)));
        }
        if (kind == 8) {
            return
                BaseAccount.Call(
                    address(entryPoint), 0, abi.encodeWithSignature("withdrawTo(address,uint256)", loot, 1)
                );
        }
        if (kind == 9) return BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.fundPool, (arg % 1e12)));
        if (kind == 10) return BaseAccount.Call(sink, arg % 0.2 ether, abi.encodeWithSignature("pay()"));
        return BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.cancelOrder, (0, arg)));
    }

    function _placeOrder(uint256 arg) internal pure returns (bytes memory) {
        uint32 market = uint32(arg % 4);
        int256 size = int256(arg % 20e18) - 10e18;
        uint256 price = (arg >> 64) % 20_000e18;
        return abi.encodeCall(IPerpVenue.placeOrder, (market, size, price, arg % 5 == 0));
    }

    function _countCalls(bytes memory callData) internal pure returns (uint256) {
        if (bytes4(callData) == BaseAccount.execute.selector) return 1;
        uint256 n;
        assembly {
            // executeBatch: selector, offset word, then the array length.
            n := mload(add(callData, 0x44))
        }
        return n;
    }

    function _signSession(PackedUserOperation memory op, uint256 pk, uint40 until) internal view {
        uint32 grantId = sessions.getSession(vm.addr(pk)).grantId;
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, UserOps.grantBinding(grantId));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
    }

    function executedCount() external view returns (uint256) {
        return _executed.length;
    }

    function callLogLength() external view returns (uint256) {
        return callTimes.length;
    }
}
