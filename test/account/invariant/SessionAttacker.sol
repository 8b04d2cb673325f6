// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

import {TradingAccount} from "../../../contracts/account/TradingAccount.sol";
import {ITradingAccount} from "../../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../../contracts/venue/IPerpVenue.sol";
import {RecordingVenue} from "../../mocks/RecordingVenue.sol";
import {UserOps} from "../../../script/UserOps.sol";
import {TestUSD} from "../../../contracts/venue/TestUSD.sol";

/// @notice Invariant handler: an attacker who holds a live session key (and the keys of a revoked and an
/// expired session) and tries everything — random and hostile calls, batches, foreign nonce lanes, time
/// warps, replays of executed ops and of an enable-mode grant. Ghost variables record anything that
/// should never happen.
contract SessionAttacker is CommonBase, StdCheats, StdUtils {
    uint256 public constant LIVE_PK = 0x5E55;
    uint256 public constant REVOKED_PK = 0xDEAD5;
    uint256 public constant EXPIRED_PK = 0xE1E1;

    IEntryPoint public immutable entryPoint;
    TradingAccount public immutable account;
    RecordingVenue public immutable venue;
    TestUSD public immutable usd;
    address public immutable loot = address(0x1007);
    uint40 public immutable liveUntil;

    /// Ghosts: each must stay zero.
    uint256 public revokedOrExpiredAccepted;
    uint256 public replayAccepted;
    uint256 public outOfScopeAccepted;

    uint256 public opsAccepted;
    uint256 public opsRefused;
    PackedUserOperation[] internal _executed;
    /// The enable payload (abi.encode(scope, ownerSignature)) and grant digest used once at set-up.
    bytes internal _enablePayload;
    bytes32 internal _enableGrantDigest;
    uint256 internal _enableKeyPk;

    constructor(
        IEntryPoint entryPoint_,
        TradingAccount account_,
        RecordingVenue venue_,
        TestUSD usd_,
        uint40 liveUntil_,
        bytes memory enablePayload_,
        bytes32 enableGrantDigest_,
        uint256 enableKeyPk_
    ) {
        entryPoint = entryPoint_;
        account = account_;
        venue = venue_;
        usd = usd_;
        liveUntil = liveUntil_;
        _enablePayload = enablePayload_;
        _enableGrantDigest = enableGrantDigest_;
        _enableKeyPk = enableKeyPk_;
    }

    /*//////////////////////////////////////////////////////////////
                                 ACTIONS
    //////////////////////////////////////////////////////////////*/

    /// A session op with attacker-chosen calls, lane and expiry, signed by the live key.
    function sendOp(uint8 kind, uint256 arg, uint32 lane, uint16 ttl) external {
        _sendAs(LIVE_PK, _callData(kind, arg), lane, ttl, false);
    }

    /// The same, signed by the revoked or the expired key: must never validate.
    function sendAsDeadKey(bool revoked, uint8 kind, uint256 arg, uint32 lane, uint16 ttl) external {
        _sendAs(revoked ? REVOKED_PK : EXPIRED_PK, _callData(kind, arg), lane, ttl, true);
    }

    /// An op on another key's lane (or the owner's), signed by the live key.
    function sendOnForeignLane(uint8 kind, uint256 arg, uint192 nonceKey) external {
        address key = vm.addr(LIVE_PK);
        if (uint160(nonceKey >> 32) == uint160(key)) nonceKey ^= uint192(1) << 100;
        PackedUserOperation memory op = _op(entryPoint.getNonce(address(account), nonceKey), _callData(kind, arg));
        _signSession(op, LIVE_PK, uint40(block.timestamp + 30));
        if (_try(op)) outOfScopeAccepted += 1;
    }

    /// Re-sends an op that was already executed.
    function replay(uint256 index) external {
        if (_executed.length == 0) return;
        PackedUserOperation memory op = _executed[bound(index, 0, _executed.length - 1)];
        if (_try(op)) replayAccepted += 1;
    }

    /// Replays the owner's enable-mode grant (used at set-up, then the key was revoked).
    function replayEnable(uint8 kind, uint256 arg) external {
        address key = vm.addr(_enableKeyPk);
        PackedUserOperation memory op =
            _op(entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)), _callData(kind, arg));
        uint40 until = uint40(block.timestamp + 30);
        // The key re-signs for this op; the grant (scope and owner signature) is the old one.
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, _enableGrantDigest);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(_enableKeyPk, digest);
        op.signature = UserOps.enableSignature(until, abi.encodePacked(r, s, v), _enablePayload);
        if (_try(op)) replayAccepted += 1;
    }

    /// Moves time forward (sometimes past the live session's end).
    function warp(uint32 dt) external {
        vm.warp(block.timestamp + bound(dt, 1, 2 hours));
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _sendAs(uint256 pk, bytes memory callData, uint32 lane, uint16 ttl, bool mustFail) internal {
        address key = vm.addr(pk);
        PackedUserOperation memory op =
            _op(entryPoint.getNonce(address(account), account.sessionNonceKey(key, lane % 4)), callData);
        _signSession(op, pk, uint40(block.timestamp + bound(ttl, 0, 90)));
        bool ok = _try(op);
        if (ok && mustFail) revokedOrExpiredAccepted += 1;
        if (ok && block.timestamp > liveUntil) revokedOrExpiredAccepted += 1;
        if (ok) _executed.push(op);
    }

    function _try(PackedUserOperation memory op) internal returns (bool ok) {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        try entryPoint.handleOps(ops, payable(address(0xBEEF))) {
            ok = true;
            opsAccepted += 1;
        } catch {
            opsRefused += 1;
        }
    }

    /// Hostile and ordinary call menus.
    function _callData(uint8 kind, uint256 arg) internal view returns (bytes memory) {
        kind = kind % 10;
        if (kind == 0) return _exec(address(venue), 0, _placeOrder(arg));
        if (kind == 1) return _exec(address(venue), 0, abi.encodeCall(IPerpVenue.withdrawMargin, (arg % 1e12)));
        if (kind == 2) return _exec(address(usd), 0, abi.encodeCall(usd.transfer, (loot, arg % 1e12)));
        if (kind == 3) return _exec(loot, arg % 10 ether, "");
        if (kind == 4) return _exec(address(account), 0, abi.encodeCall(ITradingAccount.revokeAllSessions, ()));
        if (kind == 5) return abi.encodeCall(TradingAccount.transferOwnership, (loot));
        if (kind == 6) return _exec(address(venue), arg % 2, abi.encodeCall(IPerpVenue.depositMargin, (arg % 1e9)));
        if (kind == 7) return _exec(address(usd), 0, abi.encodeCall(usd.approve, (loot, type(uint256).max)));
        if (kind == 8) return _exec(address(entryPoint), 0, abi.encodeWithSignature("withdrawTo(address,uint256)", loot, 1));
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = BaseAccount.Call(address(venue), 0, _placeOrder(arg));
        calls[1] = BaseAccount.Call(arg % 3 == 0 ? address(usd) : address(venue), 0, arg % 3 == 0
            ? abi.encodeCall(usd.transfer, (loot, 1))
            : abi.encodeCall(IPerpVenue.cancelOrder, (0, arg)));
        return abi.encodeCall(BaseAccount.executeBatch, (calls));
    }

    function _placeOrder(uint256 arg) internal pure returns (bytes memory) {
        uint32 market = uint32(arg % 4);
        int256 size = int256(arg % 20e18) - 10e18;
        uint256 price = (arg >> 64) % 20_000e18;
        return abi.encodeCall(IPerpVenue.placeOrder, (market, size, price, arg % 5 == 0));
    }

    function _exec(address target, uint256 value, bytes memory data) internal pure returns (bytes memory) {
        return abi.encodeCall(BaseAccount.execute, (target, value, data));
    }

    function _op(uint256 nonce, bytes memory callData) internal view returns (PackedUserOperation memory) {
        return UserOps.build(address(account), nonce, callData, 1_000_000, 1_000_000);
    }

    function _signSession(PackedUserOperation memory op, uint256 pk, uint40 until) internal view {
        uint32 grantId = account.getSession(vm.addr(pk)).grantId;
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, UserOps.grantBinding(grantId));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
    }

    function executedCount() external view returns (uint256) {
        return _executed.length;
    }
}
