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

    /// @notice What `paymaster` may still be charged for `key`'s ops under its current grant.
    /// @param key The session key.
    /// @param paymaster A paymaster the session may list.
    /// @return listed True if the key's live grant lists `paymaster`.
    /// @return maxOpCost Most one sponsored op may cost it (wei); 0 for no cap but the budget.
    /// @return left What is left of the key's budget at it (wei).
    function paymasterAllowance(address key, address paymaster)
        external
        view
        returns (bool listed, uint256 maxOpCost, uint256 left);

    /// @notice The EIP-712 digest the owner signs to enable `key` with `scope` inside a session op.
    /// @dev Binds chain id and account (domain), the EntryPoint, the current epoch and the key's grant nonce.
    /// @param key The session key.
    /// @param scope The scope to grant.
    /// @return digest The digest to sign.
    function grantDigest(address key, ITradingAccount.SessionScope calldata scope)
        external
        view
        returns (bytes32 digest);

    /// @notice Commits `key`'s successor: the key (or the sidecar holding it) may later hand its session to
    /// `successor` in one op of its own (`rotateToSuccessor`), without the owner. The commitment is bound to
    /// the key's current grant (it must hold a live session): a new grant, a revocation or a rotation of `key`
    /// ends it. Owner or self only.
    /// @param key The session key.
    /// @param successor The successor's id (an address, or a P-256 key id); zero withdraws the commitment.
    function commitSuccessor(address key, address successor) external;

    /// @notice The successor committed for `key`, or zero.
    function successorOf(address key) external view returns (address);

    /// @notice Moves `key`'s session to the committed successor: same grant, scope, risk limits, breaker and
    /// heartbeat state, with the fee, value and uses budgets and rate counters as `key` left them — never
    /// reset, so a rotation cannot widen what the keys may do together. `key` dies (its nonce lanes with it).
    /// Reached by an op of `key` itself whose callData is exactly this call (or by an owner op or the owner).
    /// @param key The session key handing over.
    function rotateToSuccessor(address key) external;

    /// @notice `rotateToSuccessor` to any `successor`, by the owner in one call. Owner or self only.
    /// @param key The session key to retire.
    /// @param successor The key that takes its session over.
    function rotateSession(address key, address successor) external;

    /// @notice Arms or renews `key`'s dead-man switch: until now + `interval` the key trades as its scope
    /// allows; after it, only its protective ops (deposits, cancels, reduce-only orders, heartbeats, rotation)
    /// validate, until the next heartbeat. Reached by an op of `key` itself whose callData is exactly this call
    /// (or by the owner).
    /// @param key The session key.
    /// @param interval Seconds until the switch trips; 1 to `MAX_HEARTBEAT_INTERVAL`.
    function heartbeat(address key, uint32 interval) external;

    /// @notice Disarms `key`'s dead-man switch. Owner or self only (a key cannot disarm its own switch).
    /// @param key The session key.
    function disarmHeartbeat(address key) external;

    /// @notice When `key`'s dead-man switch trips (unix seconds), or zero when it is not armed.
    function heartbeatDeadline(address key) external view returns (uint40);

    /// @notice Bumps `key`'s order epoch: every order the key signed under the current epoch can no longer be
    /// settled. Protective, so a key may do it in an op of its own (callData exactly this call: never counted
    /// against its rate or uses, allowed past its dead-man deadline); the owner may too.
    /// @param key The session key.
    function bumpOrderEpoch(address key) external;

    /// @notice `key`'s order epoch, which its signed orders must name.
    function orderEpoch(address key) external view returns (uint32);

    /// @notice Cancels `key`'s signed orders with nonces `wordIndex << 8 | i` for each bit `i` of `mask`, at
    /// `venue` (one storage write there). Protective, reached like `bumpOrderEpoch`: by an op of `key` itself
    /// (at a venue the key has an order permission on) or by the owner.
    /// @param key The session key.
    /// @param venue The venue.
    /// @param wordIndex The cancel-bitmap word.
    /// @param mask The nonces of the word to cancel.
    function cancelSignedOrders(address key, address venue, uint256 wordIndex, uint256 mask) external;
}
