// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {P256Key} from "../../contracts/account/libraries/P256Key.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice P-256 keys (HSMs, secure enclaves, passkeys) as session keys and as the owner, verified by the
/// EIP-7951 precompile through handleOps: the same scopes, enable mode and revocation as secp256k1 keys, and
/// every malformed or foreign signature refused.
contract P256KeysTest is AccountTestBase {
    uint256 internal constant P256_PK = 0xC0FFEE;
    uint256 internal constant OTHER_P256_PK = 0xBEEF5;
    uint40 internal opUntil;
    address internal p256Key;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
        p256Key = _p256Id(P256_PK);
    }

    function test_p256_keyIdIsTheDomainSeparatedHashOfThePublicKey() public pure {
        (uint256 x, uint256 y) = vm.publicKeyP256(P256_PK);
        assertEq(
            _p256Id(P256_PK), address(uint160(uint256(keccak256(abi.encodePacked(bytes13("keyscope.p256"), x, y)))))
        );
        assertTrue(_p256Id(P256_PK) != _p256Id(OTHER_P256_PK));
        // The same id is asserted by crates/core/src/session.rs, so the SDK and the account cannot drift apart.
        assertEq(_p256Id(P256_PK), 0xE5b90972bc17763484Dd420917fCb8c31A4160f9);
    }

    function test_p256Session_tradesWithinScope() public {
        _grant(p256Key, _tradingScope());
        _handle(_p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
        // Its lanes are its own: the next op takes the key's next nonce.
        _handle(_p256SessionOp(P256_PK, _order(1, 2e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 2);
        assertEq(uint64(_sessionNonce(p256Key, 0)), 2);
    }

    function test_p256Session_scopeAndMoneyLimitsApply() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        scope.maxUses = 1;
        _grant(p256Key, scope);
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 10e18 + 1, 3000e18, false), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionOrderTooLarge.selector, 10e18 + 1, 10e18));
        _handle(op);
        op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        _handle(op);
        op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionExhausted.selector, p256Key));
        _handle(op);
        assertEq(venue.orderCount(), 1);
        // The fee budget is charged as for any key: one op's maximum cost.
        assertEq(sessions.getSession(p256Key).feeLeft, scope.feeBudget - TEST_OP_COST);
    }

    function test_p256Session_anotherKeysSignatureFails() public {
        _grant(p256Key, _tradingScope());
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), opUntil, UserOps.grantBinding(1));
        // Another key's public key does not hash to the key in the nonce.
        op.signature = UserOps.p256SessionSignature(opUntil, _signP256(OTHER_P256_PK, digest));
        _expectFailedOp("AA24 signature error");
        _handle(op);
        // The right public key beside another key's r and s.
        bytes memory forged = _signP256(OTHER_P256_PK, digest);
        bytes memory mine = _signP256(P256_PK, digest);
        for (uint256 i = 64; i < 128; ++i) {
            forged[i] = mine[i];
        }
        op.signature = UserOps.p256SessionSignature(opUntil, forged);
        _expectFailedOp("AA24 signature error");
        _handle(op);
        assertEq(venue.orderCount(), 0);
    }

    function test_p256Session_signatureOverAnotherOpFails() public {
        _grant(p256Key, _tradingScope());
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        PackedUserOperation memory bigger = _p256SessionOp(P256_PK, _order(0, 9e18, 3000e18, false), opUntil);
        bigger.signature = op.signature;
        _expectFailedOp("AA24 signature error");
        _handle(bigger);
    }

    function test_p256Session_malleableTwinRefused() public {
        _grant(p256Key, _tradingScope());
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        // s sits after the mode, the expiry and r: bytes 39..71.
        bytes32 high = _toHighS(op.signature, 39);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureS.selector, high));
        _handle(op);
    }

    function test_p256Session_malformedLengthsRefused() public {
        _grant(p256Key, _tradingScope());
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        bytes memory good = op.signature;
        op.signature = bytes.concat(good, hex"00");
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSessionSignatureLength.selector, 136));
        _handle(op);
        bytes memory short = new bytes(134);
        for (uint256 i; i < 134; ++i) {
            short[i] = good[i];
        }
        op.signature = short;
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSessionSignatureLength.selector, 134));
        _handle(op);
        // A secp256k1-length signature under the P-256 mode is too short for it.
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(SESSION_PK, bytes32(0));
        op.signature = abi.encodePacked(uint8(0x03), uint48(opUntil), r, s, v);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSessionSignatureLength.selector, 72));
        _handle(op);
        op.signature = good;
        _handle(op);
        assertEq(venue.orderCount(), 1, "the well-formed op passes");
    }

    function test_p256Session_revokedKeyRefused() public {
        _grant(p256Key, _tradingScope());
        _handle(_p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil));
        vm.prank(owner);
        sessions.revokeSession(p256Key);
        PackedUserOperation memory op = _p256SessionOp(P256_PK, _order(0, 1e18, 3000e18, false), opUntil);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, p256Key));
        _handle(op);
        assertEq(venue.orderCount(), 1);
    }

    function test_p256Enable_firstOpGrantsAndTrades() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes memory ownerSig = _sign(OWNER_PK, sessions.grantDigest(p256Key, scope));
        _handle(_p256EnableOp(ownerSig, P256_PK, scope, _order(0, 1e18, 3000e18, false), opUntil));
        assertTrue(sessions.getSession(p256Key).active);
        _handle(_p256SessionOp(P256_PK, _order(1, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 2);
    }

    function test_p256Enable_wrongOwnerSignatureRefused() public {
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes memory ownerSig = _sign(0xBAD, sessions.grantDigest(p256Key, scope));
        PackedUserOperation memory op =
            _p256EnableOp(ownerSig, P256_PK, scope, _order(0, 1e18, 3000e18, false), opUntil);
        _expectFailedOp("AA24 signature error");
        _handle(op);
        assertFalse(sessions.getSession(p256Key).active);
    }

    /*//////////////////////////////////////////////////////////////
                              P-256 OWNER
    //////////////////////////////////////////////////////////////*/

    /// @dev Replaces the test account with one owned by P-256 key `P256_PK`.
    function _p256OwnedAccount() internal returns (address id) {
        id = _p256Id(P256_PK);
        account = factory.createAccount(id, 1);
        sessions = ISessionManager(address(account));
        owner = id;
        vm.deal(address(account), 10 ether);
    }

    function _p256OwnerOp(uint256 pk, bytes memory callData) internal view returns (PackedUserOperation memory op) {
        op = _op(address(account), entryPoint.getNonce(address(account), 0), callData);
        op.signature = _signP256Owner(pk, entryPoint.getUserOpHash(op));
    }

    function test_p256Owner_opsRunAndAdministerSessions() public {
        address id = _p256OwnedAccount();
        assertEq(account.owner(), id);
        _handle(_p256OwnerOp(P256_PK, _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, 7)))));
        assertEq(venue.cancels(), 1);
        // The owner grants through an op (it has no address to call from): a call to the account itself.
        bytes memory grant = abi.encodeCall(ISessionManager.grantSession, (sessionKey, _tradingScope()));
        _handle(_p256OwnerOp(P256_PK, _exec(address(account), 0, grant)));
        assertTrue(sessions.getSession(sessionKey).active);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), opUntil));
        assertEq(venue.orderCount(), 1);
    }

    function test_p256Owner_anotherKeyFails() public {
        _p256OwnedAccount();
        PackedUserOperation memory op =
            _p256OwnerOp(OTHER_P256_PK, _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, 7))));
        _expectFailedOp("AA24 signature error");
        _handle(op);
        // A secp256k1 signature cannot stand in for a P-256 owner either.
        op.signature = _sign(P256_PK, entryPoint.getUserOpHash(op));
        _expectFailedOp("AA24 signature error");
        _handle(op);
        assertEq(venue.cancels(), 0);
    }

    function test_p256Owner_signsEnableModeGrants() public {
        _p256OwnedAccount();
        ITradingAccount.SessionScope memory scope = _tradingScope();
        bytes32 grantDigest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _signP256Owner(P256_PK, grantDigest);
        PackedUserOperation memory op = _op(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false))
        );
        _signEnable(op, SESSION_PK, opUntil, scope, grantDigest, ownerSig);
        _handle(op);
        assertEq(venue.orderCount(), 1);

        // Positive control above; the same grant signed by another P-256 key fails.
        address other = vm.addr(0x5E56);
        grantDigest = sessions.grantDigest(other, scope);
        op = _op(address(account), _sessionNonce(other, 0), UserOps.forSession(other, _order(0, 1e18, 3000e18, false)));
        _signEnable(op, 0x5E56, opUntil, scope, grantDigest, _signP256Owner(OTHER_P256_PK, grantDigest));
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_p256Owner_erc1271() public {
        _p256OwnedAccount();
        bytes32 hash = keccak256("order terms");
        bytes32 digest = account.replaySafeHash(hash);
        assertEq(account.isValidSignature(hash, _signP256Owner(P256_PK, digest)), IERC1271.isValidSignature.selector);
        assertEq(account.isValidSignature(hash, _signP256Owner(OTHER_P256_PK, digest)), bytes4(0xffffffff));
        assertEq(account.isValidSignature(keccak256("other"), _signP256Owner(P256_PK, digest)), bytes4(0xffffffff));
        // The malleable twin answers "invalid", not a revert.
        bytes memory sig = _signP256Owner(P256_PK, digest);
        // s sits after the prefix and r: bytes 33..65.
        _toHighS(sig, 33);
        assertEq(account.isValidSignature(hash, sig), bytes4(0xffffffff));
    }

    function test_p256Owner_wrongLengthIsNotAnOwnerSignature() public {
        _p256OwnedAccount();
        PackedUserOperation memory op =
            _p256OwnerOp(P256_PK, _exec(address(venue), 0, abi.encodeCall(venue.cancelOrder, (0, 7))));
        // One byte short: no longer the owner form, so read as a session op, which needs a key in the nonce.
        bytes memory sig = op.signature;
        assembly {
            mstore(sig, 128)
        }
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.NoSessionKeyInNonce.selector));
        _handle(op);
        assembly {
            mstore(sig, 129)
        }
        _handle(op);
        assertEq(venue.cancels(), 1, "the full signature passes");
    }

    function test_p256Key_libraryRefusesHighS() public {
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureS.selector, bytes32(P256_N - 1)));
        this.verifyExternal(p256Key, bytes32(0), bytes32(uint256(1)), bytes32(P256_N - 1), bytes32(0), bytes32(0));
    }

    /// @dev Replaces the s at byte `at` of `sig` by its malleable twin n - s (the same signature, s in the
    /// upper half); returns the new s.
    function _toHighS(bytes memory sig, uint256 at) internal pure returns (bytes32 high) {
        bytes32 s;
        assembly {
            s := mload(add(add(sig, 0x20), at))
        }
        high = bytes32(P256_N - uint256(s));
        assembly {
            mstore(add(add(sig, 0x20), at), high)
        }
    }

    function verifyExternal(address key, bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y)
        external
        view
        returns (bool)
    {
        return P256Key.verify(key, digest, r, s, x, y);
    }
}
