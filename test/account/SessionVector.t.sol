// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {UserOps} from "../../script/UserOps.sol";

/// @notice The session-signature test vector shared with crates/core (session.rs): the bytes the Rust
/// signer produces are the bytes this contract suite signs and the account accepts.
contract SessionVectorTest is Test {
    function test_sessionSignature_matchesRustVector() public pure {
        bytes32 userOpHash = bytes32(0x1111111111111111111111111111111111111111111111111111111111111111);
        uint48 opValidUntil = 1_800_000_030;
        uint32 grantId = 3;
        bytes32 digest = UserOps.sessionDigest(userOpHash, opValidUntil, UserOps.grantBinding(grantId));
        assertEq(digest, 0xa1b764f383dfb2e21744ae5787fe4b6a702ead6e484d7afdd18b477dc1f890d7);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(0x5E55, digest);
        assertEq(
            UserOps.sessionSignature(opValidUntil, v, r, s),
            hex"0100006b49d21e4f1990515fd4d4785e0d6b1dcbe9f60ec6dda7aec7799616cc92d5b31d0af55e194a08dfce8967afb2394c4d3c5f0f530a0b26ae2d779225fd6b8c8a256b95001b"
        );
    }
}
