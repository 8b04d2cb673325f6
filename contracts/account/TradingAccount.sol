// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {
    SIG_VALIDATION_FAILED,
    SIG_VALIDATION_SUCCESS,
    _packValidationData
} from "@account-abstraction/contracts/core/Helpers.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {TokenCallbackHandler} from "@account-abstraction/contracts/accounts/callback/TokenCallbackHandler.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "solady/utils/EIP712.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

import {IPerpVenue} from "../venue/IPerpVenue.sol";
import {SignedOrder} from "../venue/libraries/SignedOrder.sol";
import {SessionManager} from "./SessionManager.sol";
import {IOrderAccount} from "./interfaces/IOrderAccount.sol";
import {ITradingAccount} from "./interfaces/ITradingAccount.sol";
import {ISessionManager} from "./interfaces/ISessionManager.sol";
import {AccountStorage} from "./libraries/AccountStorage.sol";
import {P256Key} from "./libraries/P256Key.sol";
import {PostTradeLimits} from "./libraries/PostTradeLimits.sol";
import {ExecutionCalldata} from "./libraries/ExecutionCalldata.sol";
import {PermissionRule} from "./types/PermissionRule.sol";
import {RiskState} from "./types/RiskState.sol";
import {SessionCounters, UNLIMITED_USES} from "./types/SessionCounters.sol";
import {SessionState, SessionStateLibrary} from "./types/SessionState.sol";

/// @title TradingAccount
/// @notice An ERC-4337 (EntryPoint v0.8) account for derivatives traders. One owner key controls it; the
/// owner grants short-lived session keys whose scope — calls, markets, order size and notional, rate and
/// uses counted per call, a per-op gas cost cap and a fee budget, a value budget, post-execution leverage,
/// position and headroom limits and a drawdown breaker — is enforced on-chain. A session key can trade; it
/// can never withdraw, move tokens out, spend more on gas than its fee budget, or touch the account's own
/// configuration.
/// @dev Deployed behind ERC-1967 minimal proxies by `AccountFactory`. This contract holds the hot path
/// (validation and execution of ops); session and ownership administration lives in the `SessionManager`
/// module, served from this account's fallback by DELEGATECALL on the same storage.
///
/// UserOp signature formats (`userOp.signature`):
///  - owner:   65 bytes `r ‖ s ‖ v`, over the v0.8 userOpHash; a P-256 owner (see `P256Key`):
///             `0x10 ‖ r ‖ s ‖ x ‖ y` (129 bytes).
///  - session: `0x01 ‖ opValidUntil (6) ‖ r ‖ s ‖ v` (72 bytes), the key signing
///             keccak256(userOpHash ‖ opValidUntil ‖ grantId); a P-256 key: `0x03 ‖ opValidUntil ‖ r ‖ s ‖ x ‖ y`
///             (135 bytes), over the same digest.
///  - enable:  `0x02 ‖ opValidUntil (6) ‖ r ‖ s ‖ v ‖ abi.encode(SessionScope, ownerSignature)`: the owner's
///             EIP-712 `SessionGrant` signature rides in the key's first op; the key signs
///             keccak256(userOpHash ‖ opValidUntil ‖ grantDigest), so whoever submits the op cannot swap
///             the grant. A P-256 key: `0x04 ‖ opValidUntil ‖ r ‖ s ‖ x ‖ y ‖ abi.encode(…)`.
/// The session key is the upper 160 bits of the op's 192-bit nonce key (`sessionNonceKey`): each key has
/// its own 2^32 nonce lanes, so engines stream in parallel and a revoked key's lanes are dead.
///
/// A session op's callData is `executeSession(key, calls)`, `calls` being `execute(…)` or `executeBatch(…)`
/// calldata and `key` the op's own session key (validation refuses any other): execution then knows which key
/// signed, and checks a sell's fill and the key's post-execution limits. The key's own hand-over and dead-man
/// switch ops have exactly `rotateToSuccessor(key)` or `heartbeat(key, interval)` as callData (served by the
/// module), again naming the op's own key.
///
/// Validation follows ERC-7562: it reads and writes only this account's storage, never reads TIMESTAMP
/// (windows, rate limits and the dead-man switch are returned as validAfter/validUntil), and calls only
/// ecrecover, the P-256 precompile, the SessionManager module by DELEGATECALL (enable mode) and the EntryPoint
/// (prefund).
contract TradingAccount is
    ITradingAccount,
    IOrderAccount,
    BaseAccount,
    TokenCallbackHandler,
    IERC1271,
    EIP712,
    UUPSUpgradeable
{
    /// @notice Session signature mode: use an active session.
    uint8 public constant MODE_SESSION = 0x01;
    /// @notice Session signature mode: enable the session from an owner grant, then use it.
    uint8 public constant MODE_ENABLE = 0x02;
    /// @notice Session signature mode: use an active session whose key is a P-256 key.
    uint8 public constant MODE_SESSION_P256 = 0x03;
    /// @notice Session signature mode: enable the session of a P-256 key from an owner grant, then use it.
    uint8 public constant MODE_ENABLE_P256 = 0x04;

    /// @dev EIP-712 type of the owner's ERC-1271 messages, binding them to this account and chain.
    bytes32 internal constant KEYSCOPE_MESSAGE_TYPEHASH = keccak256("KeyscopeMessage(bytes32 hash)");
    /// @dev Length of a session signature without enable data: mode, opValidUntil, r, s, v.
    uint256 internal constant SESSION_SIG_LENGTH = 1 + 6 + 65;
    /// @dev Length of a P-256 session signature without enable data: mode, opValidUntil, r, s, x, y.
    uint256 internal constant P256_SESSION_SIG_LENGTH = 1 + 6 + 128;
    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies.
    uint256 internal constant HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 internal constant GWEI = 1 gwei;
    /// @dev `_debit`'s faults.
    uint256 internal constant OVER_CAP = 1;
    uint256 internal constant OVER_BUDGET = 2;
    /// @dev `_call`'s index for a call whose failure is not wrapped in `ExecuteError`.
    uint256 internal constant NO_INDEX = type(uint256).max;
    /// @dev In `_who`: the key has post-execution limits. In `_run`'s result: an order without reduceOnly ran.
    uint256 internal constant STRICT = 1 << 192;
    uint256 internal constant RAISES_RISK = 1 << 160;
    /// @dev In `_who` during validation: the key's breaker tripped, so only protective calls pass.
    uint256 internal constant PROTECTIVE_ONLY = 1 << 193;

    IEntryPoint private immutable _entryPoint;
    address private immutable _manager;

    /// @notice The caller must be this account itself.
    error OnlySelf(address caller);

    /// @param anEntryPoint The EntryPoint v0.8 this account trusts.
    /// @dev Deploys this implementation's SessionManager module. The implementation gets a placeholder owner
    /// so it can never be initialised (or used) itself.
    constructor(IEntryPoint anEntryPoint) {
        _entryPoint = anEntryPoint;
        _manager = address(new SessionManager(address(anEntryPoint)));
        AccountStorage.layout().owner = address(0xdead);
    }

    /// @notice Sets the owner of a freshly deployed proxy. Called once, by the factory.
    /// @dev "Initialised" is "has an owner": the owner can never be set back to zero, so no separate
    /// initialised flag (and its 20k-gas slot) is needed.
    /// @param anOwner The owner key; not zero.
    function initialize(address anOwner) external {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        if ($.owner != address(0)) revert AlreadyInitialized();
        if (anOwner == address(0)) revert InvalidOwner();
        $.owner = anOwner;
        emit AccountInitialized(address(_entryPoint), anOwner);
    }

    /// @notice Accepts ETH (the EntryPoint deposit is paid from it).
    receive() external payable {}

    /// @notice Serves `ISessionManager` (grants, revocation, ownership, session reads) from the SessionManager
    /// module, by DELEGATECALL on this account's storage with the caller preserved.
    /// @dev `enableFromOp` is only for this account's own validation: forwarding it would let anyone store a
    /// grant whose owner signature fails.
    fallback() external {
        if (msg.sig == SessionManager.enableFromOp.selector) revert UnsupportedCall(msg.sig);
        address manager = _manager;
        assembly {
            // Not memory-safe, and need not be: the frame ends here with a return or revert.
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), manager, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    /*//////////////////////////////////////////////////////////////
                              READ FUNCTIONS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc BaseAccount
    function entryPoint() public view override returns (IEntryPoint) {
        return _entryPoint;
    }

    /// @notice The module that serves `ISessionManager` for this account.
    function sessionManager() external view returns (address) {
        return _manager;
    }

    /// @notice The owner key.
    function owner() public view returns (address) {
        return AccountStorage.layout().owner;
    }

    /// @notice How many times every session was revoked at once; owner grant signatures bind it.
    function epoch() external view returns (uint32) {
        return AccountStorage.layout().epoch;
    }

    /// @notice The nonce `key`'s next owner grant signature must carry.
    function keyNonce(address key) external view returns (uint32) {
        return AccountStorage.layout().keyNonce[key];
    }

    /// @notice The 192-bit nonce key of `key`'s lane `lane`; pass it to `EntryPoint.getNonce`.
    /// @param key The session key.
    /// @param lane Any of the key's 2^32 lanes; ops on different lanes do not wait for each other.
    function sessionNonceKey(address key, uint32 lane) external pure returns (uint192) {
        return (uint192(uint160(key)) << 32) | lane;
    }

    /// @notice The digest the owner signs for `isValidSignature(hash, ·)`: `hash` wrapped in this account's
    /// EIP-712 domain, so a signature for one account (or chain) never validates on another of the same owner.
    /// @param hash The application's message hash.
    function replaySafeHash(bytes32 hash) public view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(KEYSCOPE_MESSAGE_TYPEHASH, hash)));
    }

    /// @notice ERC-1271: valid if the owner signed `replaySafeHash(hash)`.
    /// @param hash The application's message hash.
    /// @param signature The owner's signature over `replaySafeHash(hash)`: 65 bytes, or a P-256 owner's 129.
    /// @return magicValue 0x1626ba7e if valid, 0xffffffff otherwise (malformed signatures included).
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        bytes32 digest = replaySafeHash(hash);
        if (_isP256OwnerSig(signature)) {
            (bytes32 r, bytes32 s, bytes32 x, bytes32 y) = P256Key.parse(signature[1:]);
            if (P256Key.isLowS(s) && P256Key.verify(owner(), digest, r, s, x, y)) {
                return IERC1271.isValidSignature.selector;
            }
            return 0xffffffff;
        }
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && signer == owner()) return IERC1271.isValidSignature.selector;
        return 0xffffffff;
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
            return _recover(userOpHash, sig) == owner() ? SIG_VALIDATION_SUCCESS : SIG_VALIDATION_FAILED;
        }
        if (sig.length == 0) revert InvalidSignatureLength(0);
        if (_isP256OwnerSig(sig)) {
            return P256Key.verifyCalldata(owner(), userOpHash, sig[1:]) ? SIG_VALIDATION_SUCCESS : SIG_VALIDATION_FAILED;
        }
        return _validateSession(userOp, userOpHash, sig);
    }

    function _validateSession(PackedUserOperation calldata userOp, bytes32 userOpHash, bytes calldata sig)
        internal
        returns (uint256)
    {
        uint8 mode = uint8(sig[0]);
        uint256 length =
            mode == MODE_SESSION_P256 || mode == MODE_ENABLE_P256 ? P256_SESSION_SIG_LENGTH : SESSION_SIG_LENGTH;
        if (sig.length < length) revert InvalidSessionSignatureLength(sig.length);
        address key = address(uint160(userOp.nonce >> 96));
        if (key == address(0)) revert NoSessionKeyInNonce();
        uint40 opValidUntil = _opValidUntil(sig);

        (bytes32 binding, bool sigFailed) = _bindGrant(key, sig, mode, length);
        (uint32 grantId, uint48 validAfter, uint40 until) = _useSession(userOp, key, opValidUntil);
        if (binding == 0) binding = bytes32(uint256(grantId));
        bytes32 digest = _sessionDigest(userOpHash, opValidUntil, binding);
        sigFailed = sigFailed || !_keySigned(key, digest, sig[7:length]);
        return _packValidationData(sigFailed, opValidUntil < until ? opValidUntil : until, validAfter);
    }

    /// @dev True if `key` signed `digest`: `keySig` is `r ‖ s ‖ v` for a secp256k1 key, `r ‖ s ‖ x ‖ y` for a
    /// P-256 key (whose public key must hash to `key`).
    function _keySigned(address key, bytes32 digest, bytes calldata keySig) internal view returns (bool) {
        if (keySig.length == 65) return _recover(digest, keySig) == key;
        return P256Key.verifyCalldata(key, digest, keySig);
    }

    /// @dev A P-256 owner signature: `0x10 ‖ r ‖ s ‖ x ‖ y`.
    function _isP256OwnerSig(bytes calldata sig) internal pure returns (bool) {
        return sig.length == P256Key.OWNER_SIG_LENGTH && uint8(sig[0]) == P256Key.OWNER_PREFIX;
    }

    /// @dev What a session key signs: keccak256(userOpHash ‖ uint48 opValidUntil ‖ binding), hashed in scratch
    /// memory and the free memory pointer's word (saved and restored) instead of an `abi.encodePacked` copy.
    function _sessionDigest(bytes32 userOpHash, uint40 opValidUntil, bytes32 binding)
        internal
        pure
        returns (bytes32 digest)
    {
        assembly ("memory-safe") {
            // 32 + 6 + 32 = 70 bytes at 0x00..0x46: the binding is written first (0x26..0x46, over the free
            // memory pointer), then the expiry's six bytes (0x20..0x26) and the hash (0x00..0x20).
            let m := mload(0x40)
            mstore(0x26, binding)
            mstore(0x06, opValidUntil)
            mstore(0x00, userOpHash)
            digest := keccak256(0x00, 0x46)
            mstore(0x40, m)
        }
    }

    /// @dev The op's own expiry, bytes 1..7 of a session signature. Values that do not fit 40 bits are
    /// refused rather than truncated, so no two signature encodings mean the same op.
    /// The caller has checked `sig` is at least a session signature's length, so the read stays inside it.
    function _opValidUntil(bytes calldata sig) internal pure returns (uint40) {
        uint48 raw;
        assembly ("memory-safe") {
            raw := shr(208, calldataload(add(sig.offset, 1)))
        }
        if (raw == 0 || raw > type(uint40).max) revert InvalidOpExpiry(raw);
        return uint40(raw);
    }

    /// @dev Mode dispatch. In enable mode, stores the carried grant (through the module) and returns its
    /// digest, which the key's signature must cover, and whether the owner's signature failed; in session
    /// mode returns zero. `length` is the mode's signature length without enable data.
    function _bindGrant(address key, bytes calldata sig, uint8 mode, uint256 length)
        internal
        returns (bytes32 binding, bool ownerSigFailed)
    {
        if (mode == MODE_ENABLE || mode == MODE_ENABLE_P256) {
            (bool ok, bytes memory ret) =
                _manager.delegatecall(abi.encodeCall(SessionManager.enableFromOp, (key, sig[length:])));
            // The module reverts with a named error for every fault it checks; an empty revert is the ABI
            // decoder refusing the payload.
            if (!ok) {
                if (ret.length == 0) revert MalformedEnableData();
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
            return abi.decode(ret, (bytes32, bool));
        }
        if (mode != MODE_SESSION && mode != MODE_SESSION_P256) revert UnknownSignatureMode(mode);
        if (sig.length != length) revert InvalidSessionSignatureLength(sig.length);
    }

    /// @dev Loads `key`'s session, refuses it unless active, checks the op's calls, and charges the op to the
    /// session's fee budget and call counters. Returns the session's grantId and the op's validAfter and
    /// validUntil: the session's end or, for an op that raises risk (anything but deposits, cancels, reduce-only
    /// orders, heartbeats and the hand-over) of a key with a dead-man switch, its deadline if earlier.
    function _useSession(PackedUserOperation calldata userOp, address key, uint40 opValidUntil)
        internal
        returns (uint32 grantId, uint48 validAfter, uint40 validUntil)
    {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        bool raisesRisk;
        {
            uint256 calls;
            uint256 value;
            (calls, value, raisesRisk) = _checkCalls(key, s, userOp.callData);
            uint256 maxCalls = s.maxCallsPerOp();
            if (maxCalls != 0 && calls > maxCalls) revert SessionTooManyCalls(calls, maxCalls);

            // validAfter is exclusive in EntryPoint v0.8: `earliest` lets the op in from opValidUntil - maxOpTtl.
            uint40 ttl = s.maxOpTtl();
            uint40 earliest = opValidUntil > ttl ? opValidUntil - ttl - 1 : 0;
            validAfter = s.validAfter() > earliest ? s.validAfter() : earliest;
            if (s.has(SessionStateLibrary.COUNTERS)) {
                validAfter = _count(key, opValidUntil, earliest, validAfter, calls, value);
            } else if (value != 0) {
                revert SessionValueBudgetExceeded(value, 0);
            }
        }

        SessionState charged = _chargeFee($, key, s, userOp);
        if (SessionState.unwrap(charged) != SessionState.unwrap(s)) $.sessions[key] = charged;
        grantId = s.grantId();
        validUntil = s.validUntil();
        // Dead-man switch: a risk-raising op is valid only until the key's heartbeat deadline; the EntryPoint
        // compares it with the block time, so validation never reads TIMESTAMP.
        if (raisesRisk && s.has(SessionStateLibrary.HEARTBEAT)) {
            uint40 deadline = $.heartbeats[key];
            if (deadline < validUntil) validUntil = deadline;
        }
    }

    /// @dev The op's fee, charged at its maximum cost — every gas limit of the op + preVerificationGas, times
    /// maxFeePerGas: the EntryPoint's prefund, the most it can take for the op whoever submits it and whatever
    /// beneficiary they name — rounded up to whole gwei. A self-paid op is charged against the session's per-op
    /// cap and fee budget. A sponsored op must name a listed paymaster and is charged, with the paymaster's own
    /// gas limits, against that paymaster's entry: its per-op cap and what is left of the key's budget there
    /// (written back to the entry, a word of the account's own storage). Charged here, in validation, so an op
    /// over a limit never runs and never pays; never refunded, as the actual cost is only known to the
    /// EntryPoint after execution.
    function _chargeFee(AccountStorage.Layout storage $, address key, SessionState s, PackedUserOperation calldata op)
        internal
        returns (SessionState)
    {
        uint256 limits;
        uint256 pvg;
        uint256 maxFee;
        uint256 paymasterDataLength;
        assembly ("memory-safe") {
            // The EntryPoint ABI-encodes the op it passes: the static fields sit at fixed offsets of the
            // struct (accountGasLimits 0x80, preVerificationGas 0xa0, gasFees 0xc0) and 0xe0 holds the
            // offset of paymasterAndData, whose first word is its length.
            limits := calldataload(add(op, 0x80))
            pvg := calldataload(add(op, 0xa0))
            maxFee := shr(128, shl(128, calldataload(add(op, 0xc0))))
            paymasterDataLength := calldataload(add(op, calldataload(add(op, 0xe0))))
        }
        uint256 gas = (limits >> 128) + uint128(limits);
        if (paymasterDataLength == 0) {
            uint256 cost = _maxCost(pvg, gas, maxFee);
            (uint256 fault, uint256 rest) = _debit(cost, s.maxOpCostGwei(), s.feeLeftGwei());
            if (fault == OVER_CAP) revert SessionOpCostTooHigh(cost, uint256(s.maxOpCostGwei()) * GWEI);
            if (fault == OVER_BUDGET) revert SessionFeeBudgetExceeded(cost, uint256(s.feeLeftGwei()) * GWEI);
            return s.withFeeLeft(uint56(rest));
        }
        _chargePaymaster($, key, s.grantId(), op.paymasterAndData, pvg, gas, maxFee);
        return s;
    }

    /// @dev A sponsored op's fee: the named paymaster must be listed, and the op's maximum cost (`pvg` + `gas`
    /// + the paymaster's two gas limits, x `maxFee`) within its entry's per-op cap and what is left of the key's
    /// budget there, which is debited.
    function _chargePaymaster(
        AccountStorage.Layout storage $,
        address key,
        uint32 grantId,
        bytes calldata pnd,
        uint256 pvg,
        uint256 gas,
        uint256 maxFee
    ) internal {
        address paymaster = pnd.length < 20 ? address(0) : address(bytes20(pnd[:20]));
        bytes32 id = AccountStorage.ruleId(key, grantId, paymaster, bytes4(0));
        PermissionRule entry = $.rules[id];
        // Without its two gas limits (bytes 20..52) the paymaster's part of the prefund is unknown.
        if (!entry.isPaymaster() || pnd.length < 52) revert SessionPaymasterNotAllowed(paymaster);
        uint256 cost = _maxCost(pvg, gas + uint128(bytes16(pnd[20:36])) + uint128(bytes16(pnd[36:52])), maxFee);
        (uint256 fault, uint256 rest) = _debit(cost, entry.sponsorMaxOpCostGwei(), entry.sponsorLeftGwei());
        if (fault == OVER_CAP) {
            revert SessionPaymasterOpCostTooHigh(paymaster, cost, uint256(entry.sponsorMaxOpCostGwei()) * GWEI);
        }
        if (fault == OVER_BUDGET) {
            revert SessionPaymasterBudgetExceeded(paymaster, cost, uint256(entry.sponsorLeftGwei()) * GWEI);
        }
        $.rules[id] = entry.withSponsorLeft(uint56(rest));
    }

    /// @dev The one charge of both budgets: `cost` (wei; type(uint256).max for gas that overflows) against a
    /// per-op cap (`capGwei`, 0 for none) and a budget of `leftGwei`. Returns `OVER_CAP`, `OVER_BUDGET` (the
    /// cost rounded up to whole gwei is over what is left), or 0 with the gwei left after the charge.
    function _debit(uint256 cost, uint256 capGwei, uint256 leftGwei)
        internal
        pure
        returns (uint256 fault, uint256 rest)
    {
        unchecked {
            // capGwei < 2^56, so capGwei x 1 gwei cannot overflow; cost <= (2^128 - 1)^2 (or the max marker,
            // refused first), so cost + GWEI - 1 cannot either.
            if (cost == type(uint256).max || (capGwei != 0 && cost > capGwei * GWEI)) return (OVER_CAP, 0);
            uint256 costGwei = (cost + GWEI - 1) / GWEI;
            if (costGwei > leftGwei) return (OVER_BUDGET, 0);
            return (0, leftGwei - costGwei);
        }
    }

    /// @dev (`pvg` + `gas`) x `maxFee`, or type(uint256).max when the gas does not fit 128 bits (refused, never
    /// wrapped). `gas` is a sum of at most four 128-bit fields and `maxFee` below 2^128, so nothing overflows.
    function _maxCost(uint256 pvg, uint256 gas, uint256 maxFee) internal pure returns (uint256) {
        if (pvg >> 128 != 0) return type(uint256).max;
        gas += pvg;
        if (gas >> 128 != 0) return type(uint256).max;
        return gas * maxFee;
    }

    /// @dev Applies the session's rate, uses and value budget to the op's `calls` calls and `value` wei.
    /// Returns the op's validAfter.
    ///
    /// No TIMESTAMP: the op's own expiry `opValidUntil` serves as the clock. The returned validAfter makes
    /// the EntryPoint include the op only while `opValidUntil - maxOpTtl <= now <= opValidUntil`, so
    /// `opValidUntil` is within maxOpTtl of the real time. A window that cannot take the op's calls pushes
    /// its validAfter to the next window (as Kernel's rate-limit policy does); a window that lags more than
    /// maxOpTtl behind is moved up to `opValidUntil - maxOpTtl`, so an idle key cannot bank windows. What
    /// remains: after idling, a key may fill the windows starting inside its ttl at once, so the longest burst
    /// is rateCount x ceil((maxOpTtl + 1) / ratePeriod) calls; the sustained rate is rateCount per ratePeriod.
    function _count(address key, uint40 opValidUntil, uint40 earliest, uint48 validAfter, uint256 calls, uint256 value)
        internal
        returns (uint48)
    {
        mapping(address => SessionCounters) storage counters = AccountStorage.layout().counters;
        SessionCounters c = counters[key];
        SessionCounters next;
        (next, validAfter) = _rate(c, key, opValidUntil, earliest, validAfter, calls);
        next = _spend(next, key, calls, value);
        if (SessionCounters.unwrap(next) != SessionCounters.unwrap(c)) counters[key] = next;
        return validAfter;
    }

    /// @dev The counters after `calls` more calls in the rate window, and the op's validAfter pushed into the
    /// window that takes them.
    function _rate(
        SessionCounters c,
        address key,
        uint40 opValidUntil,
        uint40 earliest,
        uint48 validAfter,
        uint256 calls
    ) internal pure returns (SessionCounters, uint48) {
        uint256 rateCount = c.rateCount();
        if (rateCount == 0) return (c, validAfter);
        if (calls > rateCount) revert SessionTooManyCalls(calls, rateCount);
        uint256 windowStart = c.windowStart();
        uint256 windowUsed = c.windowUsed();
        uint256 period = c.ratePeriod();
        if (windowStart + period <= earliest) (windowStart, windowUsed) = (earliest, 0);
        if (windowUsed + calls > rateCount) (windowStart, windowUsed) = (windowStart + period, 0);
        if (windowStart >= opValidUntil) revert SessionRateLimited(key, uint40(windowStart));
        if (windowStart > validAfter) validAfter = uint48(windowStart);
        return (c.withWindow(uint40(windowStart), uint16(windowUsed + calls)), validAfter);
    }

    /// @dev The counters after `calls` more uses and `value` more wei.
    function _spend(SessionCounters c, address key, uint256 calls, uint256 value)
        internal
        pure
        returns (SessionCounters)
    {
        uint256 usesLeft = c.usesLeft();
        if (usesLeft != UNLIMITED_USES) {
            if (calls > usesLeft) revert SessionExhausted(key);
            usesLeft -= calls;
        }
        uint256 valueLeft = c.valueLeft();
        if (value > valueLeft) revert SessionValueBudgetExceeded(value, valueLeft);
        return c.withLeft(uint32(usesLeft), uint128(valueLeft - value));
    }

    /// @dev Every call the op will make must be permitted and within its limits. Returns the number of calls,
    /// the native value they send together, and whether any of them raises risk. The key's own hand-over and
    /// heartbeat ops make no counted call.
    function _checkCalls(address key, SessionState s, bytes calldata callData)
        internal
        view
        returns (uint256 calls, uint256 value, bool raisesRisk)
    {
        bytes4 outer = callData.length < 4 ? bytes4(0) : bytes4(callData[:4]);
        if (outer != this.executeSession.selector) {
            _checkKeyCall(key, outer, callData);
            return (0, 0, false);
        }
        (address declared, bytes calldata inner) = ExecutionCalldata.decodeSession(callData);
        if (declared != key) revert SessionKeyMismatch(declared, key);
        bytes4 selector = inner.length < 4 ? bytes4(0) : bytes4(inner[:4]);
        uint256 who = _who(key, s.grantId(), false) | (s.has(SessionStateLibrary.TRIPPED) ? PROTECTIVE_ONLY : 0);
        if (selector == BaseAccount.execute.selector) {
            (address target, uint256 v, bytes calldata data) = ExecutionCalldata.decodeExecute(inner);
            return (1, v, _checkCall(who, target, v, data));
        }
        if (selector != BaseAccount.executeBatch.selector) revert SessionSelectorNotAllowed(selector);
        return _checkBatch(who, inner);
    }

    /// @dev A session op that is not `executeSession` must be exactly `rotateToSuccessor(key)` (with a committed
    /// successor), `heartbeat(key, interval)` (interval in range), `bumpOrderEpoch(key)` or
    /// `cancelSignedOrders(key, venue, wordIndex, mask)` (at a venue of one of the key's order permissions),
    /// naming the op's own key, in canonical ABI.
    function _checkKeyCall(address key, bytes4 selector, bytes calldata callData) internal view {
        uint256 length = selector == ISessionManager.heartbeat.selector
            ? 68
            : selector == ISessionManager.cancelSignedOrders.selector ? 132 : 36;
        if (
            length == 36 && selector != ISessionManager.rotateToSuccessor.selector
                && selector != ISessionManager.bumpOrderEpoch.selector
        ) revert SessionSelectorNotAllowed(selector);
        if (callData.length != length) revert MalformedCalldata();
        uint256 named = uint256(bytes32(callData[4:36]));
        if (named >> 160 != 0) revert MalformedCalldata();
        if (address(uint160(named)) != key) revert SessionKeyMismatch(address(uint160(named)), key);
        // Cancels (an epoch bump, a bitmap word) are protective: no counted call, so never rate-limited, and
        // no dead-man deadline.
        if (selector == ISessionManager.bumpOrderEpoch.selector) return;
        AccountStorage.Layout storage $ = AccountStorage.layout();
        if (length == 132) {
            // Only at a venue the key may trade on: the account makes that venue's `cancelOrders` call.
            uint256 venue = uint256(bytes32(callData[36:68]));
            if (venue >> 160 != 0) revert MalformedCalldata();
            bytes32 id = AccountStorage.ruleId(
                key, $.sessions[key].grantId(), address(uint160(venue)), IPerpVenue.placeOrder.selector
            );
            if (!$.rules[id].isOrder()) revert SessionCallNotPermitted(address(uint160(venue)), selector);
            return;
        }
        if (length == 36) {
            if (AccountStorage.successorOf($, key, $.sessions[key].grantId()) == address(0)) revert NoSuccessor(key);
            return;
        }
        uint256 interval = uint256(bytes32(callData[36:68]));
        if (interval >> 32 != 0) revert MalformedCalldata();
        if (interval == 0 || interval > AccountStorage.MAX_HEARTBEAT_INTERVAL) {
            revert InvalidHeartbeatInterval(uint32(interval));
        }
    }

    function _checkBatch(uint256 who, bytes calldata inner)
        internal
        view
        returns (uint256 calls, uint256 value, bool raisesRisk)
    {
        calls = ExecutionCalldata.batchLength(inner);
        uint256 expected = 32 * calls;
        for (uint256 i; i < calls; ++i) {
            address target;
            uint256 v;
            bytes calldata data;
            (target, v, data, expected) = ExecutionCalldata.batchCall(inner, i, expected);
            if (_checkCall(who, target, v, data)) raisesRisk = true;
            value += v;
        }
    }

    /// @dev One call against the key's rules; `who` is `_who(key, grantId)`, with `PROTECTIVE_ONLY` while the
    /// key's breaker is tripped. Returns whether the call raises risk: anything but a deposit, a cancel or a
    /// reduce-only order.
    function _checkCall(uint256 who, address target, uint256 value, bytes calldata data)
        internal
        view
        returns (bool raisesRisk)
    {
        address key = address(uint160(who >> 32));
        bytes4 selector = data.length < 4 ? bytes4(0) : bytes4(data[:4]);
        PermissionRule rule = AccountStorage.layout().rules[AccountStorage.ruleId(key, uint32(who), target, selector)];
        // A permission is never stored for a short call, the account itself or the EntryPoint (see the module).
        if (data.length < 4 || !rule.isPermitted()) revert SessionCallNotPermitted(target, selector);
        if (!rule.isOrder()) {
            if (value > rule.valueLimit()) revert SessionValueTooHigh(value, rule.valueLimit());
            raisesRisk = selector != IPerpVenue.depositMargin.selector && selector != IPerpVenue.cancelOrder.selector;
        } else {
            if (value != 0) revert SessionValueTooHigh(value, 0);
            (uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly) =
                ExecutionCalldata.decodePlaceOrder(data);
            // A buy fills at or below its limit: exact here. A sell fills at or above its limit: this is a lower
            // bound (over it, the fill is surely over), and execution checks the fill itself.
            _checkOrderRule(rule, marketId, FixedPointMathLib.abs(sizeDelta), limitPrice, reduceOnly);
            raisesRisk = !reduceOnly;
        }
        if (raisesRisk && who & PROTECTIVE_ONLY != 0) revert SessionProtectiveOnly(key);
    }

    /*//////////////////////////////////////////////////////////////
                                EXECUTION
    //////////////////////////////////////////////////////////////*/

    /// @notice Runs a session op's calls: each sell's notional checked at its fill and, for keys that have
    /// them, the post-execution risk limits and the drawdown breaker.
    /// @dev Only the EntryPoint calls this, as the execution of a session op whose validation checked that
    /// `key` is the key that signed it. A session revoked after its op validated (earlier in the same bundle)
    /// runs nothing.
    /// @param key The op's session key.
    /// @param calls `execute(…)` or `executeBatch(…)` calldata.
    function executeSession(address key, bytes calldata calls) external {
        _requireFromEntryPoint();
        AccountStorage.Layout storage $ = AccountStorage.layout();
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        if (!s.has(SessionStateLibrary.RISK)) {
            _run(calls, _who(key, s.grantId(), false));
        } else if (!s.has(SessionStateLibrary.BREAKER)) {
            _runWithLimits(key, s.grantId(), calls);
        } else {
            // A risk-raising op that breaches the breaker must be undone *and* trip the breaker: its calls run
            // in a call to this account, whose revert undoes them, and the trip is stored here.
            try this.runWithLimits(key, s.grantId(), calls) {}
            catch (bytes memory reason) {
                if (reason.length != 68 || bytes4(reason) != SessionDrawdownBreached.selector) {
                    assembly ("memory-safe") {
                        revert(add(reason, 0x20), mload(reason))
                    }
                }
                int256 accountValue;
                uint256 threshold;
                assembly ("memory-safe") {
                    accountValue := mload(add(reason, 0x24))
                    threshold := mload(add(reason, 0x44))
                }
                PostTradeLimits.trip(key, accountValue, threshold);
            }
        }
    }

    /*//////////////////////////////////////////////////////////////
                              SIGNED ORDERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IOrderAccount
    function orderDigest(address venue, SignedOrder.Order calldata order) public view returns (bytes32) {
        return _hashTypedData(SignedOrder.nestedStruct(venue, order));
    }

    /// @inheritdoc IOrderAccount
    /// @dev The same rules and counters as a session op's order, through the same code: the venue (the caller)
    /// must be a `placeOrder` target of the key's grant and its order rule applies (`_checkOrderRule`, the
    /// notional at the limit for a buy and at the fill for a sell); the order counts one call against the
    /// key's uses and, unless reduce-only, its rate window (`_rate`, `_spend`, with the block time as the
    /// clock); a fill that raises risk is refused while the breaker is tripped or past the dead-man deadline;
    /// then the key waits for its post-execution limits, which the venue's closing call (`fillSize` zero) applies
    /// once after its batch, reading the venue as after a session op (`PostTradeLimits.check`). No gas is
    /// charged: the settler pays for settlement. Execution phase (a venue's transaction, not a
    /// UserOp), so reading the clock and foreign storage is allowed.
    function checkOrderFill(
        SignedOrder.Order calldata order,
        bytes calldata signature,
        uint256 fillSize,
        uint256 fillPrice
    ) external returns (bytes4) {
        if (order.account != address(this)) revert OrderWrongAccount(order.account);
        // No fill: the venue closes its batch, and the keys it filled meet their post-execution limits.
        if (fillSize == 0) {
            PostTradeLimits.runPending();
            return IOrderAccount.checkOrderFill.selector;
        }
        AccountStorage.Layout storage $ = AccountStorage.layout();
        address key = order.key;
        SessionState s = $.sessions[key];
        if (!AccountStorage.isActive($, s)) revert SessionNotActive(key);
        uint32 grantId = s.grantId();
        if (order.grantId != grantId) revert OrderGrantMismatch(order.grantId, grantId);
        if (order.epoch != $.orderEpochs[key]) revert OrderEpochMismatch(order.epoch, $.orderEpochs[key]);
        // The window as the EntryPoint applies it to ops: validAfter exclusive, validUntil inclusive.
        if (block.timestamp <= s.validAfter() || block.timestamp > s.validUntil()) {
            revert SessionOutsideWindow(s.validAfter(), s.validUntil());
        }
        if (!_keySigned(key, orderDigest(msg.sender, order), signature)) revert OrderSignatureInvalid();
        if (order.isBuy ? fillPrice > order.limitPrice : fillPrice < order.limitPrice) {
            revert OrderPriceOutsideLimit(fillPrice, order.limitPrice);
        }
        if (fillSize > order.size) revert SessionOrderTooLarge(fillSize, order.size);

        PermissionRule rule = $.rules[AccountStorage.ruleId(key, grantId, msg.sender, IPerpVenue.placeOrder.selector)];
        if (!rule.isOrder()) revert SessionCallNotPermitted(msg.sender, IPerpVenue.placeOrder.selector);
        _checkOrderRule(rule, order.marketId, order.size, order.isBuy ? order.limitPrice : fillPrice, order.reduceOnly);
        bool raisesRisk = !order.reduceOnly;
        if (raisesRisk) {
            if (s.has(SessionStateLibrary.TRIPPED)) revert SessionProtectiveOnly(key);
            if (s.has(SessionStateLibrary.HEARTBEAT) && block.timestamp > $.heartbeats[key]) {
                revert SessionHeartbeatMissed(key, $.heartbeats[key]);
            }
        }
        if (s.has(SessionStateLibrary.COUNTERS)) {
            SessionCounters c = $.counters[key];
            SessionCounters next = c;
            // Reduce-only fills are never refused by the rate limit (nor counted in it); every fill is a use.
            if (raisesRisk) (next,) = _rate(c, key, uint40(block.timestamp + 1), uint40(block.timestamp), 0, 1);
            next = _spend(next, key, 1, 0);
            $.counters[key] = next;
        }
        if (s.has(SessionStateLibrary.RISK)) _notePending(key, raisesRisk);
        return IOrderAccount.checkOrderFill.selector;
    }

    /// @dev Records that `key`'s post-execution limits wait for the calling venue's closing call
    /// (`PostTradeLimits.runPending`).
    function _notePending(address key, bool raisesRisk) internal {
        uint256 slot = PostTradeLimits.PENDING_SLOT;
        uint256 n;
        address venue;
        assembly ("memory-safe") {
            n := tload(slot)
            venue := tload(add(slot, 1))
        }
        if (n != 0 && venue != msg.sender) revert OrderChecksPending(venue);
        uint256 flag = raisesRisk ? PostTradeLimits.RAISES_RISK : 0;
        assembly ("memory-safe") {
            tstore(add(slot, 1), caller())
            let i := 0
            for {} lt(i, n) { i := add(i, 1) } {
                let at := add(add(slot, 2), i)
                let e := tload(at)
                if eq(and(e, 0xffffffffffffffffffffffffffffffffffffffff), key) {
                    tstore(at, or(e, flag))
                    break
                }
            }
            if eq(i, n) {
                tstore(add(add(slot, 2), n), or(key, flag))
                tstore(slot, add(n, 1))
            }
        }
    }

    /// @notice Runs a session op's calls and checks the key's post-execution limits. Only this account calls
    /// it (from `executeSession`), so a revert undoes the calls while the caller keeps the breaker's trip.
    /// @param key The session key.
    /// @param grantId The key's grant.
    /// @param inner `execute(…)` or `executeBatch(…)` calldata.
    function runWithLimits(address key, uint32 grantId, bytes calldata inner) external {
        if (msg.sender != address(this)) revert OnlySelf(msg.sender);
        _runWithLimits(key, grantId, inner);
    }

    function _runWithLimits(address key, uint32 grantId, bytes calldata inner) internal {
        uint256 found = _run(inner, _who(key, grantId, true));
        address venue = address(uint160(found));
        if (venue != address(0)) PostTradeLimits.check(key, venue, found & RAISES_RISK != 0);
    }

    /// @dev Runs `execute(…)` or `executeBatch(…)` calldata. `who` is zero for an owner op, else the session
    /// key and grant (`_who`): each sell's notional is then checked at the fill price the venue returns, and
    /// the result says which venue the op's orders and deposits went to (low 160 bits) and whether an order
    /// without reduceOnly ran (`RAISES_RISK`). Under post-execution limits (`STRICT` in `who`) the op's orders
    /// and deposits must all go to one venue.
    function _run(bytes calldata inner, uint256 who) internal returns (uint256 found) {
        bytes4 selector = inner.length < 4 ? bytes4(0) : bytes4(inner[:4]);
        if (selector == BaseAccount.execute.selector) {
            (address target, uint256 value, bytes calldata data) = ExecutionCalldata.decodeExecute(inner);
            return _call(target, value, data, who, NO_INDEX);
        }
        if (selector != BaseAccount.executeBatch.selector) revert UnsupportedCall(selector);
        return _runBatch(inner, who);
    }

    function _runBatch(bytes calldata inner, uint256 who) internal returns (uint256 found) {
        uint256 n = ExecutionCalldata.batchLength(inner);
        uint256 expected = 32 * n;
        for (uint256 i; i < n; ++i) {
            address target;
            uint256 value;
            bytes calldata data;
            (target, value, data, expected) = ExecutionCalldata.batchCall(inner, i, expected);
            found = _merge(found, _call(target, value, data, who, n > 1 ? i : NO_INDEX), who);
        }
    }

    /// @dev Folds one call's findings into the op's.
    function _merge(uint256 found, uint256 call, uint256 who) internal pure returns (uint256) {
        address venue = address(uint160(found));
        address next = address(uint160(call));
        if (who & STRICT != 0 && venue != address(0) && next != address(0) && next != venue) {
            revert SessionMixedVenues(venue, next);
        }
        if (venue == address(0)) found |= uint160(next);
        return found | (call & RAISES_RISK);
    }

    /// @dev A session key and its grant in one word: `key << 32 | grantId`, with `STRICT` when the key has
    /// post-execution limits; zero for an owner op.
    function _who(address key, uint32 grantId, bool strict) internal pure returns (uint256) {
        return (uint256(uint160(key)) << 32) | grantId | (strict ? STRICT : 0);
    }

    /// @dev One call; a failure reverts with the callee's data, wrapped in `ExecuteError(index, …)` inside a
    /// batch of more than one (as BaseAccount does; `NO_INDEX` otherwise). Returns the findings `_run` sums.
    function _call(address target, uint256 value, bytes calldata data, uint256 who, uint256 index)
        internal
        returns (uint256)
    {
        bool ok;
        uint256 fillPrice;
        uint256 returned;
        assembly ("memory-safe") {
            // The call's data at the free memory pointer (not reserved: nothing else is allocated before it is
            // read); its first two return words (a placeOrder's id and fill price) into scratch space, read
            // before anything else can use it.
            let m := mload(0x40)
            calldatacopy(m, data.offset, data.length)
            ok := call(gas(), target, value, m, data.length, 0x00, 0x40)
            returned := returndatasize()
            fillPrice := mload(0x20)
        }
        if (!ok) {
            bytes memory ret = new bytes(returned);
            assembly ("memory-safe") {
                returndatacopy(add(ret, 0x20), 0, returned)
            }
            if (index != NO_INDEX) revert ExecuteError(index, ret);
            assembly ("memory-safe") {
                revert(add(ret, 0x20), returned)
            }
        }
        if (who == 0 || data.length < 4) return 0;
        bytes4 selector = bytes4(data[:4]);
        if (selector == IPerpVenue.depositMargin.selector) return uint160(target);
        if (selector != IPerpVenue.placeOrder.selector) return 0;
        (, int256 sizeDelta,, bool reduceOnly) = ExecutionCalldata.decodePlaceOrder(data);
        if (sizeDelta < 0) {
            if (returned < 64) revert SessionVenueUnreadable(target);
            _checkFill(target, who, uint256(-sizeDelta), fillPrice);
        }
        return uint160(target) | (reduceOnly ? 0 : RAISES_RISK);
    }

    /// @dev A sell's notional at the fill price `venue` returned, against the order rule's cap.
    function _checkFill(address venue, uint256 who, uint256 size, uint256 fillPrice) internal view {
        bytes32 id =
            AccountStorage.ruleId(address(uint160(who >> 32)), uint32(who), venue, IPerpVenue.placeOrder.selector);
        _checkNotional(AccountStorage.layout().rules[id], size, fillPrice);
    }

    /// @dev An order against its `placeOrder` rule, on either path (UserOp or signed order): market allowlist,
    /// size, notional at `price` (the limit for a buy, the fill for a sell), reduce-only.
    function _checkOrderRule(PermissionRule rule, uint32 marketId, uint256 size, uint256 price, bool reduceOnly)
        internal
        pure
    {
        if (marketId >= 64 || (rule.marketMask() >> marketId) & 1 == 0) revert SessionMarketNotAllowed(marketId);
        if (size > rule.maxOrderSize()) revert SessionOrderTooLarge(size, rule.maxOrderSize());
        _checkNotional(rule, size, price);
        if (rule.reduceOnly() && !reduceOnly) revert SessionReduceOnlyRequired();
    }

    /// @dev size x price against the rule's notional cap (size is at most the rule's uint88 size cap here).
    function _checkNotional(PermissionRule rule, uint256 size, uint256 price) internal pure {
        uint256 notional = _notional(size, price);
        if (notional > rule.maxOrderNotional()) revert SessionNotionalTooHigh(notional, rule.maxOrderNotional());
    }

    /// @dev |size| x price / 1e18, saturating: size < 2^88, so the product cannot overflow while price < 2^168.
    function _notional(uint256 size, uint256 price) internal pure returns (uint256) {
        return price >> 168 == 0 ? size * price / 1e18 : type(uint256).max;
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNALS
    //////////////////////////////////////////////////////////////*/

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

    /// @dev BaseAccount's check, with a custom error.
    function _requireFromEntryPoint() internal view override {
        if (msg.sender != address(_entryPoint)) revert NotFromEntryPoint(msg.sender);
    }

    /// @dev execute/executeBatch: the EntryPoint (after validation) or the owner directly. A session op never
    /// reaches them: its callData must be `executeSession`.
    function _requireForExecute() internal view override {
        if (msg.sender != address(_entryPoint) && msg.sender != owner()) revert NotEntryPointOrOwner(msg.sender);
    }

    function _authorizeUpgrade(address) internal view override {
        AccountStorage.Layout storage $ = AccountStorage.layout();
        if (msg.sender != $.owner && msg.sender != address(this)) revert NotOwnerOrSelf(msg.sender);
    }

    function _domainNameAndVersion() internal pure override returns (string memory, string memory) {
        return ("Keyscope TradingAccount", "1");
    }
}
