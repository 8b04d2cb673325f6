// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ITradingAccount
/// @notice Session-key vocabulary of a Keyscope trading account: the scope an owner grants, the errors a
/// refused operation reverts with, and the events a portfolio view follows. The functions that administer
/// sessions are in `ISessionManager` (served by the account through its `SessionManager` module).
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
        /// Max native value (wei) per call; 0 for trading keys. The session's `valueBudget` caps the sum.
        uint96 valueLimit;
        /// placeOrder only: bit `i` set allows market id `i` (ids 0..63).
        uint64 marketMask;
        /// placeOrder only: max |sizeDelta| per order, 18 decimals.
        uint88 maxOrderSize;
        /// placeOrder only: max order notional, 18-decimal USD: |sizeDelta| x limitPrice for a buy (the fill is
        /// at or below the limit) and |sizeDelta| x fill price for a sell (checked after it fills).
        uint96 maxOrderNotional;
        /// placeOrder only: the order must set reduceOnly.
        bool reduceOnly;
    }

    /// @notice Limits checked after a session op's calls have run, against the venue its orders went to.
    /// @dev Money in the venue's quote units (its collateral's decimals). Leverage, position and headroom
    /// limits apply to ops that place an order without reduceOnly; the breaker watches every op. The breaker
    /// measures equity: the account's wallet balance of the venue's collateral token plus its venue account
    /// value, so a key that deposits the wallet into margin gains no room to lose it.
    struct RiskLimits {
        /// Gross notional / account value, in hundredths (300 = 3x); 0 for none.
        uint16 maxLeverage;
        /// Largest notional of the position in any one market; 0 for none.
        uint64 maxPositionNotional;
        /// Account value must stay at or above maintenance margin x (1 + minHeadroomBps / 10,000); 0 for none.
        uint16 minHeadroomBps;
        /// Breaker: equity below the high-water mark x (1 - maxDrawdownBps / 10,000) trips it; 0 for none.
        uint16 maxDrawdownBps;
        /// Breaker: equity below this trips it; 0 for none.
        uint64 drawdownFloor;
    }

    /// @notice What a session key may do, for how long, and with how much money.
    struct SessionScope {
        /// Start of the session (unix seconds), returned to the EntryPoint as validAfter.
        uint40 validAfter;
        /// End of the session (unix seconds); never 0 (0 would mean "forever" in ERC-4337).
        uint40 validUntil;
        /// Longest life of one op: an op signed to expire at T is valid only from T - maxOpTtl.
        uint16 maxOpTtl;
        /// Calls (each order of a batch counts) allowed per `ratePeriod`; 0 (with `ratePeriod` 0) for no limit.
        uint16 rateCount;
        /// Length of a rate window in seconds.
        uint24 ratePeriod;
        /// Total calls the key may ever make; 0 for no cap.
        uint32 maxUses;
        /// Calls one op may make; 0 for no cap.
        uint8 maxCallsPerOp;
        /// Most one op may cost (wei, whole gwei): (all gas limits + preVerificationGas) x maxFeePerGas; 0 for
        /// no cap but the budget.
        uint128 maxOpCost;
        /// Gas the key's ops may cost in all (wei, whole gwei), charged at each op's maximum cost. 0: the key
        /// pays for no op itself (only listed paymasters may sponsor its ops).
        uint128 feeBudget;
        /// Native value (wei) all the key's calls may send together; needed by any permission with a valueLimit.
        uint128 valueBudget;
        /// Post-execution risk limits and the drawdown breaker; all zero for none.
        RiskLimits risk;
        /// Most each listed paymaster may be charged for one of the key's ops (wei, whole gwei): (every gas
        /// limit, the paymaster's included, + preVerificationGas) x maxFeePerGas, the EntryPoint's prefund; 0
        /// for no cap but the budget.
        uint128 paymasterMaxOpCost;
        /// What each listed paymaster may be charged for the key's ops in all (wei, whole gwei), charged at each
        /// sponsored op's maximum cost in validation, never refunded; above 0 whenever paymasters are listed.
        uint128 paymasterBudget;
        /// Paymasters that may sponsor the key's ops (the account then pays no gas); empty for none.
        address[] paymasters;
        /// The calls the key may make; at least one.
        CallPermission[] permissions;
    }

    /// @notice A session as the account stores it, for read functions.
    struct SessionInfo {
        /// True while the key can validate ops (granted, not revoked, not killed by revokeAllSessions).
        bool active;
        /// True when the drawdown breaker tripped: only deposits, cancels and reduce-only orders validate.
        bool tripped;
        /// Account-wide grant sequence number; session ops sign over it.
        uint32 grantId;
        uint40 validAfter;
        uint40 validUntil;
        uint16 maxOpTtl;
        uint8 maxCallsPerOp;
        uint16 rateCount;
        uint24 ratePeriod;
        /// Start of the current rate window and calls counted in it.
        uint40 windowStart;
        uint16 windowUsed;
        /// Calls the key may still make; type(uint32).max when uncapped.
        uint32 usesLeft;
        /// Per-op cost cap and fee budget left (wei).
        uint256 maxOpCost;
        uint256 feeLeft;
        /// Native value the key's calls may still send (wei).
        uint256 valueLeft;
        RiskLimits risk;
        /// Highest equity (wallet collateral + venue account value) seen after one of the key's ops (0 before the
        /// first).
        uint64 highWaterMark;
        address[] paymasters;
        CallPermission[] permissions;
    }

    /// @notice Why a scope is refused.
    enum ScopeFault {
        ValidUntilInPast,
        ValidUntilZero,
        EmptyWindow,
        ZeroOpTtl,
        HalfRateLimit,
        MaxUsesTooLarge,
        NoPermissions,
        FeeNotWholeGwei,
        FeeTooLarge,
        ValueWithoutBudget,
        DrawdownTooLarge,
        BadPaymaster,
        /// Paymasters listed with no paymaster budget: a listed paymaster's spending must be bounded.
        NoPaymasterBudget
    }

    /// @notice Why a permission is refused.
    enum PermissionFault {
        ZeroTarget,
        TargetIsAccount,
        TargetIsEntryPoint,
        ZeroSelector,
        MovesFundsOut,
        OrderCarriesValue,
        EmptyMarketAllowlist,
        ZeroMaxOrderSize,
        ZeroMaxOrderNotional,
        OrderLimitsOnPlainCall,
        Duplicate
    }

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Emitted once, when a proxy is initialised with its owner.
    event AccountInitialized(address indexed entryPoint, address indexed owner);
    /// @notice Emitted when the owner key changes.
    event OwnerChanged(address indexed previousOwner, address indexed newOwner);
    /// @notice Emitted when the owner names a successor, who must accept; `keepSessions` false ends every
    /// session on acceptance.
    event OwnershipTransferStarted(address indexed owner, address indexed pendingOwner, bool keepSessions);
    /// @notice Emitted when a session key is granted (directly or enabled in its first op).
    event SessionGranted(address indexed key, uint32 indexed grantId, uint40 validAfter, uint40 validUntil);
    /// @notice Emitted when one session key is revoked.
    event SessionRevoked(address indexed key, uint32 grantId);
    /// @notice Emitted when every session key is revoked at once; `epoch` is the new epoch.
    event AllSessionsRevoked(uint32 epoch);
    /// @notice Emitted when a key's drawdown breaker trips: from now on it may only deposit, cancel and reduce.
    /// @param accountValue The account's equity (wallet collateral + venue account value) that tripped it.
    event SessionBreakerTripped(address indexed key, int256 accountValue, uint256 threshold, uint64 highWaterMark);
    /// @notice Emitted when the owner re-arms a tripped key (its high-water mark starts again).
    event SessionRearmed(address indexed key);
    /// @notice `key`'s session moved to `successor` whole (scope, budgets and counters as they stood); `key` is dead.
    event SessionRotated(address indexed key, address indexed successor, uint32 grantId);
    /// @notice The owner named the key `key` may hand its session to (zero: none).
    event SuccessorCommitted(address indexed key, address indexed successor);
    /// @notice `key`'s dead-man switch was renewed: after `deadline`, only its protective ops validate.
    event HeartbeatRenewed(address indexed key, uint40 deadline);
    /// @notice The owner disarmed `key`'s dead-man switch.
    event HeartbeatDisarmed(address indexed key);
    /// @notice `key`'s order epoch moved to `epoch`: every signed order of the key under an older epoch is dead.
    event OrderEpochBumped(address indexed key, uint32 epoch);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice The caller is not the EntryPoint.
    error NotFromEntryPoint(address caller);
    /// @notice The caller is neither the EntryPoint nor the owner.
    error NotEntryPointOrOwner(address caller);
    /// @notice The caller is neither the owner nor the account itself (an owner-signed op).
    error NotOwnerOrSelf(address caller);
    /// @notice The caller is not the pending owner.
    error NotPendingOwner(address caller);
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
    /// @notice A call the account does not serve here: inner calldata other than `execute` or `executeBatch`,
    /// or a module function only the account itself may reach.
    error UnsupportedCall(bytes4 selector);

    /// @notice The op's nonce key does not name a session key (its upper 160 bits are zero).
    error NoSessionKeyInNonce();
    /// @notice The session key is not active (never granted, revoked, or revoked by revokeAllSessions).
    error SessionNotActive(address key);
    /// @notice A session op must carry its own validUntil, non-zero and below 2^40.
    error InvalidOpExpiry(uint48 opValidUntil);
    /// @notice The session's rate window is full until `nextWindow` and the op expires before it.
    error SessionRateLimited(address key, uint40 nextWindow);
    /// @notice The session has used all of its `maxUses` (or has fewer left than the op's calls).
    error SessionExhausted(address key);
    /// @notice A session op's callData must be `executeSession(key, calls)` with `execute` or `executeBatch`
    /// calls.
    error SessionSelectorNotAllowed(bytes4 selector);
    /// @notice `executeSession` names another key than the one that signed the op.
    error SessionKeyMismatch(address declared, address signer);
    /// @notice The session has no permission for this (target, selector).
    error SessionCallNotPermitted(address target, bytes4 selector);
    /// @notice The call sends more native value than the permission allows.
    error SessionValueTooHigh(uint256 value, uint256 limit);
    /// @notice The op's calls send more native value than is left of the session's value budget.
    error SessionValueBudgetExceeded(uint256 value, uint256 left);
    /// @notice The op makes more calls than the session allows in one op (or in one rate window).
    error SessionTooManyCalls(uint256 calls, uint256 max);
    /// @notice The op's maximum cost is over the session's per-op cap.
    error SessionOpCostTooHigh(uint256 cost, uint256 maxOpCost);
    /// @notice The op's maximum cost is over what is left of the session's fee budget.
    error SessionFeeBudgetExceeded(uint256 cost, uint256 feeLeft);
    /// @notice The op names a paymaster the session does not list.
    error SessionPaymasterNotAllowed(address paymaster);
    /// @notice The sponsored op's maximum cost (the EntryPoint's prefund, wei) is over what the scope lets
    /// `paymaster` be charged for one op.
    error SessionPaymasterOpCostTooHigh(address paymaster, uint256 cost, uint256 maxOpCost);
    /// @notice The sponsored op's maximum cost (wei, rounded up to whole gwei when charged) is over what is
    /// left of the key's budget at `paymaster`.
    error SessionPaymasterBudgetExceeded(address paymaster, uint256 cost, uint256 left);
    /// @notice The order's market is not in the session's market allowlist.
    error SessionMarketNotAllowed(uint32 marketId);
    /// @notice The order's |sizeDelta| exceeds the session's max order size.
    error SessionOrderTooLarge(uint256 size, uint256 maxSize);
    /// @notice The order's notional (a buy at its limit, a sell at its fill) exceeds the session's max.
    error SessionNotionalTooHigh(uint256 notional, uint256 maxNotional);
    /// @notice The session only allows reduce-only orders.
    error SessionReduceOnlyRequired();
    /// @notice The key's breaker tripped: it may only deposit, cancel and place reduce-only orders.
    error SessionProtectiveOnly(address key);
    /// @notice The venue did not report a sell's fill price or the account's risk, so the key's limits cannot
    /// be checked.
    error SessionVenueUnreadable(address venue);
    /// @notice The op's orders went to more than one venue under post-execution limits.
    error SessionMixedVenues(address first, address second);
    /// @notice After the op, gross notional / account value (hundredths) is over the key's maximum.
    error SessionLeverageTooHigh(uint256 leverage, uint256 maxLeverage);
    /// @notice After the op, a position's notional is over the key's maximum.
    error SessionPositionTooLarge(uint256 notional, uint256 maxNotional);
    /// @notice After the op, the account value is below the key's required headroom over maintenance.
    error SessionHeadroomTooLow(int256 accountValue, uint256 required);
    /// @notice After a risk-raising op the account's equity (`accountValue`: wallet collateral + venue account
    /// value) is below the breaker's threshold: the op is undone and the breaker trips (this error is caught
    /// inside the account; it never reaches the EntryPoint).
    error SessionDrawdownBreached(int256 accountValue, uint256 threshold);

    /// @notice The session key may not be the zero address.
    error InvalidSessionKey();
    /// @notice The scope is refused for `fault`.
    error InvalidScope(ScopeFault fault);
    /// @notice The permission at `index` is refused for `fault`.
    error InvalidPermission(uint256 index, PermissionFault fault);
    /// @notice The epoch or grant counter reached its maximum.
    error CounterOverflow();
    /// @notice A rotation to zero or to the key itself.
    error InvalidSuccessor(address successor);
    /// @notice The successor already holds a live session, which a rotation would overwrite.
    error SuccessorInUse(address successor);
    /// @notice The key has no successor committed by the owner.
    error NoSuccessor(address key);
    /// @notice A heartbeat interval of zero or above `MAX_HEARTBEAT_INTERVAL`.
    error InvalidHeartbeatInterval(uint32 interval);

    /// @notice A signed order presented to an account it does not name.
    error OrderWrongAccount(address account);
    /// @notice A signed order of another grant of its key (revoked and re-granted since it was signed).
    error OrderGrantMismatch(uint32 signed, uint32 current);
    /// @notice A signed order under an order epoch its key (or the owner) has since bumped.
    error OrderEpochMismatch(uint32 signed, uint32 current);
    /// @notice The order's key did not sign it as an order of this account at the settling venue.
    error OrderSignatureInvalid();
    /// @notice The fill price is worse than the order's limit (above it for a buy, below it for a sell).
    error OrderPriceOutsideLimit(uint256 fillPrice, uint256 limitPrice);
    /// @notice A fill settled outside the session's validity window (validAfter, validUntil].
    error SessionOutsideWindow(uint40 validAfter, uint40 validUntil);
    /// @notice A risk-raising fill after the key's dead-man switch deadline.
    error SessionHeartbeatMissed(address key, uint40 deadline);
    /// @notice Fills of another venue still wait for their post-execution limits (that venue's closing
    /// `checkOrderFill`, size zero) in this transaction: one venue's batch at a time.
    error OrderChecksPending(address venue);
}
