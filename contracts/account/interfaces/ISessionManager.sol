// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "./ITradingAccount.sol";

/// @title ISessionManager
/// @notice Session and ownership administration of a Keyscope trading account. Call these on the account:
/// it serves them from its `SessionManager` module (by DELEGATECALL, on the account's own storage).
interface ISessionManager {
    /// @notice Grants (or replaces) a session key with `scope`. Owner or self (owner-signed op) only.
    /// @param key The session key's address.
    /// @param scope What the key may do; refused if expired, empty or unsafe.
    /// @return grantId The grant's sequence number, which session ops sign over.
    function grantSession(address key, ITradingAccount.SessionScope calldata scope) external returns (uint32 grantId);

    /// @notice Revokes one session key. Owner or self only.
    /// @param key The session key to revoke.
    function revokeSession(address key) external;

    /// @notice Revokes every session key at once and invalidates unused owner grant signatures.
    function revokeAllSessions() external;

    /// @notice Re-arms a key whose drawdown breaker tripped; its high-water mark starts again at its next op.
    /// Owner or self only.
    /// @param key The session key.
    function rearmSession(address key) external;

    /// @notice Names `newOwner` as the next owner, who must call `acceptOwnership`. Owner or self only.
    /// @param newOwner The successor; the zero address cancels a pending transfer.
    /// @param keepSessions Keep the granted sessions alive across the transfer (false ends them all).
    function transferOwnership(address newOwner, bool keepSessions) external;

    /// @notice Completes a transfer: the pending owner becomes the owner (and every session ends unless the
    /// previous owner chose to keep them).
    function acceptOwnership() external;

    /// @notice The successor named by `transferOwnership`, or zero.
    function pendingOwner() external view returns (address);

    /// @notice Every key ever granted on this account (active or not); see `getSession`.
    /// @return keys The session keys, in order of first grant.
    function sessionKeys() external view returns (address[] memory keys);

    /// @notice The stored state of `key`'s session.
    /// @param key The session key.
    /// @return info Scope, counters, budgets and whether the key can validate ops now.
    function getSession(address key) external view returns (ITradingAccount.SessionInfo memory info);

    /// @notice The EIP-712 digest the owner signs to enable `key` with `scope` inside a session op.
    /// @dev Binds chain id and account (domain), the EntryPoint, the current epoch and the key's grant nonce.
    /// @param key The session key.
    /// @param scope The scope to grant.
    /// @return digest The digest to sign.
    function grantDigest(address key, ITradingAccount.SessionScope calldata scope)
        external
        view
        returns (bytes32 digest);
}
