// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {SessionGrantHash} from "../../contracts/account/libraries/SessionGrantHash.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Enable in the first op: the owner's EIP-712 grant rides inside the session key's first UserOp,
/// and every way of replaying or altering it is refused.
contract EnableModeTest is AccountTestBase {
    uint40 internal opUntil;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
    }

    function test_enable_firstOpGrantsAndTrades() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        _handle(_enableOp(OWNER_PK, SESSION_PK, scope, _order(0, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
        ITradingAccount.SessionInfo memory info = sessions.getSession(sessionKey);
        assertTrue(info.active);
        assertEq(info.validUntil, scope.validUntil);
        assertEq(account.keyNonce(sessionKey), 1);
        // From then on the key signs plain session ops.
        _handle(_sessionOp(SESSION_PK, _order(1, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 2);
    }

    function test_enable_scopeStillEnforcedInFirstOp() public {
        PackedUserOperation memory op =
            _enableOp(OWNER_PK, SESSION_PK, _tradingScope(), _order(5, 1e18, 3000e18, false), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, 5));
        _handle(op);
        assertFalse(sessions.getSession(sessionKey).active, "a refused op stores nothing");
    }

    function test_enable_wrongOwnerSignatureRefused() public {
        PackedUserOperation memory op =
            _enableOp(0xBAD, SESSION_PK, _tradingScope(), _order(0, 1e18, 3000e18, false), opUntil);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_enable_digestIsEip712OverTheGrant() public view {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Keyscope TradingAccount"),
                keccak256("1"),
                block.chainid,
                address(account)
            )
        );
        bytes32 structHash = SessionGrantHash.hash(address(entryPoint), 0, sessionKey, 0, scope);
        assertEq(sessions.grantDigest(sessionKey, scope), keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
    }

    /// Audit class: enable-mode data altered by whoever submits the op (a wider scope, same owner signature).
    function test_enable_alteredScopeRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        ITradingAccount.SessionScope memory wider = _tradingScope();
        wider.permissions[0].maxOrderSize = type(uint88).max;
        PackedUserOperation memory op = _enableWith(account, wider, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: a second owner-signed grant for the same key swapped in by the submitter.
    function test_enable_swappedGrantRefused() public {
        ITradingAccount.SessionScope memory narrow = _tradingScope();
        ITradingAccount.SessionScope memory other = _tradingScope();
        other.validUntil = uint40(T0 + 1 hours);
        bytes32 narrowDigest = sessions.grantDigest(sessionKey, narrow);
        bytes32 otherDigest = sessions.grantDigest(sessionKey, other);
        PackedUserOperation memory op = _enableWith(account, narrow, narrowDigest, _sign(OWNER_PK, narrowDigest));
        // The submitter replaces the grant with the other valid one; the key signed over the first.
        bytes memory keySigned = op.signature;
        bytes memory swapped = abi.encodePacked(_prefix(keySigned), abi.encode(other, _sign(OWNER_PK, otherDigest)));
        op.signature = swapped;
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: a grant replayed after it was used once.
    function test_enable_grantNotReusable() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        PackedUserOperation memory first = _enableWith(account, scope, digest, ownerSig);
        _handle(first);
        // The owner revokes the key; the old enable data must not bring it back.
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        PackedUserOperation memory again = _enableWith(account, scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(again);
        assertFalse(sessions.getSession(sessionKey).active);
    }

    /// Audit class: a grant replayed after revoke-all (the epoch moved).
    function test_enable_grantDeadAfterRevokeAll() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        vm.prank(owner);
        sessions.revokeAllSessions();
        PackedUserOperation memory op = _enableWith(account, scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: an unused grant cancelled by revoking the key before it was ever enabled.
    function test_enable_unusedGrantCancelledByRevoke() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        vm.prank(owner);
        sessions.revokeSession(sessionKey);
        PackedUserOperation memory op = _enableWith(account, scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: a grant replayed on another account of the same owner.
    function test_enable_grantBoundToAccount() public {
        TradingAccount second = factory.createAccount(owner, 1);
        vm.deal(address(second), 1 ether);
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        PackedUserOperation memory op = _enableWith(second, scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: a grant replayed on another chain.
    function test_enable_grantBoundToChain() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        vm.chainId(block.chainid + 1);
        PackedUserOperation memory op = _enableWith(account, scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    /// Audit class: a grant signed for another EntryPoint.
    function test_enable_grantBoundToEntryPoint() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 structHash = SessionGrantHash.hash(address(0xE7), 0, sessionKey, 0, scope);
        bytes32 otherDigest = keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
        PackedUserOperation memory op = _enableWith(account, scope, otherDigest, _sign(OWNER_PK, otherDigest));
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_enable_malformedDataRefused() public {
        PackedUserOperation memory op = _op(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false))
        );
        op.signature = abi.encodePacked(uint8(0x02), uint48(opUntil), new bytes(65), hex"deadbeef");
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.MalformedEnableData.selector));
        _handle(op);
    }

    function test_enable_unsafeScopeRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.validUntil = 0;
        PackedUserOperation memory op = _enableOp(OWNER_PK, SESSION_PK, scope, _order(0, 1e18, 3000e18, false), opUntil);
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.InvalidScope.selector, ITradingAccount.ScopeFault.ValidUntilZero)
        );
        _handle(op);
    }

    function test_enable_unknownModeRefused() public {
        PackedUserOperation memory op = _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil);
        op.signature[0] = 0x07;
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.UnknownSignatureMode.selector, 7));
        _handle(op);
    }

    /// @dev An enable-mode op on `sender`, lane 0 of the session key, carrying `scope` and the owner's
    /// signature `ownerSig` over `digest` (which need not be the right digest: that is what tests probe).
    function _enableWith(
        TradingAccount sender,
        ITradingAccount.SessionScope memory scope,
        bytes32 digest,
        bytes memory ownerSig
    ) internal view returns (PackedUserOperation memory op) {
        uint256 nonce = entryPoint.getNonce(address(sender), sender.sessionNonceKey(sessionKey, 0));
        op = _op(address(sender), nonce, UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)));
        _signEnable(op, SESSION_PK, opUntil, scope, digest, ownerSig);
    }

    function _prefix(bytes memory sig) internal pure returns (bytes memory out) {
        out = new bytes(72);
        for (uint256 i; i < 72; ++i) {
            out[i] = sig[i];
        }
    }

    function _domainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Keyscope TradingAccount"),
                keccak256("1"),
                block.chainid,
                address(account)
            )
        );
    }
}
