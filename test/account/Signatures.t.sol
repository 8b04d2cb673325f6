// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {UserOps} from "../../script/UserOps.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice Malformed signatures revert with an error that names the fault; well-formed wrong ones
/// return SIG_VALIDATION_FAILED (the EntryPoint's AA24), as ERC-4337 asks.
contract SignaturesTest is AccountTestBase {
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    function _ownerOpWith(function(bytes memory) internal pure returns (bytes memory) mutate)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        op = _ownerOp(_order(0, 1e18, 3000e18, false));
        op.signature = mutate(op.signature);
    }

    function test_owner_shortSignatureRefused() public {
        PackedUserOperation memory op = _ownerOpWith(_drop1);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSessionSignatureLength.selector, 64));
        _handle(op);
    }

    function test_owner_emptySignatureRefused() public {
        PackedUserOperation memory op = _ownerOpWith(_empty);
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureLength.selector, 0));
        _handle(op);
    }

    /// Audit class: the malleable twin (s' = n - s, v flipped) of a valid owner signature.
    function test_owner_highSRefused() public {
        PackedUserOperation memory op = _ownerOp(_order(0, 1e18, 3000e18, false));
        bytes memory twin = _malleate(op.signature);
        bytes32 s = _word(twin, 32);
        op.signature = twin;
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureS.selector, s));
        _handle(op);
    }

    function test_owner_badVRefused() public {
        PackedUserOperation memory op = _ownerOp(_order(0, 1e18, 3000e18, false));
        op.signature[64] = bytes1(uint8(29));
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureV.selector, 29));
        _handle(op);
    }

    /// Audit class: a signature that ecrecovers to the zero address never matches anyone.
    function test_owner_zeroAddressRecoveryFails() public {
        PackedUserOperation memory op = _ownerOp(_order(0, 1e18, 3000e18, false));
        op.signature = abi.encodePacked(bytes32(0), bytes32(uint256(1)), uint8(27));
        assertEq(ecrecover(entryPoint.getUserOpHash(op), 27, bytes32(0), bytes32(uint256(1))), address(0));
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_session_highSRefused() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        bytes memory ecdsa = new bytes(65);
        for (uint256 i; i < 65; ++i) {
            ecdsa[i] = op.signature[7 + i];
        }
        bytes memory twin = _malleate(ecdsa);
        for (uint256 i; i < 65; ++i) {
            op.signature[7 + i] = twin[i];
        }
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSignatureS.selector, _word(twin, 32)));
        _handle(op);
    }

    function test_session_extraBytesRefused() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        op.signature = abi.encodePacked(op.signature, uint8(0));
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.InvalidSessionSignatureLength.selector, 73));
        _handle(op);
    }

    function test_session_wrongKeyFails() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op = _op(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false))
        );
        _signSession(op, 0xBAD, uint40(block.timestamp + 30), 1);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_session_signatureCoversOpExpiry() public {
        _grant(sessionKey, _tradingScope());
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        // The relayer stretches the op's expiry: the key did not sign that.
        op.signature[6] = bytes1(uint8(op.signature[6]) + 1);
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function _malleate(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r = _word(sig, 0);
        bytes32 s = bytes32(N - uint256(_word(sig, 32)));
        uint8 v = uint8(sig[64]) == 27 ? 28 : 27;
        return abi.encodePacked(r, s, v);
    }

    function _word(bytes memory b, uint256 at) internal pure returns (bytes32 w) {
        assembly {
            w := mload(add(add(b, 0x20), at))
        }
    }

    function _drop1(bytes memory sig) internal pure returns (bytes memory out) {
        out = new bytes(sig.length - 1);
        for (uint256 i; i < out.length; ++i) {
            out[i] = sig[i];
        }
    }

    function _empty(bytes memory) internal pure returns (bytes memory) {
        return "";
    }
}
