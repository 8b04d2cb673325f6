// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {SIG_VALIDATION_FAILED, SIG_VALIDATION_SUCCESS, _packValidationData} from "@account-abstraction/contracts/core/Helpers.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {TokenCallbackHandler} from "@account-abstraction/contracts/accounts/callback/TokenCallbackHandler.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {EIP712} from "solady/utils/EIP712.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

import {IPerpVenue} from "../venue/IPerpVenue.sol";
import {ITradingAccount} from "./interfaces/ITradingAccount.sol";
import {ExecutionCalldata} from "./libraries/ExecutionCalldata.sol";
import {SessionGrantHash} from "./libraries/SessionGrantHash.sol";
import {PermissionRule, PermissionRuleLibrary} from "./types/PermissionRule.sol";
import {SessionState, SessionStateLibrary, UNLIMITED_USES} from "./types/SessionState.sol";

/// @title TradingAccount
/// @notice An ERC-4337 (EntryPoint v0.8) account for derivatives traders. One owner key controls it;
/// the owner grants short-lived session keys whose scope (markets, order size and notional, reduce-only,
/// rate, uses, validity window) is enforced on-chain during validation. A session key can trade; it can
/// never withdraw, move tokens or ETH out, or touch the account's own configuration.
/// @dev Deployed behind ERC-1967 minimal proxies by `AccountFactory`.
///
/// UserOp signature formats (`userOp.signature`):
///  - owner:   65 bytes `r ‖ s ‖ v`, over the v0.8 userOpHash.
///  - session: `0x01 ‖ opValidUntil (6) ‖ r ‖ s ‖ v` (72 bytes), the key signing
///             keccak256(userOpHash ‖ opValidUntil ‖ grantId).
///  - enable:  `0x02 ‖ opValidUntil (6) ‖ r ‖ s ‖ v ‖ abi.encode(SessionScope, ownerSignature)`: the owner's
///             EIP-712 `SessionGrant` signature rides in the key's first op; the key signs
///             keccak256(userOpHash ‖ opValidUntil ‖ grantDigest), so whoever submits the op cannot swap
///             the grant.
/// The session key is the upper 160 bits of the op's 192-bit nonce key (`sessionNonceKey`): each key has
/// its own 2^32 nonce lanes, so engines stream in parallel and a revoked key's lanes are dead.
///
/// Validation follows ERC-7562: it reads and writes only this account's storage, never reads TIMESTAMP
/// (windows and rate limits are returned as validAfter/validUntil), and calls only ecrecover, itself
/// (to decode enable data) and the EntryPoint (prefund).
contract TradingAccount is ITradingAccount, BaseAccount, TokenCallbackHandler, IERC1271, EIP712, UUPSUpgradeable {
    /// @notice Session signature mode: use an active session.
    uint8 public constant MODE_SESSION = 0x01;
    /// @notice Session signature mode: enable the session from an owner grant, then use it.
    uint8 public constant MODE_ENABLE = 0x02;

    /// @dev EIP-712 type of the owner's ERC-1271 messages, binding them to this account and chain.
    bytes32 internal constant KEYSCOPE_MESSAGE_TYPEHASH = keccak256("KeyscopeMessage(bytes32 hash)");
    /// @dev Length of a session signature without enable data: mode, opValidUntil, r, s, v.
    uint256 internal constant SESSION_SIG_LENGTH = 1 + 6 + 65;
    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies.
    uint256 internal constant HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @custom:storage-location erc7201:keyscope.storage.TradingAccount
    struct AccountStorage {
        /// Owner, epoch (revokeAllSessions count), last grantId, and the grantId at or below which
        /// sessions were revoked by revokeAllSessions: one slot, read by every validation.
        address owner;
        uint32 epoch;
        uint32 grantCount;
        uint32 revokeFloor;
        mapping(address key => SessionState) sessions;
        mapping(address key => uint32) keyNonce;
        mapping(bytes32 ruleId => PermissionRule) rules;
        mapping(address key => bytes32[]) permissionIds;
        mapping(address key => bool) known;
        address[] keys;
    }

    /// @dev keccak256(abi.encode(uint256(keccak256("keyscope.storage.TradingAccount")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_SLOT = 0x95c5e859a11e6fc53db8fa34675f99ba10572bb8c9ea519a3c6c77255d435000;

    IEntryPoint private immutable _entryPoint;

    /// @param anEntryPoint The EntryPoint v0.8 this account trusts.
    /// @dev The implementation gets a placeholder owner so it can never be initialised (or used) itself.
    constructor(IEntryPoint anEntryPoint) {
        _entryPoint = anEntryPoint;
        _s().owner = address(0xdead);
    }

    /// @notice Sets the owner of a freshly deployed proxy. Called once, by the factory.
    /// @dev "Initialised" is "has an owner": the owner can never be set back to zero, so no separate
    /// initialised flag (and its 20k-gas slot) is needed.
    /// @param anOwner The owner key; not zero.
    function initialize(address anOwner) external {
        AccountStorage storage $ = _s();
        if ($.owner != address(0)) revert AlreadyInitialized();
        if (anOwner == address(0)) revert InvalidOwner();
        $.owner = anOwner;
        emit AccountInitialized(address(_entryPoint), anOwner);
    }

    /// @notice Accepts ETH (the EntryPoint deposit is paid from it).
    receive() external payable {}

    /*//////////////////////////////////////////////////////////////
                              READ FUNCTIONS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc BaseAccount
    function entryPoint() public view override returns (IEntryPoint) {
        return _entryPoint;
    }

    /// @notice The owner key.
    function owner() public view returns (address) {
        return _s().owner;
    }

    /// @notice How many times revokeAllSessions ran; owner grant signatures bind it.
    function epoch() external view returns (uint32) {
        return _s().epoch;
    }

    /// @notice The nonce `key`'s next owner grant signature must carry.
    function keyNonce(address key) external view returns (uint32) {
        return _s().keyNonce[key];
    }

    /// @notice The 192-bit nonce key of `key`'s lane `lane`; pass it to `EntryPoint.getNonce`.
    /// @param key The session key.
    /// @param lane Any of the key's 2^32 lanes; ops on different lanes do not wait for each other.
    function sessionNonceKey(address key, uint32 lane) external pure returns (uint192) {
        return (uint192(uint160(key)) << 32) | lane;
    }

    /// @inheritdoc ITradingAccount
    function sessionKeys() external view returns (address[] memory) {
        return _s().keys;
    }

    /// @inheritdoc ITradingAccount
    function getSession(address key) external view returns (SessionInfo memory info) {
        AccountStorage storage $ = _s();
        SessionState s = $.sessions[key];
        info.grantId = s.grantId();
        info.active = _isActive($, s);
        info.validAfter = s.validAfter();
        info.validUntil = s.validUntil();
        info.maxOpTtl = s.maxOpTtl();
        info.rateCount = s.rateCount();
        info.ratePeriod = s.ratePeriod();
        info.windowStart = s.windowStart();
        info.windowUsed = s.windowUsed();
        info.usesLeft = s.usesLeft();
        bytes32[] storage ids = $.permissionIds[key];
        info.permissions = new CallPermission[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            address target = address(bytes20(ids[i]));
            bytes4 selector = bytes4(ids[i] << 160);
            PermissionRule rule = $.rules[_ruleId(key, info.grantId, target, selector)];
            CallPermission memory p = info.permissions[i];
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

    /// @inheritdoc ITradingAccount
    function grantDigest(address key, SessionScope calldata scope) external view returns (bytes32) {
        AccountStorage storage $ = _s();
        return _hashTypedData(SessionGrantHash.hash(address(_entryPoint), $.epoch, key, $.keyNonce[key], scope));
    }

    /// @notice The digest the owner signs for `isValidSignature(hash, ·)`: `hash` wrapped in this account's
    /// EIP-712 domain, so a signature for one account (or chain) never validates on another of the same owner.
    /// @param hash The application's message hash.
    function replaySafeHash(bytes32 hash) public view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(KEYSCOPE_MESSAGE_TYPEHASH, hash)));
    }

    /// @notice ERC-1271: valid if the owner signed `replaySafeHash(hash)`.
    /// @param hash The application's message hash.
    /// @param signature The owner's 65-byte signature over `replaySafeHash(hash)`.
    /// @return magicValue 0x1626ba7e if valid, 0xffffffff otherwise (malformed signatures included).
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(replaySafeHash(hash), signature);
        if (err == ECDSA.RecoverError.NoError && signer == _s().owner) return IERC1271.isValidSignature.selector;
        return 0xffffffff;
    }

    /*//////////////////////////////////////////////////////////////
                           OWNER ADMINISTRATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Hands the account to a new owner key. Owner or self only.
    /// @param newOwner The new owner; not zero.
    function transferOwnership(address newOwner) external {
        _requireOwnerOrSelf();
        if (newOwner == address(0)) revert InvalidOwner();
        AccountStorage storage $ = _s();
        emit OwnerChanged($.owner, newOwner);
        $.owner = newOwner;
    }

    /// @inheritdoc ITradingAccount
    function grantSession(address key, SessionScope calldata scope) external returns (uint32) {
        _requireOwnerOrSelf();
        // Execution phase: reading the clock is allowed here (never in validation).
        if (scope.validUntil <= block.timestamp) revert InvalidScope("validUntil is in the past");
        return _grant(_s(), key, scope);
    }

    /// @inheritdoc ITradingAccount
    function revokeSession(address key) external {
        _requireOwnerOrSelf();
        AccountStorage storage $ = _s();
        uint32 grantId = $.sessions[key].grantId();
        $.sessions[key] = SessionState.wrap(0);
        delete $.permissionIds[key];
        $.keyNonce[key] += 1;
        emit SessionRevoked(key, grantId);
    }

    /// @inheritdoc ITradingAccount
    function revokeAllSessions() external {
        _requireOwnerOrSelf();
        AccountStorage storage $ = _s();
        if ($.epoch == type(uint32).max) revert CounterOverflow();
        uint32 newEpoch = $.epoch + 1;
        $.epoch = newEpoch;
        $.revokeFloor = $.grantCount;
        emit AllSessionsRevoked(newEpoch);
    }

    /// @notice Decodes enable-mode data. External only so validation can turn bad ABI into a clear error.
    /// @param data `abi.encode(SessionScope, bytes ownerSignature)`.
    function decodeEnableData(bytes calldata data)
        external
        pure
        returns (SessionScope memory scope, bytes memory ownerSignature)
    {
        (scope, ownerSignature) = abi.decode(data, (SessionScope, bytes));
    }

    /*//////////////////////////////////////////////////////////////
                                VALIDATION
    //////////////////////////////////////////////////////////////*/

    /// @dev Owner signature, or session key signature under that key's scope.
    function _validateSignature(PackedUserOperation calldata userOp, bytes32 userOpHash)
        internal
        override
        returns (uint256)
    {
        bytes calldata sig = userOp.signature;
        if (sig.length == 65) {
            return _recover(userOpHash, sig) == _s().owner ? SIG_VALIDATION_SUCCESS : SIG_VALIDATION_FAILED;
        }
        if (sig.length == 0) revert InvalidSignatureLength(0);
        return _validateSession(userOp, userOpHash, sig);
    }

    function _validateSession(PackedUserOperation calldata userOp, bytes32 userOpHash, bytes calldata sig)
        internal
        returns (uint256)
    {
        if (sig.length < SESSION_SIG_LENGTH) revert InvalidSessionSignatureLength(sig.length);
        address key = address(uint160(userOp.nonce >> 96));
        if (key == address(0)) revert NoSessionKeyInNonce();
        uint40 opValidUntil = _opValidUntil(sig);

        AccountStorage storage $ = _s();
        (bytes32 binding, bool ownerSigFailed) = _bindGrant($, key, sig);
        (SessionState s, uint48 validAfter) = _useSession($, key, opValidUntil);
        if (binding == 0) binding = bytes32(uint256(s.grantId()));
        _checkCalls($, key, s.grantId(), userOp.callData);

        bytes32 digest = keccak256(abi.encodePacked(userOpHash, uint48(opValidUntil), binding));
        bool sigFailed = ownerSigFailed || _recover(digest, sig[7:SESSION_SIG_LENGTH]) != key;
        uint40 sessionUntil = s.validUntil();
        return _packValidationData(sigFailed, opValidUntil < sessionUntil ? opValidUntil : sessionUntil, validAfter);
    }

    /// @dev The op's own expiry, bytes 1..7 of a session signature. Values that do not fit 40 bits are
    /// refused rather than truncated, so no two signature encodings mean the same op.
    function _opValidUntil(bytes calldata sig) internal pure returns (uint40) {
        uint48 raw = uint48(bytes6(sig[1:7]));
        if (raw == 0 || raw > type(uint40).max) revert InvalidOpExpiry(raw);
        return uint40(raw);
    }

    /// @dev Mode dispatch. In enable mode, stores the carried grant and returns its digest (which the key's
    /// signature must cover) and whether the owner's signature failed; in session mode returns zero.
    function _bindGrant(AccountStorage storage $, address key, bytes calldata sig)
        internal
        returns (bytes32 binding, bool ownerSigFailed)
    {
        uint8 mode = uint8(sig[0]);
        if (mode == MODE_ENABLE) return _enable($, key, sig[SESSION_SIG_LENGTH:]);
        if (mode != MODE_SESSION) revert UnknownSignatureMode(mode);
        if (sig.length != SESSION_SIG_LENGTH) revert InvalidSessionSignatureLength(sig.length);
    }

    /// @dev Loads `key`'s session, refuses it unless active, and counts this op against its limits.
    function _useSession(AccountStorage storage $, address key, uint40 opValidUntil)
        internal
        returns (SessionState s, uint48 validAfter)
    {
        s = $.sessions[key];
        if (!_isActive($, s)) revert SessionNotActive(key);
        SessionState updated;
        (validAfter, updated) = _consume(key, s, opValidUntil);
        if (SessionState.unwrap(updated) != SessionState.unwrap(s)) $.sessions[key] = updated;
    }

    /// @dev Stores the owner-signed grant carried in `data` for `key`. Returns the grant digest (which the
    /// key's signature must cover) and whether the owner's signature failed.
    function _enable(AccountStorage storage $, address key, bytes calldata data)
        internal
        returns (bytes32 digest, bool ownerSigFailed)
    {
        SessionScope memory scope;
        bytes memory ownerSignature;
        try this.decodeEnableData(data) returns (SessionScope memory s, bytes memory o) {
            (scope, ownerSignature) = (s, o);
        } catch {
            revert MalformedEnableData();
        }
        digest = _hashTypedData(SessionGrantHash.hash(address(_entryPoint), $.epoch, key, $.keyNonce[key], scope));
        ownerSigFailed = _recoverMemory(digest, ownerSignature) != $.owner;
        _grant($, key, scope);
    }

    /// @dev Applies the session's time, rate and use limits to one op. Returns the op's validAfter and the
    /// session with its counters advanced.
    ///
    /// No TIMESTAMP: the op's own expiry `opValidUntil` serves as the clock. The returned validAfter makes
    /// the EntryPoint include the op only while `opValidUntil - maxOpTtl <= now <= opValidUntil`, so
    /// `opValidUntil` is within maxOpTtl of the real time. A full rate window pushes the op's validAfter to
    /// the next window (as Kernel's rate-limit policy does); a window that lags more than maxOpTtl behind is
    /// moved up to `opValidUntil - maxOpTtl`, so an idle key cannot bank windows. What remains: after idling,
    /// a key may use the windows inside its ttl at once, so the longest burst is
    /// rateCount x (1 + ceil(maxOpTtl / ratePeriod)); the sustained rate is rateCount per ratePeriod.
    function _consume(address key, SessionState s, uint40 opValidUntil)
        internal
        pure
        returns (uint48 validAfter, SessionState)
    {
        // validAfter is exclusive in EntryPoint v0.8: `earliest` lets the op in from opValidUntil - maxOpTtl.
        uint40 ttl = s.maxOpTtl();
        uint40 earliest = opValidUntil > ttl ? opValidUntil - ttl - 1 : 0;
        validAfter = s.validAfter() > earliest ? s.validAfter() : earliest;

        uint16 rateCount = s.rateCount();
        uint32 usesLeft = s.usesLeft();
        // No counters to move: nothing to store.
        if (rateCount == 0 && usesLeft == UNLIMITED_USES) return (validAfter, s);

        uint40 windowStart = s.windowStart();
        uint16 windowUsed = s.windowUsed();
        if (rateCount != 0) {
            uint40 period = s.ratePeriod();
            if (uint256(windowStart) + period <= earliest) {
                (windowStart, windowUsed) = (earliest, 0);
            }
            if (windowUsed >= rateCount) {
                (windowStart, windowUsed) = (windowStart + period, 0);
            }
            if (windowStart >= opValidUntil) revert SessionRateLimited(key, windowStart);
            windowUsed += 1;
            if (windowStart > validAfter) validAfter = windowStart;
        }

        if (usesLeft != UNLIMITED_USES) {
            if (usesLeft == 0) revert SessionExhausted(key);
            usesLeft -= 1;
        }
        return (validAfter, s.withCounters(windowStart, windowUsed, usesLeft));
    }

    /// @dev Every call the op will make must be permitted and within its limits.
    function _checkCalls(AccountStorage storage $, address key, uint32 grantId, bytes calldata callData) internal view {
        if (callData.length < 4) revert SessionSelectorNotAllowed(bytes4(0));
        bytes4 selector = bytes4(callData[:4]);
        if (selector == BaseAccount.execute.selector) {
            (address target, uint256 value, bytes calldata data) = ExecutionCalldata.decodeExecute(callData);
            _checkCall($, key, grantId, target, value, data);
        } else if (selector == BaseAccount.executeBatch.selector) {
            uint256 n = ExecutionCalldata.batchLength(callData);
            uint256 expected = 32 * n;
            for (uint256 i; i < n; ++i) {
                address target;
                uint256 value;
                bytes calldata data;
                (target, value, data, expected) = ExecutionCalldata.batchCall(callData, i, expected);
                _checkCall($, key, grantId, target, value, data);
            }
        } else {
            revert SessionSelectorNotAllowed(selector);
        }
    }

    function _checkCall(
        AccountStorage storage $,
        address key,
        uint32 grantId,
        address target,
        uint256 value,
        bytes calldata data
    ) internal view {
        bytes4 selector = data.length < 4 ? bytes4(0) : bytes4(data[:4]);
        PermissionRule rule = $.rules[_ruleId(key, grantId, target, selector)];
        // A permission is never stored for a short call, the account itself or the EntryPoint (see _grant).
        if (data.length < 4 || !rule.isPermitted()) revert SessionCallNotPermitted(target, selector);
        if (!rule.isOrder()) {
            if (value > rule.valueLimit()) revert SessionValueTooHigh(value, rule.valueLimit());
            return;
        }
        if (value != 0) revert SessionValueTooHigh(value, 0);
        (uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly) =
            ExecutionCalldata.decodePlaceOrder(data);
        if (marketId >= 64 || (rule.marketMask() >> marketId) & 1 == 0) revert SessionMarketNotAllowed(marketId);
        uint256 size = FixedPointMathLib.abs(sizeDelta);
        if (size > rule.maxOrderSize()) revert SessionOrderTooLarge(size, rule.maxOrderSize());
        // size < 2^88, so the product cannot overflow while limitPrice < 2^168.
        uint256 notional = limitPrice >> 168 == 0 ? size * limitPrice / 1e18 : type(uint256).max;
        if (notional > rule.maxOrderNotional()) revert SessionNotionalTooHigh(notional, rule.maxOrderNotional());
        if (rule.reduceOnly() && !reduceOnly) revert SessionReduceOnlyRequired();
    }

    /*//////////////////////////////////////////////////////////////
                                 GRANTS
    //////////////////////////////////////////////////////////////*/

    /// @dev Checks `scope` and stores it as `key`'s session under a new grantId. Shared by direct grants
    /// (execution phase) and enable mode (validation phase), so it must not read the clock.
    function _grant(AccountStorage storage $, address key, SessionScope memory scope) internal returns (uint32 grantId) {
        if (key == address(0)) revert InvalidSessionKey();
        if (scope.validUntil == 0) revert InvalidScope("validUntil must be set (0 would mean forever)");
        if (scope.validUntil <= scope.validAfter) revert InvalidScope("validUntil must be after validAfter");
        if (scope.maxOpTtl == 0) revert InvalidScope("maxOpTtl must be at least 1 second");
        if ((scope.rateCount == 0) != (scope.ratePeriod == 0)) {
            revert InvalidScope("rateCount and ratePeriod must both be set or both be 0");
        }
        if (scope.maxUses == UNLIMITED_USES) revert InvalidScope("maxUses too large");
        if (scope.permissions.length == 0) revert InvalidScope("no permissions");
        if ($.grantCount == type(uint32).max) revert CounterOverflow();

        grantId = $.grantCount + 1;
        $.grantCount = grantId;
        $.keyNonce[key] += 1;
        $.sessions[key] = SessionStateLibrary.pack(
            scope.validAfter,
            scope.validUntil,
            grantId,
            scope.maxOpTtl,
            scope.rateCount,
            scope.ratePeriod,
            scope.maxUses == 0 ? UNLIMITED_USES : scope.maxUses
        );

        bytes32[] storage ids = $.permissionIds[key];
        while (ids.length != 0) ids.pop();
        for (uint256 i; i < scope.permissions.length; ++i) {
            CallPermission memory p = scope.permissions[i];
            bytes32 ruleId = _ruleId(key, grantId, p.target, p.selector);
            if (PermissionRule.unwrap($.rules[ruleId]) != 0) revert InvalidPermission(i, "duplicate target and selector");
            $.rules[ruleId] = _ruleFor(i, p);
            ids.push(bytes32(bytes20(p.target)) | (bytes32(p.selector) >> 160));
        }
        if (!$.known[key]) {
            $.known[key] = true;
            $.keys.push(key);
        }
        emit SessionGranted(key, grantId, scope.validAfter, scope.validUntil);
    }

    /// @dev The stored rule for permission `p`, refusing anything that could move value out or reach the
    /// account's own configuration.
    function _ruleFor(uint256 i, CallPermission memory p) internal view returns (PermissionRule) {
        if (p.target == address(0)) revert InvalidPermission(i, "zero target");
        if (p.target == address(this)) revert InvalidPermission(i, "session keys may not call the account itself");
        if (p.target == address(_entryPoint)) revert InvalidPermission(i, "session keys may not call the EntryPoint");
        if (p.selector == bytes4(0)) revert InvalidPermission(i, "zero selector");
        if (_isForbiddenSelector(p.selector)) revert InvalidPermission(i, "selector moves funds out");
        if (p.selector == IPerpVenue.placeOrder.selector) {
            if (p.valueLimit != 0) revert InvalidPermission(i, "orders carry no value");
            if (p.marketMask == 0) revert InvalidPermission(i, "empty market allowlist");
            if (p.maxOrderSize == 0) revert InvalidPermission(i, "zero max order size");
            if (p.maxOrderNotional == 0) revert InvalidPermission(i, "zero max order notional");
            return PermissionRuleLibrary.packOrder(p.marketMask, p.maxOrderSize, p.maxOrderNotional, p.reduceOnly);
        }
        if (p.marketMask != 0 || p.maxOrderSize != 0 || p.maxOrderNotional != 0 || p.reduceOnly) {
            revert InvalidPermission(i, "order limits apply to placeOrder only");
        }
        return PermissionRuleLibrary.packCall(p.valueLimit);
    }

    /// @dev Selectors that move tokens or collateral out, refused for every target.
    function _isForbiddenSelector(bytes4 s) internal pure returns (bool) {
        return s == IPerpVenue.withdrawMargin.selector // withdraw collateral from the venue
            || s == 0xa9059cbb // transfer(address,uint256)
            || s == 0x23b872dd // transferFrom(address,address,uint256)
            || s == 0x095ea7b3 // approve(address,uint256)
            || s == 0x39509351 // increaseAllowance(address,uint256)
            || s == 0xa22cb465 // setApprovalForAll(address,bool)
            || s == 0x42842e0e // safeTransferFrom(address,address,uint256)
            || s == 0xb88d4fde // safeTransferFrom(address,address,uint256,bytes)
            || s == 0xf242432a // safeTransferFrom(address,address,uint256,uint256,bytes) (ERC-1155)
            || s == 0x2eb2c2d6; // safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _isActive(AccountStorage storage $, SessionState s) internal view returns (bool) {
        return s.validUntil() != 0 && s.grantId() > $.revokeFloor;
    }

    /// @dev keccak256(abi.encodePacked(key, grantId, target, selector)), hashed in scratch memory.
    function _ruleId(address key, uint32 grantId, address target, bytes4 selector) internal pure returns (bytes32 id) {
        assembly ("memory-safe") {
            // 20 + 4 + 20 + 4 = 48 bytes at 0x00..0x30 (scratch space and the free memory pointer's
            // first half), packed from the right: the pointer word at 0x40 is not touched.
            let m := mload(0x40)
            mstore(0x00, shl(96, key))
            mstore(0x14, shl(224, grantId))
            mstore(0x18, shl(96, target))
            mstore(0x2c, selector)
            id := keccak256(0x00, 0x30)
            mstore(0x40, m)
        }
    }

    /// @dev ecrecover of a 65-byte calldata signature; malformed signatures revert, a wrong one yields
    /// an address that is not the expected signer (possibly zero, which is never an owner or a key).
    function _recover(bytes32 digest, bytes calldata sig) internal pure returns (address signer) {
        if (sig.length != 65) revert InvalidSignatureLength(sig.length);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            // The length is checked above: r, s and v lie inside `sig`.
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 0x20))
            v := byte(0, calldataload(add(sig.offset, 0x40)))
        }
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        if (uint256(s) > HALF_CURVE_ORDER) revert InvalidSignatureS(s);
        signer = ecrecover(digest, v, r, s);
    }

    /// @dev `_recover` for a signature held in memory (enable-mode owner grants).
    function _recoverMemory(bytes32 digest, bytes memory sig) internal pure returns (address signer) {
        if (sig.length != 65) revert InvalidSignatureLength(sig.length);
        (address recovered, ECDSA.RecoverError err, bytes32 arg) = ECDSA.tryRecover(digest, sig);
        if (err == ECDSA.RecoverError.InvalidSignatureS) revert InvalidSignatureS(arg);
        uint8 v = uint8(sig[64]);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        signer = recovered;
    }

    function _s() internal pure returns (AccountStorage storage $) {
        assembly ("memory-safe") {
            $.slot := STORAGE_SLOT
        }
    }

    function _requireOwnerOrSelf() internal view {
        if (msg.sender != _s().owner && msg.sender != address(this)) revert NotOwnerOrSelf(msg.sender);
    }

    /// @dev BaseAccount's check, with a custom error.
    function _requireFromEntryPoint() internal view override {
        if (msg.sender != address(_entryPoint)) revert NotFromEntryPoint(msg.sender);
    }

    /// @dev execute/executeBatch: the EntryPoint (after validation) or the owner directly.
    function _requireForExecute() internal view override {
        if (msg.sender != address(_entryPoint) && msg.sender != _s().owner) revert NotEntryPointOrOwner(msg.sender);
    }

    function _authorizeUpgrade(address) internal view override {
        _requireOwnerOrSelf();
    }

    function _domainNameAndVersion() internal pure override returns (string memory, string memory) {
        return ("Keyscope TradingAccount", "1");
    }
}
