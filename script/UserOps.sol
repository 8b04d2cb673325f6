// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

/// @title UserOps
/// @notice Builds v0.8 UserOperations and TradingAccount session signatures, for scripts and tests alike
/// (crates/core does the same in Rust; a shared test vector keeps the two equal).
library UserOps {
    /// @notice Signature mode byte of a plain session op.
    uint8 internal constant MODE_SESSION = 0x01;
    /// @notice Signature mode byte of an enable-in-first-op session op.
    uint8 internal constant MODE_ENABLE = 0x02;
    /// @notice `TradingAccount.MODE_SESSION_P256` and `MODE_ENABLE_P256`: the same modes for a P-256 key.
    uint8 internal constant MODE_SESSION_P256 = 0x03;
    uint8 internal constant MODE_ENABLE_P256 = 0x04;

    /// @notice An unsigned op with 1 gwei tip, 2 gwei max fee and the given gas limits.
    function build(address sender, uint256 nonce, bytes memory callData, uint128 verificationGas, uint128 callGas)
        internal
        pure
        returns (PackedUserOperation memory op)
    {
        op.sender = sender;
        op.nonce = nonce;
        op.callData = callData;
        op.accountGasLimits = bytes32((uint256(verificationGas) << 128) | callGas);
        op.preVerificationGas = 60_000;
        op.gasFees = bytes32((uint256(1 gwei) << 128) | 10 gwei);
    }

    /// @notice A session op's callData for `key`: `executeSession(key, calls)`, `calls` being `execute(…)` or
    /// `executeBatch(…)` calldata, so the account's execution knows which key signed.
    function forSession(address key, bytes memory calls) internal pure returns (bytes memory) {
        return abi.encodeWithSignature("executeSession(address,bytes)", key, calls);
    }

    /// @notice What a session key signs: keccak256(userOpHash ‖ uint48 opValidUntil ‖ binding), where
    /// binding is the grant id (plain mode) or the grant's EIP-712 digest (enable mode).
    function sessionDigest(bytes32 userOpHash, uint48 opValidUntil, bytes32 binding) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(userOpHash, opValidUntil, binding));
    }

    /// @notice The grant-id binding of a plain session op.
    function grantBinding(uint32 grantId) internal pure returns (bytes32) {
        return bytes32(uint256(grantId));
    }

    /// @notice `userOp.signature` of a plain session op.
    function sessionSignature(uint48 opValidUntil, uint8 v, bytes32 r, bytes32 s) internal pure returns (bytes memory) {
        return abi.encodePacked(MODE_SESSION, opValidUntil, r, s, v);
    }

    /// @notice `userOp.signature` of an enable-mode op: the key's signature, then the grant and the owner's.
    function enableSignature(uint48 opValidUntil, bytes memory keySignature, bytes memory enablePayload)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(MODE_ENABLE, opValidUntil, keySignature, enablePayload);
    }

    /// @notice `userOp.signature` of a plain session op by a P-256 key: mode 0x03, then r ‖ s ‖ x ‖ y.
    function p256SessionSignature(uint48 opValidUntil, bytes memory keySignature) internal pure returns (bytes memory) {
        return abi.encodePacked(MODE_SESSION_P256, opValidUntil, keySignature);
    }

    /// @notice `userOp.signature` of an enable-mode op by a P-256 key: mode 0x04, the key's r ‖ s ‖ x ‖ y, then
    /// the grant and the owner's signature.
    function p256EnableSignature(uint48 opValidUntil, bytes memory keySignature, bytes memory enablePayload)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(MODE_ENABLE_P256, opValidUntil, keySignature, enablePayload);
    }
}
