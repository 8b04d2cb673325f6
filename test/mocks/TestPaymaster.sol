// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {IPaymaster} from "@account-abstraction/contracts/interfaces/IPaymaster.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

/// @notice Test-only paymaster for the relayer's refusal paths: the first byte of paymasterData
/// says what validation does — 0 sponsors, 1 refuses (reverts), 2 returns a postOp context (which
/// ERC-7562 allows only a staked paymaster).
contract TestPaymaster is IPaymaster {
    /// @notice The EntryPoint this paymaster deposits in.
    IEntryPoint public immutable entryPoint;

    error PaymasterRefuses();

    constructor(IEntryPoint entryPoint_) {
        entryPoint = entryPoint_;
    }

    /// @notice Adds to this paymaster's EntryPoint deposit.
    function deposit() external payable {
        entryPoint.depositTo{value: msg.value}(address(this));
    }

    /// @inheritdoc IPaymaster
    function validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256)
        external
        pure
        returns (bytes memory context, uint256 validationData)
    {
        uint8 mode = userOp.paymasterAndData.length > 52 ? uint8(userOp.paymasterAndData[52]) : 0;
        if (mode == 1) revert PaymasterRefuses();
        if (mode == 2) context = hex"01";
        validationData = 0;
    }

    /// @inheritdoc IPaymaster
    function postOp(PostOpMode, bytes calldata, uint256, uint256) external {}
}
