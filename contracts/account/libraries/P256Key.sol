// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";

import {ITradingAccount} from "../interfaces/ITradingAccount.sol";

/// @title P256Key
/// @notice P-256 (secp256r1) keys — the curve HSMs, secure enclaves and passkeys sign — as Keyscope owners and
/// session keys. A P-256 key is named by a 160-bit id derived from its public key, so it takes the place of an
/// address everywhere one is used (the owner slot, session storage, the upper 160 bits of a nonce key); its
/// signatures carry the public key, which must hash to the id, and are verified by the EIP-7951 precompile.
/// @dev The public key rides in every signature instead of being stored: 64 calldata bytes cost less than two
/// cold storage reads, and validation stays within the account's own storage (ERC-7562). Verification uses
/// OpenZeppelin's `P256.verifyNative`, which refuses with `MissingPrecompile(0x100)` on a chain without the
/// precompile instead of reporting a forged signature. ERC-7562 (OP-062) allows the precompile in validation.
library P256Key {
    /// @dev Domain of key ids: a P-256 key id never equals the address of a secp256k1 key by construction of the
    /// hash input (an Ethereum address hashes the 64-byte public key alone).
    bytes13 internal constant ID_DOMAIN = "keyscope.p256";
    /// @notice First byte of a P-256 owner signature, `0x10 ‖ r ‖ s ‖ x ‖ y` (129 bytes): an owner's secp256k1
    /// signature is 65 bytes and session signatures start with their mode (0x01 to 0x04).
    uint8 internal constant OWNER_PREFIX = 0x10;
    /// @notice Length of a P-256 owner signature.
    uint256 internal constant OWNER_SIG_LENGTH = 129;

    /// @notice The id of the P-256 public key (x, y): the low 160 bits of keccak256("keyscope.p256" ‖ x ‖ y).
    function id(bytes32 x, bytes32 y) internal pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(ID_DOMAIN, x, y)))));
    }

    /// @notice True if the key with public key (x, y) is `key` and signed `digest` with (r, s).
    /// @dev Reverts `InvalidSignatureS` for an s in the upper half of the curve order (the malleable twin of a
    /// valid signature, as for secp256k1), and `MissingPrecompile` where EIP-7951 is not active.
    function verify(address key, bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y)
        internal
        view
        returns (bool)
    {
        if (!isLowS(s)) revert ITradingAccount.InvalidSignatureS(s);
        if (id(x, y) != key) return false;
        return P256.verifyNative(digest, r, s, x, y);
    }

    /// @notice True if `s` is in the lower half of the curve order (the only form `verify` accepts).
    function isLowS(bytes32 s) internal pure returns (bool) {
        return uint256(s) <= P256.N / 2;
    }

    /// @notice `verify` of a 128-byte calldata signature `r ‖ s ‖ x ‖ y`.
    function verifyCalldata(address key, bytes32 digest, bytes calldata sig) internal view returns (bool) {
        (bytes32 r, bytes32 s, bytes32 x, bytes32 y) = parse(sig);
        return verify(key, digest, r, s, x, y);
    }

    /// @notice The parts of a 128-byte calldata signature `r ‖ s ‖ x ‖ y`; any other length is refused.
    function parse(bytes calldata sig) internal pure returns (bytes32 r, bytes32 s, bytes32 x, bytes32 y) {
        if (sig.length != 128) revert ITradingAccount.InvalidSignatureLength(sig.length);
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 0x20))
            x := calldataload(add(sig.offset, 0x40))
            y := calldataload(add(sig.offset, 0x60))
        }
    }
}
