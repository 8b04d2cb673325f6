// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccount} from "@account-abstraction/contracts/interfaces/IAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

/// @notice Storage that belongs to no account: reading it from validation breaks ERC-7562 STO-021.
contract ForeignStore {
    uint256 public value;
}

/// @notice Code an account runs in its own frame: reading NUMBER through DELEGATECALL still breaks OP-011.
contract NumberReader {
    /// @notice The block number.
    function read() external view returns (uint256) {
        return block.number;
    }
}

/// @notice Test-only account for the relayer's refusal paths: its validation does what the first
/// signature byte says — 0 nothing wrong, 1 reads TIMESTAMP (OP-011), 2 reads another contract's
/// storage (STO-021), 3 asks for a signature aggregator, 4 creates a contract (OP-031), 5 reads GAS
/// without calling (OP-012), 6 reads its own balance while unstaked (OP-080), 7 reads NUMBER inside a
/// DELEGATECALL (OP-011), 8 reads the code size of an address with no code (OP-041), 9 reads the
/// EntryPoint's code hash (OP-054). It pays its prefund like any account.
contract RuleBreakingAccount is IAccount {
    /// @notice The EntryPoint that may call validateUserOp.
    address public immutable entryPoint;
    /// @notice The foreign storage mode 2 reads.
    ForeignStore public immutable foreign;
    /// @notice The code mode 7 runs by DELEGATECALL.
    NumberReader public immutable reader;

    error NotFromEntryPoint();

    constructor(address entryPoint_) {
        entryPoint = entryPoint_;
        foreign = new ForeignStore();
        reader = new NumberReader();
    }

    /// @inheritdoc IAccount
    function validateUserOp(PackedUserOperation calldata userOp, bytes32, uint256 missingAccountFunds)
        external
        returns (uint256 validationData)
    {
        if (msg.sender != entryPoint) revert NotFromEntryPoint();
        uint8 mode = userOp.signature.length > 0 ? uint8(userOp.signature[0]) : 0;
        if (mode == 1) validationData = block.timestamp == 0 ? 1 : 0;
        else if (mode == 2) validationData = foreign.value();
        else if (mode == 3) validationData = uint160(0xA99);
        else if (mode == 4) validationData = address(new ForeignStore()) == address(0) ? 1 : 0;
        else if (mode == 5) validationData = gasleft() == 0 ? 1 : 0;
        else if (mode == 6) validationData = address(this).balance == type(uint256).max ? 1 : 0;
        else if (mode == 7) validationData = delegatedNumber() == 0 ? 1 : 0;
        else if (mode == 8) validationData = address(0xdead).code.length == 1 ? 1 : 0;
        else if (mode == 9) validationData = entryPoint.codehash == bytes32(0) ? 1 : 0;
        if (missingAccountFunds > 0) {
            (bool ok,) = payable(msg.sender).call{value: missingAccountFunds}("");
            (ok);
        }
    }

    /// @dev The block number, read by NumberReader's code in this account's frame.
    function delegatedNumber() private returns (uint256) {
        (bool ok, bytes memory out) = address(reader).delegatecall(abi.encodeCall(NumberReader.read, ()));
        return ok ? abi.decode(out, (uint256)) : 0;
    }

    /// @notice Does nothing: the ops only need an execution to call.
    function ping() external {}

    receive() external payable {}
}
