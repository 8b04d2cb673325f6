// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ITradingAccount
/// @notice Session-key vocabulary of a Keyscope trading account: the scope an owner grants,
/// the errors a refused operation reverts with, and the events a portfolio view follows.
interface ITradingAccount {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    /// @notice One (target, selector) pair a session key may call, with the limits on that call.
    /// @dev For `IPerpVenue.placeOrder` the order fields apply and `valueLimit` must be 0; for any
    /// other selector the order fields must be 0 and `valueLimit` caps the native value per call.
    struct CallPermission {
        address target;
        bytes4 selector;
        /// Max native value (wei) per call; 0 for trading keys.
        uint96 valueLimit;
        /// placeOrder only: bit `i` set allows market id `i` (ids 0..63).
        uint64 marketMask;
        /// placeOrder only: max |sizeDelta| per order, 18 decimals.
        uint88 maxOrderSize;
        /// placeOrder only: max |sizeDelta| x limitPrice / 1e18 per order, 18-decimal USD.
        uint96 maxOrderNotional;
        /// placeOrder only: the order must set reduceOnly.
        bool reduceOnly;
    }

    /// @notice What a session key may do, and for how long.
    struct SessionScope {
        /// Start of the session (unix seconds), returned to the EntryPoint as validAfter.
        uint40 validAfter;
        /// End of the session (unix seconds); never 0 (0 would mean "forever" in ERC-4337).
        uint40 validUntil;
        /// Longest life of one op: an op signed to expire at T is valid only from T - maxOpTtl.
        uint16 maxOpTtl;
        /// Ops allowed per `ratePeriod`; 0 (with `ratePeriod` 0) for no rate limit.
        uint16 rateCount;
        /// Length of a rate window in seconds.
        uint24 ratePeriod;
        /// Total ops the key may ever send; 0 for no cap.
        uint32 maxUses;
        /// The calls the key may make; at least one.
        CallPermission[] permissions;
    }

    /// @notice A session as the account stores it, for read functions.
    struct SessionInfo {
        /// True while the key can validate ops (granted, not revoked, not killed by revokeAllSessions).
        bool active;
        /// Account-wide grant sequence number; session ops sign over it.
        uint32 grantId;
        uint40 validAfter;
        uint40 validUntil;
        uint16 maxOpTtl;
        uint16 rateCount;
        uint24 ratePeriod;
        /// Start of the current rate window and ops counted in it.
        uint40 windowStart;
        uint16 windowUsed;
        /// Ops the key may still send; type(uint32).max when uncapped.
        uint32 usesLeft;
        CallPermission[] permissions;
    }

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Emitted once, when a proxy is initialised with its owner.
    event AccountInitialized(address indexed entryPoint, address indexed owner);
    /// @notice Emitted when the owner key changes.
    event OwnerChanged(address indexed previousOwner, address indexed newOwner);
    /// @notice Emitted when a session key is granted (directly or enabled in its first op).
    event SessionGranted(address indexed key, uint32 indexed grantId, uint40 validAfter, uint40 validUntil);
    /// @notice Emitted when one session key is revoked.
    event SessionRevoked(address indexed key, uint32 grantId);
    /// @notice Emitted when every session key is revoked at once; `epoch` is the new epoch.
    event AllSessionsRevoked(uint32 epoch);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice The caller is not the EntryPoint.
    error NotFromEntryPoint(address caller);
    /// @notice The caller is neither the EntryPoint nor the owner.
    error NotEntryPointOrOwner(address caller);
    /// @notice The caller is neither the owner nor the account itself (an owner-signed op).
    error NotOwnerOrSelf(address caller);
    /// @notice The owner may not be the zero address.
    error InvalidOwner();
    /// @notice The account already has an owner.
    error AlreadyInitialized();

    /// @notice A 65-byte ECDSA signature whose length is wrong.
    error InvalidSignatureLength(uint256 length);
    /// @notice An ECDSA signature with s in the upper half of the curve order (malleable).
    error InvalidSignatureS(bytes32 s);
    /// @notice An ECDSA signature whose v is neither 27 nor 28.
    error InvalidSignatureV(uint8 v);
    /// @notice A UserOp signature that is neither 65 bytes (owner) nor a known session mode.
    error UnknownSignatureMode(uint8 mode);
    /// @notice A session signature whose length does not fit its mode.
    error InvalidSessionSignatureLength(uint256 length);
    /// @notice The enable-mode payload (scope and owner signature) is not valid ABI.
    error MalformedEnableData();
    /// @notice The op's calldata is not canonical ABI for the function it names.
    error MalformedCalldata();

    /// @notice The op's nonce key does not name a session key (its upper 160 bits are zero).
    error NoSessionKeyInNonce();
    /// @notice The session key is not active (never granted, revoked, or revoked by revokeAllSessions).
    error SessionNotActive(address key);
    /// @notice A session op must carry its own validUntil, non-zero and below 2^40.
    error InvalidOpExpiry(uint48 opValidUntil);
    /// @notice The session's rate window is full until `nextWindow` and the op expires before it.
    error SessionRateLimited(address key, uint40 nextWindow);
    /// @notice The session has used all of its `maxUses`.
    error SessionExhausted(address key);
    /// @notice A session op may only call `execute` or `executeBatch`.
    error SessionSelectorNotAllowed(bytes4 selector);
    /// @notice The session has no permission for this (target, selector).
    error SessionCallNotPermitted(address target, bytes4 selector);
    /// @notice The call sends more native value than the permission allows.
    error SessionValueTooHigh(uint256 value, uint256 limit);
    /// @notice The order's market is not in the session's market allowlist.
    error SessionMarketNotAllowed(uint32 marketId);
    /// @notice The order's |sizeDelta| exceeds the session's max order size.
    error SessionOrderTooLarge(uint256 size, uint256 maxSize);
    /// @notice The order's |sizeDelta| x limitPrice exceeds the session's max order notional.
    error SessionNotionalTooHigh(uint256 notional, uint256 maxNotional);
    /// @notice The session only allows reduce-only orders.
    error SessionReduceOnlyRequired();

    /// @notice The session key may not be the zero address.
    error InvalidSessionKey();
    /// @notice The scope is refused: `reason` says which rule it breaks.
    error InvalidScope(string reason);
    /// @notice The permission at `index` is refused: `reason` says why.
    error InvalidPermission(uint256 index, string reason);
    /// @notice The epoch or grant counter reached its maximum.
    error CounterOverflow();

    /*//////////////////////////////////////////////////////////////
                               FUNCTIONS
    //////////////////////////////////////////////////////////////*/

    /// @notice Grants (or replaces) a session key with `scope`. Owner or self (owner-signed op) only.
    /// @param key The session key's address.
    /// @param scope What the key may do; refused if expired, empty or unsafe.
    /// @return grantId The grant's sequence number, which session ops sign over.
    function grantSession(address key, SessionScope calldata scope) external returns (uint32 grantId);

    /// @notice Revokes one session key. Owner or self only.
    /// @param key The session key to revoke.
    function revokeSession(address key) external;

    /// @notice Revokes every session key at once and invalidates unused owner grant signatures.
    function revokeAllSessions() external;

    /// @notice Every key ever granted on this account (active or not); see `getSession`.
    /// @return keys The session keys, in order of first grant.
    function sessionKeys() external view returns (address[] memory keys);

    /// @notice The stored state of `key`'s session.
    /// @param key The session key.
    /// @return info Scope, counters and whether the key can validate ops now.
    function getSession(address key) external view returns (SessionInfo memory info);

    /// @notice The EIP-712 digest the owner signs to enable `key` with `scope` inside a session op.
    /// @dev Binds chain id and account (domain), the EntryPoint, the current epoch and the key's grant nonce.
    /// @param key The session key.
    /// @param scope The scope to grant.
    /// @return digest The digest to sign.
    function grantDigest(address key, SessionScope calldata scope) external view returns (bytes32 digest);
}
