// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "solady/utils/EIP712.sol";

import {IPerpVenue} from "../venue/IPerpVenue.sol";
import {ISignedOrderVenue} from "../venue/ISignedOrderVenue.sol";
import {ISessionManager} from "./interfaces/ISessionManager.sol";
import {ITradingAccount} from "./interfaces/ITradingAccount.sol";
import {AccountStorage} from "./libraries/AccountStorage.sol";
import {P256Key} from "./libraries/P256Key.sol";
import {SessionGrantHash} from "./libraries/SessionGrantHash.sol";
import {PermissionRule, PermissionRuleLibrary} from "./types/PermissionRule.sol";
import {RiskState, RiskStateLibrary} from "./types/RiskState.sol";
import {SessionCounters, SessionCountersLibrary, UNLIMITED_USES} from "./types/SessionCounters.sol";
import {SessionState, SessionStateLibrary} from "./types/SessionState.sol";

/// @title SessionManager
/// @notice Session and ownership administration of TradingAccounts: granting (directly or from an owner
/// grant carried in a session op), revoking, re-arming, two-step ownership transfer and the read functions.
/// @dev Never used on its own storage: a TradingAccount runs it by DELEGATECALL, from its fallback (every
/// function of `ISessionManager`, with msg.sender preserved, so each checks its caller here) and from
/// validation (`enableFromOp`, which the account's fallback refuses to forward). Split from the account so
/// the account's validation and execution hot path stays small and under EIP-170's code-size limit.
///
/// Grants run in validation too (enable mode), so everything reached from `_grant` obeys ERC-7562: it reads
/// and writes only the account's storage and never reads the clock.
contract SessionManager is ISessionManager, ITradingAccount, EIP712 {
    using SessionStateLibrary for SessionState;

    /// @dev Fees are stored in whole gwei (see `SessionState`).
    uint256 internal constant GWEI = 1 gwei;
    uint256 internal constant MAX_GWEI = type(uint56).max;
    /// @notice Longest dead-man switch interval a heartbeat may set (seconds).
    uint32 public constant MAX_HEARTBEAT_INTERVAL = AccountStorage.MAX_HEARTBEAT_INTERVAL;

    /// @notice The EntryPoint the accounts using this module trust (grants bind it).
    address public immutable entryPoint;

    /// @param entryPoint_ The EntryPoint v0.8 of the accounts that use this module.
    constructor(address entryPoint_) {
        entryPoint = entryPoint_;
    }

    /*//////////////////////////////////////////////////////////////
                                 GRANTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    function grantSession(address key, SessionScope calldata scope) external returns (uint32) {
        _requireOwnerOrSelf();
        // Execution phase: reading the clock is allowed here (never in validation).
        if (scope.validUntil <= block.timestamp) revert InvalidScope(ScopeFault.ValidUntilInPast);
        return _grant(AccountStorage.layout(), key, scope);
    }

    /// @notice Stores the owner-signed grant carried in an enable-mode session signature. Reached only by
    /// the account's own DELEGATECALL from validation (its fallback refuses this selector).
    /// @param key The session key named by the op's nonce.
    /// @param data `abi.encode(SessionScope, bytes ownerSignature)`.
    /// @return digest The grant's EIP-712 digest, which the key's signature must cover.
    /// @return ownerSigFailed True if the owner did not sign `digest` (the op then fails validation, and
    /// the EntryPoint undoes the grant with everything else the op did).
    function enableFromOp(address key, bytes calldata data) external returns (bytes32 digest, bool ownerSigFailed) {
        (SessionScope memory scope, bytes memory ownerSignature) = abi.decode(data, (SessionScope, bytes));
        AccountStorage.Layout storage $ = AccountStorage.layout();
        digest = _hashTypedData(SessionGrantHash.hash(entryPoint, $.epoch, key, $.keyNonce[key], scope));
        ownerSigFailed = !_ownerSigned($.owner, digest, ownerSignature);
        _grant($, key, scope);
    }

    /// @inheritdoc ISessionManager
    function grantDigest(address key, SessionScope calldata scope) external view returns (bytes32) {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        return _hashTypedData(SessionGrantHash.hash(entryPoint, $.epoch, key, $.keyNonce[key], scope));
    }

    /*//////////////////////////////////////////////////////////////
                           REVOCATION AND RE-ARMING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    function revokeSession(address key) external {
        _requireOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        uint32 grantId = $.sessions[key].grantId();
        $.sessions[key] = SessionState.wrap(0);
        delete $.permissionIds[key];
        delete $.paymasters[key];
        delete $.heartbeats[key];
        $.keyNonce[key] += 1;
        emit SessionRevoked(key, grantId);
    }

    /// @inheritdoc ISessionManager
    function revokeAllSessions() external {
        _requireOwnerOrSelf();
        _revokeAll(AccountStorage.layout());
    }

    /// @inheritdoc ISessionManager
    function rearmSession(address key) external {
        _requireOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        $.sessions[key] = s.withoutFlag(SessionStateLibrary.TRIPPED);
        $.risk[key] = $.risk[key].withMark(0);
        emit SessionRearmed(key);
    }

    /*//////////////////////////////////////////////////////////////
                       ROTATION AND DEAD-MAN SWITCH
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    function commitSuccessor(address key, address successor) external {
        _requireOwnerOrSelf();
        if (successor == key) revert InvalidSuccessor(successor);
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        $.successors[key] = (uint256(s.grantId()) << 160) | uint160(successor);
        emit SuccessorCommitted(key, successor);
    }

    /// @inheritdoc ISessionManager
    function successorOf(address key) external view returns (address) {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        return s.validUntil() == 0 ? address(0) : AccountStorage.successorOf($, key, s.grantId());
    }

    /// @inheritdoc ISessionManager
    /// @dev The EntryPoint reaches this only with the callData of an op the account validated: one signed by
    /// `key` itself (validation requires the call to name the op's own key) or by the owner.
    function rotateToSuccessor(address key) external {
        _requireEntryPointOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        address successor = AccountStorage.successorOf($, key, $.sessions[key].grantId());
        if (successor == address(0)) revert NoSuccessor(key);
        _rotate($, key, successor);
    }

    /// @inheritdoc ISessionManager
    function rotateSession(address key, address successor) external {
        _requireOwnerOrSelf();
        _rotate(AccountStorage.layout(), key, successor);
    }

    /// @inheritdoc ISessionManager
    /// @dev Execution phase only (it reads the clock); validation checks the key and the interval's range.
    function heartbeat(address key, uint32 interval) external {
        _requireEntryPointOwnerOrSelf();
        if (interval == 0 || interval > MAX_HEARTBEAT_INTERVAL) revert InvalidHeartbeatInterval(interval);
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        uint40 deadline = uint40(block.timestamp + interval);
        $.heartbeats[key] = deadline;
        if (!s.has(SessionStateLibrary.HEARTBEAT)) $.sessions[key] = s.withFlag(SessionStateLibrary.HEARTBEAT);
        emit HeartbeatRenewed(key, deadline);
    }

    /// @inheritdoc ISessionManager
    function disarmHeartbeat(address key) external {
        _requireOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        $.sessions[key] = $.sessions[key].withoutFlag(SessionStateLibrary.HEARTBEAT);
        delete $.heartbeats[key];
        emit HeartbeatDisarmed(key);
    }

    /// @inheritdoc ISessionManager
    function heartbeatDeadline(address key) external view returns (uint40) {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        return $.sessions[key].has(SessionStateLibrary.HEARTBEAT) ? $.heartbeats[key] : 0;
    }

    /*//////////////////////////////////////////////////////////////
                           SIGNED ORDER CANCELS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    /// @dev The EntryPoint reaches this only with the callData of an op the account validated: one signed by
    /// `key` itself or by the owner.
    function bumpOrderEpoch(address key) external {
        _requireEntryPointOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        uint32 next = $.orderEpochs[key] + 1;
        $.orderEpochs[key] = next;
        emit OrderEpochBumped(key, next);
    }

    /// @inheritdoc ISessionManager
    function orderEpoch(address key) external view returns (uint32) {
        return AccountStorage.layout().orderEpochs[key];
    }

    /// @inheritdoc ISessionManager
    /// @dev As `bumpOrderEpoch`: validation of a key's op checked `venue` is one of its order venues.
    function cancelSignedOrders(address key, address venue, uint256 wordIndex, uint256 mask) external {
        _requireEntryPointOwnerOrSelf();
        ISignedOrderVenue(venue).cancelOrders(address(this), key, wordIndex, mask);
    }

    /// @dev Moves `key`'s live session to `successor` under the same grantId: the session word (fee budget
    /// left, flags, breaker trip), its counters, risk state and heartbeat as they stand, and its call and
    /// paymaster rules re-keyed to the successor. Then `key` dies as on revocation.
    function _rotate(AccountStorage.Layout storage $, address key, address successor) internal {
        if (successor == address(0) || successor == key) revert InvalidSuccessor(successor);
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        if (AccountStorage.isActive($, $.sessions[successor])) revert SuccessorInUse(successor);
        uint32 grantId = s.grantId();

        bytes32[] storage ids = $.permissionIds[key];
        bytes32[] storage moved = $.permissionIds[successor];
        while (moved.length != 0) moved.pop();
        for (uint256 i; i < ids.length; ++i) {
            address target = address(bytes20(ids[i]));
            bytes4 selector = bytes4(ids[i] << 160);
            $.rules[AccountStorage.ruleId(successor, grantId, target, selector)] =
                $.rules[AccountStorage.ruleId(key, grantId, target, selector)];
            moved.push(ids[i]);
        }
        address[] storage pms = $.paymasters[key];
        delete $.paymasters[successor];
        for (uint256 i; i < pms.length; ++i) {
            $.rules[AccountStorage.ruleId(successor, grantId, pms[i], bytes4(0))] =
                $.rules[AccountStorage.ruleId(key, grantId, pms[i], bytes4(0))];
            $.paymasters[successor].push(pms[i]);
        }
        $.sessions[successor] = s;
        $.counters[successor] = $.counters[key];
        $.risk[successor] = $.risk[key];
        $.heartbeats[successor] = $.heartbeats[key];
        $.keyNonce[successor] += 1;
        if (!$.known[successor]) {
            $.known[successor] = true;
            $.keys.push(successor);
        }

        $.sessions[key] = SessionState.wrap(0);
        delete $.permissionIds[key];
        delete $.paymasters[key];
        delete $.successors[key];
        delete $.heartbeats[key];
        $.keyNonce[key] += 1;
        emit SessionRotated(key, successor, grantId);
    }

    /*//////////////////////////////////////////////////////////////
                                OWNERSHIP
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    function transferOwnership(address newOwner, bool keepSessions) external {
        _requireOwnerOrSelf();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        $.pendingOwner = newOwner;
        $.keepSessionsOnTransfer = keepSessions;
        emit OwnershipTransferStarted($.owner, newOwner, keepSessions);
    }

    /// @inheritdoc ISessionManager
    function acceptOwnership() external {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        address next = $.pendingOwner;
        if (next == address(0) || msg.sender != next) revert NotPendingOwner(msg.sender);
        emit OwnerChanged($.owner, next);
        $.owner = next;
        $.pendingOwner = address(0);
        if (!$.keepSessionsOnTransfer) _revokeAll($);
        $.keepSessionsOnTransfer = false;
    }

    /// @inheritdoc ISessionManager
    function pendingOwner() external view returns (address) {
        return AccountStorage.layout().pendingOwner;
    }

    /*//////////////////////////////////////////////////////////////
                                  READS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ISessionManager
    function paymasterAllowance(address key, address paymaster)
        external
        view
        returns (bool listed, uint256 maxOpCost, uint256 left)
    {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) return (false, 0, 0);
        PermissionRule entry = $.rules[AccountStorage.ruleId(key, s.grantId(), paymaster, bytes4(0))];
        if (!entry.isPaymaster()) return (false, 0, 0);
        return (true, uint256(entry.sponsorMaxOpCostGwei()) * GWEI, uint256(entry.sponsorLeftGwei()) * GWEI);
    }

    /// @inheritdoc ISessionManager
    function sessionKeys() external view returns (address[] memory) {
        return AccountStorage.layout().keys;
    }

    /// @inheritdoc ISessionManager
    function getSession(address key) external view returns (SessionInfo memory info) {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        info.grantId = s.grantId();
        info.active = AccountStorage.isActive($, s);
        info.tripped = s.has(SessionStateLibrary.TRIPPED);
        info.validAfter = s.validAfter();
        info.validUntil = s.validUntil();
        info.maxOpTtl = s.maxOpTtl();
        info.maxCallsPerOp = s.maxCallsPerOp();
        info.maxOpCost = uint256(s.maxOpCostGwei()) * GWEI;
        info.feeLeft = uint256(s.feeLeftGwei()) * GWEI;
        info.usesLeft = UNLIMITED_USES;
        if (s.has(SessionStateLibrary.COUNTERS)) {
            SessionCounters c = $.counters[key];
            info.rateCount = c.rateCount();
            info.ratePeriod = c.ratePeriod();
            info.windowStart = c.windowStart();
            info.windowUsed = c.windowUsed();
            info.usesLeft = c.usesLeft();
            info.valueLeft = c.valueLeft();
        }
        if (s.has(SessionStateLibrary.RISK)) {
            RiskState r = $.risk[key];
            info.risk = ITradingAccount.RiskLimits({
                maxLeverage: r.maxLeverage(),
                maxPositionNotional: r.maxPositionNotional(),
                minHeadroomBps: r.minHeadroomBps(),
                maxDrawdownBps: r.maxDrawdownBps(),
                drawdownFloor: r.drawdownFloor()
            });
            info.highWaterMark = r.highWaterMark();
        }
        if (info.validUntil != 0) info.paymasters = $.paymasters[key];
        info.permissions = _permissions($, key, info.grantId);
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

    /// @dev Checks `scope` and stores it as `key`'s session under a new grantId. Shared by direct grants
    /// (execution phase) and enable mode (validation phase), so it must not read the clock.
    function _grant(AccountStorage.Layout storage $, address key, SessionScope memory scope)
        internal
        returns (uint32 grantId)
    {
        if (key == address(0)) revert InvalidSessionKey();
        uint8 flags = _checkScope(scope);
        if ($.grantCount == type(uint32).max) revert CounterOverflow();

        grantId = $.grantCount + 1;
        $.grantCount = grantId;
        $.keyNonce[key] += 1;
        $.sessions[key] = SessionStateLibrary.pack(
            scope.validAfter,
            scope.validUntil,
            grantId,
            scope.maxOpTtl,
            scope.maxCallsPerOp,
            flags,
            uint56(scope.maxOpCost / GWEI),
            uint56(scope.feeBudget / GWEI)
        );
        if (flags & SessionStateLibrary.COUNTERS != 0) {
            $.counters[key] = SessionCountersLibrary.pack(
                scope.rateCount,
                scope.ratePeriod,
                scope.maxUses == 0 ? UNLIMITED_USES : scope.maxUses,
                scope.valueBudget
            );
        }
        if (flags & SessionStateLibrary.RISK != 0) {
            ITradingAccount.RiskLimits memory r = scope.risk;
            $.risk[key] = RiskStateLibrary.pack(
                r.maxLeverage, r.minHeadroomBps, r.maxDrawdownBps, r.maxPositionNotional, r.drawdownFloor
            );
        }
        _storePermissions($, key, grantId, scope.permissions);
        _storePaymasters($, key, grantId, scope);
        if (!$.known[key]) {
            $.known[key] = true;
            $.keys.push(key);
        }
        emit SessionGranted(key, grantId, scope.validAfter, scope.validUntil);
    }

    /// @dev The scope's flags, or the first rule it breaks.
    function _checkScope(SessionScope memory scope) internal pure returns (uint8 flags) {
        if (scope.validUntil == 0) revert InvalidScope(ScopeFault.ValidUntilZero);
        if (scope.validUntil <= scope.validAfter) revert InvalidScope(ScopeFault.EmptyWindow);
        if (scope.maxOpTtl == 0) revert InvalidScope(ScopeFault.ZeroOpTtl);
        if ((scope.rateCount == 0) != (scope.ratePeriod == 0)) revert InvalidScope(ScopeFault.HalfRateLimit);
        if (scope.maxUses == UNLIMITED_USES) revert InvalidScope(ScopeFault.MaxUsesTooLarge);
        if (scope.permissions.length == 0) revert InvalidScope(ScopeFault.NoPermissions);
        if (scope.maxOpCost % GWEI != 0 || scope.feeBudget % GWEI != 0) {
            revert InvalidScope(ScopeFault.FeeNotWholeGwei);
        }
        if (scope.maxOpCost / GWEI > MAX_GWEI || scope.feeBudget / GWEI > MAX_GWEI) {
            revert InvalidScope(ScopeFault.FeeTooLarge);
        }
        if (scope.paymasterMaxOpCost % GWEI != 0 || scope.paymasterBudget % GWEI != 0) {
            revert InvalidScope(ScopeFault.FeeNotWholeGwei);
        }
        if (scope.paymasterMaxOpCost / GWEI > MAX_GWEI || scope.paymasterBudget / GWEI > MAX_GWEI) {
            revert InvalidScope(ScopeFault.FeeTooLarge);
        }
        if (scope.paymasters.length != 0 && scope.paymasterBudget == 0) {
            revert InvalidScope(ScopeFault.NoPaymasterBudget);
        }
        if (scope.valueBudget == 0) {
            for (uint256 i; i < scope.permissions.length; ++i) {
                if (scope.permissions[i].valueLimit != 0) revert InvalidScope(ScopeFault.ValueWithoutBudget);
            }
        }
        ITradingAccount.RiskLimits memory r = scope.risk;
        if (r.maxDrawdownBps >= 10_000) revert InvalidScope(ScopeFault.DrawdownTooLarge);

        if (scope.rateCount != 0 || scope.maxUses != 0 || scope.valueBudget != 0) {
            flags |= SessionStateLibrary.COUNTERS;
        }
        if (r.maxDrawdownBps != 0 || r.drawdownFloor != 0) {
            flags |= SessionStateLibrary.BREAKER | SessionStateLibrary.RISK;
        }
        if (r.maxLeverage != 0 || r.maxPositionNotional != 0 || r.minHeadroomBps != 0) {
            flags |= SessionStateLibrary.RISK;
        }
        if (scope.paymasters.length != 0) flags |= SessionStateLibrary.PAYMASTERS;
    }

    function _storePermissions(
        AccountStorage.Layout storage $,
        address key,
        uint32 grantId,
        CallPermission[] memory permissions
    ) internal {
        bytes32[] storage ids = $.permissionIds[key];
        while (ids.length != 0) ids.pop();
        for (uint256 i; i < permissions.length; ++i) {
            CallPermission memory p = permissions[i];
            bytes32 id = AccountStorage.ruleId(key, grantId, p.target, p.selector);
            if (PermissionRule.unwrap($.rules[id]) != 0) revert InvalidPermission(i, PermissionFault.Duplicate);
            $.rules[id] = _ruleFor(i, p);
            ids.push(bytes32(bytes20(p.target)) | (bytes32(p.selector) >> 160));
        }
    }

    /// @dev Lists `scope`'s paymasters for `key`, each entry carrying the scope's per-op cap and a full budget.
    function _storePaymasters(AccountStorage.Layout storage $, address key, uint32 grantId, SessionScope memory scope)
        internal
    {
        address[] memory list = scope.paymasters;
        PermissionRule entry = PermissionRuleLibrary.packPaymaster(
            uint56(scope.paymasterMaxOpCost / GWEI), uint56(scope.paymasterBudget / GWEI)
        );
        delete $.paymasters[key];
        for (uint256 i; i < list.length; ++i) {
            address pm = list[i];
            if (pm == address(0) || pm == address(this) || pm == entryPoint) {
                revert InvalidScope(ScopeFault.BadPaymaster);
            }
            bytes32 id = AccountStorage.ruleId(key, grantId, pm, bytes4(0));
            if (PermissionRule.unwrap($.rules[id]) != 0) revert InvalidScope(ScopeFault.BadPaymaster);
            $.rules[id] = entry;
            $.paymasters[key].push(pm);
        }
    }

    /// @dev The stored rule for permission `p`, refusing anything that could move value out or reach the
    /// account's own configuration.
    function _ruleFor(uint256 i, CallPermission memory p) internal view returns (PermissionRule) {
        if (p.target == address(0)) revert InvalidPermission(i, PermissionFault.ZeroTarget);
        if (p.target == address(this)) revert InvalidPermission(i, PermissionFault.TargetIsAccount);
        if (p.target == entryPoint) revert InvalidPermission(i, PermissionFault.TargetIsEntryPoint);
        if (p.selector == bytes4(0)) revert InvalidPermission(i, PermissionFault.ZeroSelector);
        if (isForbiddenSelector(p.selector)) revert InvalidPermission(i, PermissionFault.MovesFundsOut);
        if (p.selector == IPerpVenue.placeOrder.selector) {
            if (p.valueLimit != 0) revert InvalidPermission(i, PermissionFault.OrderCarriesValue);
            if (p.marketMask == 0) revert InvalidPermission(i, PermissionFault.EmptyMarketAllowlist);
            if (p.maxOrderSize == 0) revert InvalidPermission(i, PermissionFault.ZeroMaxOrderSize);
            if (p.maxOrderNotional == 0) revert InvalidPermission(i, PermissionFault.ZeroMaxOrderNotional);
            return PermissionRuleLibrary.packOrder(p.marketMask, p.maxOrderSize, p.maxOrderNotional, p.reduceOnly);
        }
        if (p.marketMask != 0 || p.maxOrderSize != 0 || p.maxOrderNotional != 0 || p.reduceOnly) {
            revert InvalidPermission(i, PermissionFault.OrderLimitsOnPlainCall);
        }
        return PermissionRuleLibrary.packCall(p.valueLimit);
    }

    /// @notice Selectors a session key can never be granted, on any target: they move collateral, tokens or
    /// allowances out of the account or into the venue's own funds.
    /// @param s A function selector.
    /// @return True if `s` is on the deny list.
    function isForbiddenSelector(bytes4 s) public pure returns (bool) {
        return s == IPerpVenue.withdrawMargin.selector // withdrawMargin(uint256): collateral out of the venue
            || s == IPerpVenue.fundPool.selector // fundPool(uint256): the account's tokens into the venue's pool
            || s == IPerpVenue.fundInsurance.selector // fundInsurance(uint256): tokens into the insurance fund
            || s == 0xa9059cbb // transfer(address,uint256)
            || s == 0x23b872dd // transferFrom(address,address,uint256)
            || s == 0x095ea7b3 // approve(address,uint256)
            || s == 0x39509351 // increaseAllowance(address,uint256)
            || s == 0x87517c45 // approve(address,address,uint160,uint48) (Permit2)
            || s == 0xa22cb465 // setApprovalForAll(address,bool)
            || s == 0x42842e0e // safeTransferFrom(address,address,uint256)
            || s == 0xb88d4fde // safeTransferFrom(address,address,uint256,bytes)
            || s == 0xf242432a // safeTransferFrom(address,address,uint256,uint256,bytes) (ERC-1155)
            || s == 0x2eb2c2d6; // safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)
    }

    function _permissions(AccountStorage.Layout storage $, address key, uint32 grantId)
        internal
        view
        returns (CallPermission[] memory out)
    {
        bytes32[] storage ids = $.permissionIds[key];
        out = new CallPermission[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            address target = address(bytes20(ids[i]));
            bytes4 selector = bytes4(ids[i] << 160);
            PermissionRule rule = $.rules[AccountStorage.ruleId(key, grantId, target, selector)];
            CallPermission memory p = out[i];
            p.target = target;
            p.selector = selector;
            if (rule.isOrder()) {
                p.marketMask = rule.marketMask();
                p.maxOrderSize = rule.maxOrderSize();
                p.maxOrderNotional = rule.maxOrderNotional();
                p.reduceOnly = rule.reduceOnly();
            } else {
                p.valueLimit = rule.valueLimit();
            }
        }
    }

    function _revokeAll(AccountStorage.Layout storage $) internal {
        if ($.epoch == type(uint32).max) revert CounterOverflow();
        uint32 newEpoch = $.epoch + 1;
        $.epoch = newEpoch;
        $.revokeFloor = $.grantCount;
        emit AllSessionsRevoked(newEpoch);
    }

    /// @dev True if `owner` signed `digest`: a 65-byte secp256k1 signature, or a P-256 owner's
    /// `0x10 ‖ r ‖ s ‖ x ‖ y` (see `P256Key`). Malformed signatures revert with the fault.
    function _ownerSigned(address owner, bytes32 digest, bytes memory sig) internal view returns (bool) {
        if (sig.length == P256Key.OWNER_SIG_LENGTH && uint8(sig[0]) == P256Key.OWNER_PREFIX) {
            bytes32 r;
            bytes32 s;
            bytes32 x;
            bytes32 y;
            assembly ("memory-safe") {
                r := mload(add(sig, 0x21))
                s := mload(add(sig, 0x41))
                x := mload(add(sig, 0x61))
                y := mload(add(sig, 0x81))
            }
            return P256Key.verify(owner, digest, r, s, x, y);
        }
        return _recover(digest, sig) == owner;
    }

    /// @dev ecrecover of the owner's 65-byte grant signature; malformed signatures revert with the fault.
    function _recover(bytes32 digest, bytes memory sig) internal pure returns (address signer) {
        if (sig.length != 65) revert InvalidSignatureLength(sig.length);
        (address recovered, ECDSA.RecoverError err, bytes32 arg) = ECDSA.tryRecover(digest, sig);
        if (err == ECDSA.RecoverError.InvalidSignatureS) revert InvalidSignatureS(arg);
        uint8 v = uint8(sig[64]);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        signer = recovered;
    }

    function _requireOwnerOrSelf() internal view {
        if (msg.sender != AccountStorage.layout().owner && msg.sender != address(this)) {
            revert NotOwnerOrSelf(msg.sender);
        }
    }

    function _requireEntryPointOwnerOrSelf() internal view {
        if (msg.sender != entryPoint) _requireOwnerOrSelf();
    }

    function _domainNameAndVersion() internal pure override returns (string memory, string memory) {
        return ("Keyscope TradingAccount", "1");
    }
}
