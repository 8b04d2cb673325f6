// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {LibClone} from "solady/utils/LibClone.sol";

import {TradingAccount} from "./TradingAccount.sol";

/// @title AccountFactory
/// @notice Deploys TradingAccounts as ERC-1967 minimal proxies at CREATE2 addresses known before
/// deployment. Usable as a UserOp factory, so an account's first op deploys it.
/// @dev The CREATE2 salt hashes the owner with the caller's salt: an address belongs to one owner, and
/// nobody can deploy it with another owner first. No storage is touched here (ERC-7562: an unstaked
/// factory), only the new account's.
contract AccountFactory {
    /// @notice The implementation every proxy of this factory delegates to.
    TradingAccount public immutable accountImplementation;

    /// @notice Emitted when a new account is deployed.
    event AccountCreated(address indexed account, address indexed owner, uint256 salt);

    /// @notice The owner may not be the zero address.
    error InvalidOwner();

    /// @param entryPoint The EntryPoint v0.8 that accounts of this factory trust.
    constructor(IEntryPoint entryPoint) {
        accountImplementation = new TradingAccount(entryPoint);
    }

    /// @notice Deploys the account of (`owner`, `salt`), or returns it if it exists already.
    /// @param owner The account's owner key.
    /// @param salt Any number; one owner can have many accounts.
    /// @return account The account, at `getAddress(owner, salt)`.
    function createAccount(address owner, uint256 salt) external returns (TradingAccount account) {
        if (owner == address(0)) revert InvalidOwner();
        (bool alreadyDeployed, address instance) =
            LibClone.createDeterministicERC1967(address(accountImplementation), _salt(owner, salt));
        account = TradingAccount(payable(instance));
        if (!alreadyDeployed) {
            account.initialize(owner);
            emit AccountCreated(instance, owner, salt);
        }
    }

    /// @notice The address `createAccount(owner, salt)` deploys to, before or after deployment.
    /// @param owner The account's owner key.
    /// @param salt The salt passed to `createAccount`.
    /// @return The counterfactual account address.
    function getAddress(address owner, uint256 salt) external view returns (address) {
        return
            LibClone.predictDeterministicAddressERC1967(
                address(accountImplementation), _salt(owner, salt), address(this)
            );
    }

    function _salt(address owner, uint256 salt) internal pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }
}
