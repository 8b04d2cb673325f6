// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {Vm} from "forge-std/Vm.sol";

/// @title CanonicalEntryPoint
/// @notice Deploys EntryPoint v0.8 where real chains have it: the published npm artifact of the
/// account-abstraction contracts 0.8.0, through the deterministic CREATE2 deployer with the
/// canonical salt. Standard clients and bundlers recognise v0.8 only at that address, and
/// `anvil_setCode`/`vm.etch` would skip its constructor (and so its immutables).
library CanonicalEntryPoint {
    /// @notice Where EntryPoint v0.8 lives on every chain.
    address internal constant ADDRESS = 0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108;
    /// @notice Arachnid's deterministic deployment proxy (present on anvil and in forge's EVM).
    address internal constant CREATE2_DEPLOYER = 0x4e59b44847b379578588920cA78FbF26c0B4956C;
    /// @notice The salt v0.8 was deployed with.
    bytes32 internal constant SALT = 0x0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9;
    /// @notice The published artifact (read with vm.readFile; foundry.toml grants read access).
    string internal constant ARTIFACT = "node_modules/@account-abstraction/contracts/artifacts/EntryPoint.json";

    /// @notice Thrown when the deployer is missing or the deployment did not land at `ADDRESS`.
    error EntryPointDeploymentFailed(address deployedAt);

    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @notice Deploys EntryPoint v0.8 unless it is already there. Idempotent.
    function deploy() internal returns (IEntryPoint) {
        if (ADDRESS.code.length != 0) return IEntryPoint(ADDRESS);
        if (CREATE2_DEPLOYER.code.length == 0) revert EntryPointDeploymentFailed(address(0));
        bytes memory initCode = vm.parseJsonBytes(vm.readFile(ARTIFACT), ".bytecode");
        (bool ok, bytes memory ret) = CREATE2_DEPLOYER.call(abi.encodePacked(SALT, initCode));
        address deployed = ret.length == 20 ? address(bytes20(ret)) : address(0);
        if (!ok || deployed != ADDRESS || ADDRESS.code.length == 0) revert EntryPointDeploymentFailed(deployed);
        return IEntryPoint(ADDRESS);
    }
}
